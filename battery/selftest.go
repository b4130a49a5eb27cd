package battery

import (
	"fmt"
	"time"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// Self-test constants.
const (
	// DefaultTestInterval is assumed when a unit reports no usable
	// ups.test.interval (many report 0 for "never").
	DefaultTestInterval = 14 * day
	// AbortWindow: two aborted tests within it raise battery_test_aborted
	// (a weak battery often shows only as aborted tests, NUT #3480).
	AbortWindow = 30 * day
	// testHistory is how many results a unit keeps.
	testHistory = 8

	varTestResult   = "ups.test.result"
	varTestInterval = "ups.test.interval"
	day             = 24 * time.Hour
)

// TestRec is one self-test result as seen: when the result text changed
// to it (unix seconds) and what it was.
type TestRec struct {
	At uint32     `json:"t"`
	R  TestResult `json:"r"`
}

// tests is a unit's self-test history, newest last.
type tests struct {
	Recs     [testHistory]TestRec
	N        uint8
	ResultH  uint32
	Interval int32 // seconds; 0: default
}

func (ts *tests) add(rec TestRec) {
	if int(ts.N) == testHistory {
		copy(ts.Recs[:], ts.Recs[1:])
		ts.N--
	}
	ts.Recs[ts.N] = rec
	ts.N++
}

// History returns the recorded results, oldest first.
func (u *Unit) History() []TestRec { return append([]TestRec(nil), u.T.Recs[:u.T.N]...) }

// TestInterval is the unit's self-test interval.
func (u *Unit) TestInterval() time.Duration {
	if u.T.Interval > 0 {
		return time.Duration(u.T.Interval) * time.Second
	}
	return DefaultTestInterval
}

// TestStale reports whether no self-test result was seen for twice the
// test interval (counting from first seen when none ever was).
func (u *Unit) TestStale(now time.Time) bool {
	if u.FirstSeen == 0 {
		return false
	}
	last := time.Unix(u.FirstSeen, 0)
	if u.T.N > 0 {
		last = time.Unix(int64(u.T.Recs[u.T.N-1].At), 0)
	}
	return now.Sub(last) > 2*u.TestInterval()
}

// observeTest records a new self-test result when ups.test.result
// changed to one. A driver that prints the same text for two tests in a
// row without anything between shows as one test: that is all the
// variable tells.
func (u *Unit) observeTest(raw string, r *ups.Reading, evs []rules.Event) []rules.Event {
	h := hash(raw)
	if h == u.T.ResultH {
		return evs
	}
	u.T.ResultH = h
	res := ParseTestResult(raw)
	if res == TestNone {
		return evs
	}
	if res == TestPassed && u.T.N > 0 {
		if prev := u.T.Recs[u.T.N-1]; prev.R == TestFailed && r.Time.Unix()-int64(prev.At) <= int64(SwapWindow/time.Second) {
			evs = u.signal(sigTestFixed, r, evs)
		}
	}
	u.T.add(TestRec{At: uint32(r.Time.Unix()), R: res})
	// A failed test is alerted by the rule engine's self_test_failed
	// (which fires while the result reads "error", "fail"...); raising
	// it here as well would page twice for one test.
	return u.checkAborted(r, evs)
}

// checkAborted raises battery_test_aborted while two aborted tests lie
// within AbortWindow of now and no pass followed them.
func (u *Unit) checkAborted(r *ups.Reading, evs []rules.Event) []rules.Event {
	since := r.Time.Add(-AbortWindow).Unix()
	n := 0
	for i := int(u.T.N) - 1; i >= 0 && int64(u.T.Recs[i].At) >= since; i-- {
		if u.T.Recs[i].R == TestPassed {
			break
		}
		if u.T.Recs[i].R == TestAborted {
			n++
		}
	}
	return u.set(alertTestAborted, n >= 2, rules.Warning, r, evs, func() (string, []rules.Value) {
		return fmt.Sprintf("%d battery self-tests aborted within %d days", n, int(AbortWindow/day)),
			[]rules.Value{{Name: "aborted", Value: float64(n)}}
	})
}
