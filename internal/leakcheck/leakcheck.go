// Package leakcheck fails a test binary whose tests leave goroutines
// behind. Use it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests and, when they pass, waits up to 5 s for goroutines
// other than the runtime's and the test runner's to exit; it fails the run,
// printing their stacks, when some remain.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := Wait(5 * time.Second); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "%d goroutine(s) leaked:\n\n%s\n", len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// Wait polls until only the expected goroutines remain or wait passes, and
// returns the stacks of the others.
func Wait(wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		leaked := others()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// others returns the stacks of all goroutines except the calling one and
// those the runtime, os/signal and testing keep for themselves.
func others() []string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	// The calling goroutine comes first; stacks are separated by blank lines.
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 || strings.TrimSpace(g) == "" || expected(g) {
			continue
		}
		out = append(out, g)
	}
	return out
}

func expected(stack string) bool {
	for _, s := range []string{
		"os/signal.signal_recv",
		"os/signal.loop",
		"runtime.ensureSigM",
		"testing.(*M).startAlarm",
		"testing.runFuzzing",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
