package battery

import (
	"strconv"
	"testing"
	"time"

	"github.com/upswatch/upswatch/rules"
)

// TestNUTDeviceLibraryTestResults maps every ups.test.result of the 718
// dumps. 216 dumps carry one, in 17 spellings (the "about 15").
func TestNUTDeviceLibraryTestResults(t *testing.T) {
	ds := nutDumps(t)
	spellings := map[string]TestResult{}
	got := map[TestResult]int{}
	n := 0
	for _, d := range ds {
		v, ok := d.vars["ups.test.result"]
		if !ok {
			continue
		}
		n++
		res := ParseTestResult(v)
		got[res]++
		spellings[v] = res
	}
	if n != 216 || len(spellings) != 17 {
		t.Errorf("ups.test.result in %d dumps with %d spellings, want 216 and 17", n, len(spellings))
	}
	for res, want := range map[TestResult]int{
		TestPassed:  98,  // Done and passed x90 (both cases), Ok x7, "Passed, Source: Internal"
		TestNone:    109, // No test initiated/performed, NO, 0, Unknown, In progress, InvalidTest
		TestAborted: 6,
		TestWarning: 2,
		TestFailed:  1, // Done and error
	} {
		if got[res] != want {
			t.Errorf("%v: %d dumps, want %d", res, got[res], want)
		}
	}
	t.Logf("spellings: %v", spellings)
}

// testSeries feeds hourly readings whose ups.test.result follows script
// (day offset -> raw text) and returns the events per rule and kind.
func testSeries(t *testing.T, u *Unit, t0 time.Time, days int, script map[int]string, interval float64) []rules.Event {
	t.Helper()
	var evs []rules.Event
	text := "No test initiated"
	for h := 0; h < days*24; h++ {
		if s, ok := script[h/24]; ok && h%24 == 0 {
			text = s
		}
		nums := map[string]float64{}
		if interval != 0 {
			nums["ups.test.interval"] = interval
		}
		evs = u.Observe(reading(t0.Add(time.Duration(h)*time.Hour), map[string]string{"ups.test.result": text}, nums), evs)
	}
	return evs
}

func kinds(evs []rules.Event, rule string) []string {
	var out []string
	for _, ev := range evs {
		if ev.Rule == rule {
			out = append(out, ev.Kind.String()+"@"+strconv.Itoa(int(ev.At.Sub(t0Test)/day)))
		}
	}
	return out
}

var t0Test = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestSelfTestAlerts(t *testing.T) {
	for _, tc := range []struct {
		name          string
		script        map[int]string
		aborted       []string
		history       []TestResult
		staleAtTheEnd bool
	}{
		{
			name:    "a failed test is recorded; alerting it is self_test_failed's job",
			script:  map[int]string{2: "Done and passed", 16: "Done and error", 17: "In progress", 18: "Done and passed"},
			history: []TestResult{TestPassed, TestFailed, TestPassed},
			// last on day 18, 42 days before the end: stale
			staleAtTheEnd: true,
		},
		{
			name:    "two aborted within 30 days warn; a pass resolves",
			script:  map[int]string{1: "Aborted", 5: "In progress", 20: "aborted", 22: "In progress", 25: "Done and passed"},
			aborted: []string{"firing@20", "resolved@25"},
			history: []TestResult{TestAborted, TestAborted, TestPassed},
			// last on day 25, 35 days before the end: stale
			staleAtTheEnd: true,
		},
		{
			name:    "two aborted 40 days apart do not",
			script:  map[int]string{1: "Aborted", 5: "No test initiated", 41: "Aborted"},
			history: []TestResult{TestAborted, TestAborted},
		},
		{
			name:    "the aborted warning ends when the window passes",
			script:  map[int]string{1: "Aborted", 2: "In progress", 3: "Aborted"},
			aborted: []string{"firing@3", "resolved@31"},
			history: []TestResult{TestAborted, TestAborted},
			// 60 days with the last result on day 3: stale.
			staleAtTheEnd: true,
		},
		{
			name:    "a warning result alerts nothing",
			script:  map[int]string{3: "Done and warning"},
			history: []TestResult{TestWarning},
			// last on day 3, 60-day run: stale
			staleAtTheEnd: true,
		},
		{
			name:          "never tested is stale",
			script:        map[int]string{},
			staleAtTheEnd: true,
		},
		{
			name:   "tested every 14 days is not stale",
			script: map[int]string{0: "Done and passed", 14: "In progress", 15: "Done and passed", 29: "In progress", 30: "Done and passed", 44: "In progress", 45: "Done and passed"},
			// the same text again after "In progress" is a new test
			history: []TestResult{TestPassed, TestPassed, TestPassed, TestPassed},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u Unit
			evs := testSeries(t, &u, t0Test, 60, tc.script, 0)
			for _, ev := range evs {
				if ev.Rule != RuleTestAborted {
					t.Errorf("unexpected %s event", ev.Rule)
				}
			}
			if got := kinds(evs, RuleTestAborted); !equal(got, tc.aborted) {
				t.Errorf("battery_test_aborted events %v, want %v", got, tc.aborted)
			}
			var hist []TestResult
			for _, rec := range u.History() {
				hist = append(hist, rec.R)
			}
			if !equal(hist, tc.history) {
				t.Errorf("history %v, want %v", hist, tc.history)
			}
			if got := u.TestStale(t0Test.Add(60 * day)); got != tc.staleAtTheEnd {
				t.Errorf("stale = %v, want %v", got, tc.staleAtTheEnd)
			}
		})
	}
}

func TestSelfTestInterval(t *testing.T) {
	for _, tc := range []struct {
		interval float64
		want     time.Duration
	}{
		{0, DefaultTestInterval},
		{100, DefaultTestInterval},
		{604800, 7 * day},
		{7776000, 90 * day},
	} {
		var u Unit
		testSeries(t, &u, t0Test, 2, map[int]string{0: "Done and passed"}, tc.interval)
		if got := u.TestInterval(); got != tc.want {
			t.Errorf("ups.test.interval %v: interval %v, want %v", tc.interval, got, tc.want)
		}
		last := t0Test
		if stale := u.TestStale(last.Add(2 * tc.want)); stale {
			t.Errorf("interval %v: stale at twice the interval", tc.want)
		}
		if stale := u.TestStale(last.Add(2*tc.want + time.Hour)); !stale {
			t.Errorf("interval %v: not stale past twice the interval", tc.want)
		}
	}
}

func TestSelfTestHistoryBounded(t *testing.T) {
	var u Unit
	script := map[int]string{}
	for d := 0; d < 40; d += 2 {
		script[d], script[d+1] = "Done and passed", "In progress"
	}
	testSeries(t, &u, t0Test, 40, script, 0)
	if h := u.History(); len(h) != testHistory || h[len(h)-1].At != uint32(t0Test.Add(38*day).Unix()) {
		t.Fatalf("history of %d ending at %v, want %d ending on day 38", len(h), h[len(h)-1].At, testHistory)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
