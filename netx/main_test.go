package netx

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run when goroutines outlive the tests: a Dial that
// gave up, a connection or a test server must not leave any behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		leaked := waitForGoroutines(5 * time.Second)
		if len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "netx: %d goroutine(s) leaked:\n\n%s\n",
				len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// waitForGoroutines polls until only the test runner's goroutines remain or
// wait passes, and returns the stacks of the others.
func waitForGoroutines(wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		leaked := otherGoroutines()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// otherGoroutines returns the stacks of all goroutines except the calling
// one and those the runtime, os/signal and testing keep for themselves.
func otherGoroutines() []string {
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
		if i == 0 || strings.TrimSpace(g) == "" || expectedGoroutine(g) {
			continue
		}
		out = append(out, g)
	}
	return out
}

func expectedGoroutine(stack string) bool {
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
