package battery

import (
	"testing"
	"time"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func TestParseDate(t *testing.T) {
	day := func(y, m, d int) time.Time { return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		in   string
		want time.Time
		v    DateVerdict
	}{
		{"2014/01/15", day(2014, 1, 15), DateOK},
		{" 2021-04-15 ", day(2021, 4, 15), DateOK},
		{"2019.10.11", day(2019, 10, 11), DateOK},
		{"12/01/22", day(2022, 12, 1), DateOK},
		{"11/6/03", day(2003, 11, 6), DateOK},
		{"10/25/93", day(1993, 10, 25), DateOK},
		{"08/08/2015", day(2015, 8, 8), DateOK},
		{"02/29/24", day(2024, 2, 29), DateOK},
		{"2026/12/02", day(2026, 12, 2), DateOK}, // a day of clock slack
		{"", time.Time{}, DateEmpty},
		{"   ", time.Time{}, DateEmpty},
		{"not set", time.Time{}, DatePlaceholder},
		{"CPS", time.Time{}, DatePlaceholder},
		{"?", time.Time{}, DatePlaceholder},
		{"CyberPower Systems", time.Time{}, DatePlaceholder},
		{"2001/09/25", time.Time{}, DateFactoryDefault},
		{"09/25/01", time.Time{}, DateFactoryDefault},
		{"2001/00/00", time.Time{}, DateImpossible},
		{"4158/00/03", time.Time{}, DateImpossible},
		{"2065/165/165", time.Time{}, DateImpossible},
		{"2052/00/36", time.Time{}, DateImpossible},
		{"02/29/23", time.Time{}, DateImpossible},
		{"13/01/20", time.Time{}, DateImpossible},
		{"3150/08/01", time.Time{}, DateFuture},
		{"2026/12/03", time.Time{}, DateFuture},
		{"12/31/69", time.Time{}, DateFuture}, // 2069
		{"1980/01/01", time.Time{}, DateTooOld},
		{"01/01/70", time.Time{}, DateTooOld}, // 1970
		{"11172014", time.Time{}, DateUnrecognised},
		{"1", time.Time{}, DateUnrecognised},
		{"2014/01-15", time.Time{}, DateUnrecognised},
		{"2014/01/15/3", time.Time{}, DateUnrecognised},
		{"2014//15", time.Time{}, DateUnrecognised},
		{"123/01/15", time.Time{}, DateUnrecognised},
		{"2014/01/15 x", time.Time{}, DateUnrecognised},
	} {
		got, v := ParseDate(tc.in, now)
		if v != tc.v || !got.Equal(tc.want) {
			t.Errorf("ParseDate(%q) = %v, %v; want %v, %v", tc.in, got, v, tc.want, tc.v)
		}
	}
}

// FuzzParseDate checks the normaliser's promises on any input: it does
// not panic, a date comes only with DateOK, and an accepted date is a
// midnight UTC between 1985 and now (plus a day) that prints back in
// one of the accepted shapes to the same day.
func FuzzParseDate(f *testing.F) {
	for _, s := range []string{"2014/01/15", "12/01/22", "not set", "4158/00/03", "08/08/2015", "2021-04-15", "1", "9/9/9999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, v := ParseDate(s, now)
		if v >= numVerdicts {
			t.Fatalf("verdict %d out of range", v)
		}
		if v != DateOK {
			if !d.IsZero() {
				t.Fatalf("%q: verdict %v with date %v", s, v, d)
			}
			return
		}
		if d.Year() < minYear || d.After(now.Add(24*time.Hour)) || d.Location() != time.UTC || d.Hour()+d.Minute()+d.Second()+d.Nanosecond() != 0 {
			t.Fatalf("%q: accepted %v", s, d)
		}
		again, v2 := ParseDate(d.Format("2006/01/02"), now)
		if v2 != DateOK || !again.Equal(d) {
			t.Fatalf("%q: %v does not round-trip (%v, %v)", s, d, again, v2)
		}
	})
}

func TestParseTestResult(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want TestResult
	}{
		{"Done and passed", TestPassed},
		{"done and passed", TestPassed},
		{"Ok", TestPassed},
		{"OK", TestPassed},
		{"Passed, Source: Internal", TestPassed},
		{"Done and warning", TestWarning},
		{"Done and error", TestFailed},
		{"Failed", TestFailed},
		{"NG", TestFailed},
		{"BT", TestFailed},
		{"Replace battery", TestFailed},
		{"Aborted", TestAborted},
		{"aborted", TestAborted},
		{"Cancelled", TestAborted},
		{"No test initiated", TestNone},
		{"no test performed", TestNone},
		{"NO", TestNone},
		{"0", TestNone},
		{"Unknown", TestNone},
		{"In progress", TestNone},
		{"InvalidTest", TestNone},
		{"Test scheduled", TestNone},
		{"", TestNone},
		{"gibberish", TestNone},
	} {
		if got := ParseTestResult(tc.in); got != tc.want {
			t.Errorf("ParseTestResult(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
