package report

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/store/influx"
	"github.com/upswatch/upswatch/store/sqlite"
	"github.com/upswatch/upswatch/ups"
)

const serial ups.Serial = "123456789012"

// The synthetic week: Monday 23 to Monday 30 November 2026, UTC, one
// reading every 30 s.
var (
	monday = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	week   = 7 * 24 * time.Hour
)

func at(day int, hh, mm, ss int) time.Time {
	return monday.Add(time.Duration(day)*24*time.Hour + time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute + time.Duration(ss)*time.Second)
}

// in reports whether t is in [from, to).
func in(t, from, to time.Time) bool { return !t.Before(from) && t.Before(to) }

// Events of the week, each worked out below.
var (
	// Outage A: Tuesday 10:00:00-10:31:00, 31 min, on_battery alert;
	// lowest charge 42 % and runtime 600 s at its last reading.
	outageA = [2]time.Time{at(1, 10, 0, 0), at(1, 10, 31, 0)}
	// Outage B: Thursday 14:00:00-14:03:00, 3 min, on_battery alert.
	outageB = [2]time.Time{at(3, 14, 0, 0), at(3, 14, 3, 0)}
	// Blip: Friday 09:00:00-09:00:30, one OB reading, shorter than the
	// rule's pending period: no alert; only a store that keeps
	// ups.status per reading (SQLite) sees it.
	blip = [2]time.Time{at(4, 9, 0, 0), at(4, 9, 0, 30)}
	// Self-test: Wednesday 12:00:00-12:00:30, "OB TEST", charge 35 %:
	// neither an outage nor the lowest charge.
	selfTest = [2]time.Time{at(2, 12, 0, 0), at(2, 12, 0, 30)}
	// Short sag: Monday 08:00:00-08:02:00 at 200 V (< 207 V), two
	// one-minute windows; its 10-minute mean, (4*200+16*230)/20 = 224 V,
	// is in band.
	shortSag = [2]time.Time{at(0, 8, 0, 0), at(0, 8, 2, 0)}
	// Long sag: Saturday 00:00-01:00 at 200 V: 60 minutes, six 10-minute
	// windows out of band.
	longSag = [2]time.Time{at(5, 0, 0, 0), at(5, 1, 0, 0)}
	// Swell: Sunday 03:00:00-03:01:00 at 260 V (> 253 V); its 10-minute
	// mean, (2*260+18*230)/20 = 233 V, is in band.
	swell = [2]time.Time{at(6, 3, 0, 0), at(6, 3, 1, 0)}
	// Frequency excursion: Wednesday 06:00-06:05 at 50.8 Hz (> 50.5).
	freqHigh = [2]time.Time{at(2, 6, 0, 0), at(2, 6, 5, 0)}
	// Out of contact, no readings: Sunday 20:00-20:45 (comm_lost raised
	// in the week) and Monday 00:00-00:15 (a comm_lost raised the Sunday
	// before, 23:30, so not counted among the week's alerts).
	silentSun = [2]time.Time{at(6, 20, 0, 0), at(6, 20, 45, 0)}
	silentMon = [2]time.Time{monday.Add(-30 * time.Minute), at(0, 0, 15, 0)}
	// A second self-test: Friday 15:00:00-15:01:00, "OL TEST", two
	// readings. ups.test.result reads "No test initiated" until the
	// first test's end (Wednesday 12:00:30), "Done and passed" until the
	// second's (Friday 15:01:00), then "Done and error".
	selfTest2 = [2]time.Time{at(4, 15, 0, 0), at(4, 15, 1, 0)}
	// Boost: Thursday 09:00:00-09:20:00, "OL BOOST" at 212 V (in band:
	// neither a sag nor out of band). Trim: Thursday 18:00-18:05, "OL
	// TRIM" at 245 V.
	boost = [2]time.Time{at(3, 9, 0, 0), at(3, 9, 20, 0)}
	trim  = [2]time.Time{at(3, 18, 0, 0), at(3, 18, 5, 0)}
)

// The transfer reason the unit reports at ts: none before outage A,
// "blackout" from A's start, "input voltage out of range" from B's (and
// still at the blip, which is why transfers are counted per outage, not
// per change of the text).
func transferReason(ts time.Time) string {
	switch {
	case ts.Before(outageA[0]):
		return ""
	case ts.Before(outageB[0]):
		return "blackout"
	}
	return "input voltage out of range"
}

func testResult(ts time.Time) string {
	switch {
	case ts.Before(selfTest[1]):
		return "No test initiated"
	case ts.Before(selfTest2[1]):
		return "Done and passed"
	}
	return "Done and error"
}

func weekReadings() []ups.Reading {
	var rs []ups.Reading
	for ts := monday; ts.Before(monday.Add(week)); ts = ts.Add(30 * time.Second) {
		if in(ts, silentSun[0], silentSun[1]) || in(ts, silentMon[0], silentMon[1]) {
			continue
		}
		status, volts, hz, charge, runtime := "OL", 230.0, 50.0, 100.0, 3000.0
		switch {
		case in(ts, outageA[0], outageA[1]):
			status, volts, hz, charge, runtime = "OB DISCHRG", 0, 0, 80, 2000
			if ts.Equal(outageA[1].Add(-30 * time.Second)) {
				charge, runtime = 42, 600
			}
		case in(ts, outageB[0], outageB[1]):
			status, volts, hz, charge, runtime = "OB DISCHRG", 0, 0, 88, 1500
		case in(ts, blip[0], blip[1]):
			status, volts, hz, charge, runtime = "OB DISCHRG", 0, 0, 99, 2900
		case in(ts, selfTest[0], selfTest[1]):
			status, charge, runtime = "OB TEST", 35, 300
		case in(ts, selfTest2[0], selfTest2[1]):
			status = "OL TEST"
		case in(ts, boost[0], boost[1]):
			status, volts = "OL BOOST", 212
		case in(ts, trim[0], trim[1]):
			status, volts = "OL TRIM", 245
		case in(ts, shortSag[0], shortSag[1]), in(ts, longSag[0], longSag[1]):
			volts = 200
		case in(ts, swell[0], swell[1]):
			volts = 260
		case in(ts, freqHigh[0], freqHigh[1]):
			hz = 50.8
		}
		r := ups.Reading{Serial: serial, Time: ts, Status: ups.ParseStatus(status), HasStatus: true}
		r.SetText("ups.status", status)
		r.SetNum("input.voltage", volts)
		r.SetNum("input.voltage.nominal", 230)
		r.SetNum("input.frequency", hz)
		r.SetNum("battery.charge", charge)
		r.SetNum("battery.runtime", runtime)
		r.SetText("ups.test.result", testResult(ts))
		if reason := transferReason(ts); reason != "" {
			r.SetText("input.transfer.reason", reason)
		}
		rs = append(rs, r)
	}
	return rs
}

// alert is the events of one alert instance over [start, end): Firing
// after a 10 s pending period, then Resolved.
func alert(rule string, start, end time.Time) []rules.Event {
	fp := fmt.Sprintf("%s/%s/%d", serial, rule, start.UnixMilli())
	return []rules.Event{
		{Kind: rules.Firing, Rule: rule, Serial: serial, At: start.Add(10 * time.Second), StartedAt: start, Fingerprint: fp},
		{Kind: rules.Resolved, Rule: rule, Serial: serial, At: end, StartedAt: start, EndedAt: end, Duration: end.Sub(start), Fingerprint: fp},
	}
}

// timeline is a fake alert timeline holding events.
type timeline []rules.Event

func (tl timeline) Timeline(_ context.Context, s ups.Serial, from, to time.Time, limit int) ([]rules.Event, error) {
	var out []rules.Event
	for _, ev := range tl {
		if ev.Serial == s && in(ev.At, from, to) {
			out = append(out, ev)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

func weekTimeline() timeline {
	var tl timeline
	tl = append(tl, alert("comm_lost", silentMon[0], silentMon[1])...)
	tl = append(tl, alert("on_battery", outageA[0], outageA[1])...)
	tl = append(tl, alert("low_battery", outageA[1].Add(-time.Minute), outageA[1])...)
	tl = append(tl, alert("on_battery", outageB[0], outageB[1])...)
	tl = append(tl, alert("comm_lost", silentSun[0], silentSun[1])...)
	// The week after: outside the range.
	tl = append(tl, alert("on_battery", monday.Add(week+time.Hour), monday.Add(week+2*time.Hour))...)
	return tl
}

// checkWeek computes the week's report from h and compares it with the
// numbers worked out by hand. blips: h keeps ups.status per reading
// (store.PowerHistory), so the 30 s blip no alert covers is an outage.
func checkWeek(t *testing.T, h store.History, blips bool) {
	t.Helper()
	if err := h.WriteReadings(t.Context(), weekReadings()); err != nil {
		t.Fatalf("WriteReadings: %v", err)
	}
	r, err := New(h, weekTimeline())
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return monday.Add(30 * 24 * time.Hour) }
	got, err := r.Unit(t.Context(), serial, monday, monday.Add(week))
	if err != nil {
		t.Fatalf("Unit: %v", err)
	}
	o := got.Outages
	// A 31 min + B 3 min (+ the 30 s blip).
	wantCount, wantTotal, wantUnder1m := 2, 31*60.0+3*60, 0
	if blips {
		wantCount, wantTotal, wantUnder1m = 3, 31*60+3*60+30, 1
	}
	if o.Count != wantCount || o.TotalS != wantTotal || o.LongestS != 31*60 || o.LongestUnit != serial {
		t.Errorf("outages: count %d total %gs longest %gs (%s), want %d, %gs, 1860s (%s)", o.Count, o.TotalS, o.LongestS, o.LongestUnit, wantCount, wantTotal, serial)
	}
	if o.Under1m != wantUnder1m || o.From1To5m != 1 || o.Over5m != 1 {
		t.Errorf("outage buckets: <1m %d, 1-5m %d, >5m %d, want %d, 1, 1", o.Under1m, o.From1To5m, o.Over5m, wantUnder1m)
	}
	if len(o.List) != wantCount || !o.List[0].Start.Equal(outageA[0]) || !o.List[0].End.Equal(outageA[1]) {
		t.Errorf("outage list: %+v", o.List)
	}
	if o.LowestCharge == nil || *o.LowestCharge != 42 || o.LowestRuntime == nil || *o.LowestRuntime != 600 {
		t.Errorf("lowest charge %v runtime %v, want 42 and 600 (the self-test's 35 and 300 do not count)", ptr(o.LowestCharge), ptr(o.LowestRuntime))
	}

	m := got.Mains
	// 1008 ten-minute windows; 5 without readings (Monday 00:00, Sunday
	// 20:00-20:40); 6 holding an interruption (A: 10:00-10:30, 4; B: 1;
	// the blip: 1) = 997; out of band: the long sag's 6 = 991.
	if m.VoltageWindows != 997 || m.VoltageInBand != 991 || m.VoltageInBandShare == nil || *m.VoltageInBandShare != 991.0/997 {
		t.Errorf("voltage: %d of %d windows in band (share %v), want 991 of 997", m.VoltageInBand, m.VoltageWindows, ptr(m.VoltageInBandShare))
	}
	wantSags := []Excursion{
		{Serial: serial, Start: shortSag[0], DurationS: 120, Extreme: 200, Nominal: 230},
		{Serial: serial, Start: longSag[0], DurationS: 3600, Extreme: 200, Nominal: 230},
	}
	if !sameExcursions(m.Sags, wantSags) {
		t.Errorf("sags: %+v, want %+v", m.Sags, wantSags)
	}
	wantSwells := []Excursion{{Serial: serial, Start: swell[0], DurationS: 60, Extreme: 260, Nominal: 230}}
	if !sameExcursions(m.Swells, wantSwells) {
		t.Errorf("swells: %+v, want %+v", m.Swells, wantSwells)
	}
	// 10080 one-minute windows; 60 without readings; 35 interrupted
	// (A 31, B 3, blip 1) = 9985; 5 at 50.8 Hz = 9980 in band.
	if m.FrequencyWindows != 9985 || m.FrequencyInBand != 9980 {
		t.Errorf("frequency: %d of %d windows in band, want 9980 of 9985", m.FrequencyInBand, m.FrequencyWindows)
	}
	wantFreq := []Excursion{{Serial: serial, Start: freqHigh[0], DurationS: 300, Extreme: 50.8, Nominal: 50}}
	if !sameExcursions(m.FrequencyExcursions, wantFreq) {
		t.Errorf("frequency excursions: %+v, want %+v", m.FrequencyExcursions, wantFreq)
	}

	wantAlerts := map[string]int{"on_battery": 2, "low_battery": 1, "comm_lost": 1}
	if len(got.Alerts) != len(wantAlerts) {
		t.Errorf("alerts by rule: %v, want %v", got.Alerts, wantAlerts)
	}
	for rule, n := range wantAlerts {
		if got.Alerts[rule] != n {
			t.Errorf("alerts by rule: %v, want %v", got.Alerts, wantAlerts)
		}
	}
	// Sunday 45 min + the 15 min of Monday morning in range.
	if got.OutOfContactS != 3600 || len(got.OutOfContact) != 1 {
		t.Errorf("out of contact: %gs %v, want 3600s", got.OutOfContactS, got.OutOfContact)
	}

	// Boost 09:00-09:20 = 1,200 s; trim 18:00-18:05 = 300 s.
	if got.BoostS != 1200 || got.TrimS != 300 {
		t.Errorf("boost %gs trim %gs, want 1200s and 300s", got.BoostS, got.TrimS)
	}
	// Wednesday's test, one "OB TEST" reading until the next at +30 s,
	// and Friday's, two "OL TEST" readings until 15:01:00: 2 tests, 90 s.
	// Results: the first reading's "No test initiated" is the state the
	// week began in; then "Done and passed" and "Done and error".
	wantTests := SelfTests{Tests: 2, TestS: 90, Results: map[string]int{"passed": 1, "failed": 1}}
	if !sameTests(got.SelfTests, wantTests) {
		t.Errorf("self-tests %+v, want %+v", got.SelfTests, wantTests)
	}
	// A (10:00-10:31) in "blackout"; B and, where seen, the blip in
	// "input voltage out of range".
	wantTransfers := map[string]int{"blackout": 1, "input voltage out of range": 1}
	if blips {
		wantTransfers["input voltage out of range"] = 2
	}
	if !maps.Equal(got.Transfers, wantTransfers) {
		t.Errorf("transfers %v, want %v", got.Transfers, wantTransfers)
	}

	// Two units: the second has no history at all. Sums stay, the
	// shares are the first's.
	other := ups.Serial("210987654321")
	sum, err := r.Units(t.Context(), []ups.Serial{serial, other}, monday, monday.Add(week))
	if err != nil {
		t.Fatalf("Units: %v", err)
	}
	if len(sum.Units) != 2 || sum.Outages.Count != wantCount || sum.Mains.VoltageWindows != 997 || *sum.Mains.VoltageInBandShare != 991.0/997 ||
		sum.BoostS != 1200 || !sameTests(sum.SelfTests, wantTests) || !maps.Equal(sum.Transfers, wantTransfers) {
		t.Errorf("two units: %+v", sum)
	}
	// A range of Saturday only: the long sag alone, all 6 windows of its
	// hour out of band among Saturday's 144.
	sat, err := r.Unit(t.Context(), serial, longSag[0], longSag[0].Add(24*time.Hour))
	if err != nil {
		t.Fatalf("Unit (Saturday): %v", err)
	}
	if sat.Outages.Count != 0 || sat.Mains.VoltageWindows != 144 || sat.Mains.VoltageInBand != 138 || len(sat.Mains.Sags) != 1 {
		t.Errorf("Saturday: outages %d, voltage %d of %d, sags %v", sat.Outages.Count, sat.Mains.VoltageInBand, sat.Mains.VoltageWindows, sat.Mains.Sags)
	}

	// Ranges that begin inside a state take it from the readings before.
	for _, tt := range []struct {
		name     string
		from, to time.Time
		boost    float64
		tests    SelfTests
	}{
		// Thursday 09:10-12:00: boosting since 09:00, so 600 s of it.
		{"inside the boost", at(3, 9, 10, 0), at(3, 12, 0, 0), 600, SelfTests{Results: map[string]int{}}},
		// Friday 15:00:30-16:00: the second test's last 30 s, and its
		// result: "Done and passed" was in force before, so "Done and
		// error" is new.
		{"inside the second test", at(4, 15, 0, 30), at(4, 16, 0, 0), 0, SelfTests{Tests: 1, TestS: 30, Results: map[string]int{"failed": 1}}},
		// Friday 15:01:30-16:00: the result came before: nothing new.
		{"after the second test", at(4, 15, 1, 30), at(4, 16, 0, 0), 0, SelfTests{Results: map[string]int{}}},
	} {
		part, err := r.Unit(t.Context(), serial, tt.from, tt.to)
		if err != nil {
			t.Fatalf("Unit (%s): %v", tt.name, err)
		}
		if part.BoostS != tt.boost || !sameTests(part.SelfTests, tt.tests) || len(part.Transfers) != 0 {
			t.Errorf("%s: boost %gs, self-tests %+v, transfers %v; want %gs, %+v, none", tt.name, part.BoostS, part.SelfTests, part.Transfers, tt.boost, tt.tests)
		}
	}
}

func sameTests(a, b SelfTests) bool {
	return a.Tests == b.Tests && a.TestS == b.TestS && a.Calibrations == b.Calibrations &&
		a.CalibrationS == b.CalibrationS && maps.Equal(a.Results, b.Results)
}

func sameExcursions(a, b []Excursion) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Serial != b[i].Serial || !a[i].Start.Equal(b[i].Start) || a[i].DurationS != b[i].DurationS ||
			a[i].Extreme != b[i].Extreme || a[i].Nominal != b[i].Nominal {
			return false
		}
	}
	return true
}

func ptr(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestWeekSQLite(t *testing.T) {
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "history.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	checkWeek(t, s, true)
}

func TestWeekInflux(t *testing.T) {
	inf := testenv.Influxd(t)
	if err := inf.Exec("CREATE DATABASE report"); err != nil {
		t.Fatal(err)
	}
	s, err := influx.New(t.Context(), influx.Config{
		URL: inf.URL, Org: inf.Org, Bucket: "report/autogen", Timeout: 30 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	checkWeek(t, s, true)
}

func TestNewRequiresStoreAndTimeline(t *testing.T) {
	r, err := New(nil, timeline{})
	if err == nil || r != nil {
		t.Fatal("New without a store succeeded")
	}
}

func TestGuessNominal(t *testing.T) {
	volts := []float64{100, 110, 115, 120, 127, 200, 208, 220, 230, 240}
	pt := func(mean, max float64) store.Point { return store.Point{Mean: mean, Max: max, Count: 1} }
	for _, tt := range []struct {
		name string
		ps   []store.Point
		want float64
	}{
		{"no windows", nil, 0},
		{"steady", []store.Point{pt(230, 232), pt(229, 231), pt(231, 233)}, 230},
		// (230 + 0 + 0 + 0 + 231) / 5 = 92.2 V: the mean says 100 V.
		{"one window holding an outage", []store.Point{pt(92.2, 231)}, 230},
		{"120 V with a swell", []store.Point{pt(120, 121), pt(125, 140), pt(119, 120)}, 120},
	} {
		if got := guessNominal(tt.ps, volts); got != tt.want {
			t.Errorf("%s: %g, want %g", tt.name, got, tt.want)
		}
	}
}
