// Package wait is the tests' one way to wait for a condition that another
// goroutine, process or server makes true: poll it until it holds or a
// deadline passes. It is for presence ("the alert arrived"); absence is
// asserted only after the system is quiescent (its consumers drained, a
// counter reached), never after a wait of a fixed length.
package wait

import (
	"testing"
	"time"
)

// Timeout is how long For waits: generous, for a loaded two-core machine.
const Timeout = 20 * time.Second

// interval between two polls.
const interval = 10 * time.Millisecond

// For polls cond until it holds, and fails the test (naming what) if it
// does not within Timeout.
func For(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	Within(tb, Timeout, what, cond)
}

// Within is For with its own deadline.
func Within(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Poll(d, cond) {
		tb.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// Poll polls cond until it holds (true) or d passes (false); for helpers
// that report failure their own way.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		<-tick.C
	}
	return true
}
