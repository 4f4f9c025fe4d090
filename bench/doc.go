// Package bench measures this module's codec and client side by side with
// other Go MQTT libraries, in one go test -bench run. It is a separate
// module so that the peers never enter the library's go.mod; the library
// packages never import it.
//
// Benchmark names carry key=value parts (case=..., impl=...) for benchstat:
//
//	go test -run XXX -bench Codec -count 10 . | tee new.txt
//	benchstat -col /impl new.txt
package bench
