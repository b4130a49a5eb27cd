package battery

import "strings"

// TestResult is a battery self-test outcome, whatever the driver's
// spelling of ups.test.result.
type TestResult uint8

// Test results. None covers "no test initiated", "unknown", "in
// progress" and anything unrecognised: nothing to record.
const (
	TestNone TestResult = iota
	TestPassed
	TestWarning
	TestFailed
	TestAborted
	numResults
)

var resultNames = [numResults]string{"none", "passed", "warning", "failed", "aborted"}

func (r TestResult) String() string {
	if r < numResults {
		return resultNames[r]
	}
	return "invalid"
}

// MarshalText encodes the result as its name.
func (r TestResult) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// ParseTestResult maps the spellings drivers use (usbhid-ups "Done and
// passed", "Done and warning", "Done and error", "Aborted", "In
// progress", "No test initiated"; apcsmart "OK", "NO", "BT", "NG";
// blazer "Ok"; snmp "Passed, Source: Internal"; "0"...) onto the five
// results. Matching is by words, case-insensitive.
func ParseTestResult(s string) TestResult {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "", "0", "no", "unknown", "invalidtest", "none":
		return TestNone
	case "ok", "pass", "passed", "1":
		return TestPassed
	case "ng", "bt", "fail", "failed":
		// apcsmart: NG = failed due to overload?, BT = failed for
		// battery capacity; both mean the test did not pass.
		return TestFailed
	}
	switch {
	case strings.Contains(s, "no test"), strings.Contains(s, "progress"),
		strings.Contains(s, "scheduled"), strings.Contains(s, "not supported"):
		return TestNone
	case strings.Contains(s, "abort"), strings.Contains(s, "cancel"):
		return TestAborted
	case strings.Contains(s, "error"), strings.Contains(s, "fail"),
		strings.Contains(s, "replace"):
		return TestFailed
	case strings.Contains(s, "warn"):
		return TestWarning
	case strings.Contains(s, "pass"), strings.HasPrefix(s, "ok"):
		return TestPassed
	}
	return TestNone
}
