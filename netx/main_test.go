package netx

import (
	"testing"

	"github.com/devicemq/mqtt/internal/leakcheck"
)

// TestMain fails the run when goroutines outlive the tests: a Dial that
// gave up, a connection or a test server must not leave any behind.
func TestMain(m *testing.M) { leakcheck.Main(m) }
