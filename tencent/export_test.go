package tencent

import "time"

// SetTimeRequestInterval changes the resend interval of ServerTime for a
// test and returns a function restoring it.
func SetTimeRequestInterval(d time.Duration) func() {
	old := timeRequestInterval
	timeRequestInterval = d
	return func() { timeRequestInterval = old }
}
