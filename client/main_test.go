package client

import (
	"testing"

	"github.com/devicemq/mqtt/internal/leakcheck"
)

// TestMain fails the run when goroutines are left behind by the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }
