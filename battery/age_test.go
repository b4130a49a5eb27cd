package battery

import (
	"math"
	"testing"
	"time"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

func reading(at time.Time, texts map[string]string, nums map[string]float64) *ups.Reading {
	r := &ups.Reading{Serial: "S1", Time: at}
	r.SetText("ups.status", "OL")
	for n, v := range texts {
		r.SetText(n, v)
	}
	for n, v := range nums {
		r.SetNum(n, v)
	}
	return r
}

func TestInstallPrecedence(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		texts  map[string]string
		owner  time.Time
		want   time.Time
		source Source
	}{
		{"first seen", nil, time.Time{}, t0, SourceFirstSeen},
		{"placeholders fall through", map[string]string{"battery.date": "not set", "battery.mfr.date": "CPS"}, time.Time{}, t0, SourceFirstSeen},
		{"mfr date", map[string]string{"battery.mfr.date": "2024/03/01"}, time.Time{}, time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), SourceMfrDate},
		{"battery date over mfr date", map[string]string{"battery.date": "06/15/24", "battery.mfr.date": "2024/03/01"}, time.Time{}, time.Date(2024, 6, 15, 0, 0, 0, 0, time.UTC), SourceBatteryDate},
		{"factory default skipped", map[string]string{"battery.date": "2001/09/25", "battery.mfr.date": "2024/03/01"}, time.Time{}, time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), SourceMfrDate},
		{"owner over all", map[string]string{"battery.date": "06/15/24"}, time.Date(2025, 2, 3, 15, 4, 0, 0, time.UTC), time.Date(2025, 2, 3, 0, 0, 0, 0, time.UTC), SourceOwner},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u Unit
			u.Observe(reading(t0, tc.texts, nil), nil)
			if !tc.owner.IsZero() {
				u.SetOwnerDate(tc.owner, t0)
			}
			if u.Install != tc.want.Unix() || u.InstallSrc != tc.source {
				t.Fatalf("install %v by %v, want %v by %v", time.Unix(u.Install, 0).UTC(), u.InstallSrc, tc.want, tc.source)
			}
			if !tc.owner.IsZero() {
				u.SetOwnerDate(time.Time{}, t0)
				if u.InstallSrc == SourceOwner {
					t.Fatal("clearing the owner's date kept it")
				}
			}
		})
	}
}

// TestEffectiveAge drives a unit at a constant temperature for 100 days
// with a reading every 10 minutes and checks the effective age against the
// halving rule computed independently.
func TestEffectiveAge(t *testing.T) {
	install := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		temp map[string]float64
		rate float64 // life consumed per calendar second while watched
	}{
		{"25 C ages at the calendar rate", map[string]float64{"battery.temperature": 25}, 1},
		{"cool does not age slower", map[string]float64{"battery.temperature": 18}, 1},
		{"33.3 C ages twice as fast", map[string]float64{"battery.temperature": 33.3}, 2},
		{"41.6 C ages four times as fast", map[string]float64{"battery.temperature": 41.6}, 4},
		{"ups temperature when battery sensor is absurd", map[string]float64{"battery.temperature": 0, "ups.temperature": 33.3}, 2},
		{"ambient when the others are absent", map[string]float64{"ambient.temperature": 33.3}, 2},
		{"no plausible sensor: calendar", map[string]float64{"battery.temperature": -272, "ups.temperature": 302}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u Unit
			start := install.Add(200 * day)
			texts := map[string]string{"battery.date": install.Format("2006/01/02")}
			watched := 100 * day
			for at := start; !at.After(start.Add(watched)); at = at.Add(10 * time.Minute) {
				u.Observe(reading(at, texts, tc.temp), nil)
			}
			end := start.Add(watched)
			want := end.Sub(install) + time.Duration(float64(watched)*(tc.rate-1))
			got := u.EffectiveAge(end)
			if d := math.Abs(float64(got - want)); d > float64(time.Hour) {
				t.Fatalf("effective age %v, want %v", got, want)
			}
		})
	}
}

// TestAgeGapsAgeAtCalendarRate: a unit that goes silent for a week at
// 41.6 C is not charged four times the week it was not watched.
func TestAgeGapsAgeAtCalendarRate(t *testing.T) {
	var u Unit
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hot := map[string]float64{"battery.temperature": 41.6}
	u.Observe(reading(t0, nil, hot), nil)
	u.Observe(reading(t0.Add(7*day), nil, hot), nil)
	if got := u.EffectiveAge(t0.Add(7 * day)); got != 7*day {
		t.Fatalf("effective age %v after an unwatched week, want 168h", got)
	}
}

func TestAgeAndMaintenanceAlerts(t *testing.T) {
	install := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	texts := map[string]string{"battery.date": "2023/01/01", "battery.date.maintenance": "2026-03-01"}
	var u Unit
	var evs []rules.Event
	for at := install.Add(2 * 365 * day); at.Before(install.Add(4 * 365 * day)); at = at.Add(6 * time.Hour) {
		evs = u.Observe(reading(at, texts, nil), evs)
	}
	// Change the battery: a later battery.date resolves the age alert.
	swap := install.Add(4*365*day + day)
	texts["battery.date"] = swap.Format("01/02/06")
	texts["battery.date.maintenance"] = "2031/01/01"
	evs = u.Observe(reading(swap, texts, nil), evs)

	type key struct {
		rule string
		kind rules.EventKind
	}
	got := map[key]time.Time{}
	for _, ev := range evs {
		k := key{ev.Rule, ev.Kind}
		if _, dup := got[k]; dup {
			t.Fatalf("second %v %v at %v", ev.Rule, ev.Kind, ev.At)
		}
		got[k] = ev.At
		if ev.Serial != "S1" || ev.Fingerprint == "" || ev.StartedAt.IsZero() {
			t.Fatalf("incomplete event %+v", ev)
		}
	}
	limit := install.Add(AgeLimit)
	if at := got[key{RuleAge, rules.Firing}]; at.Before(limit) || at.After(limit.Add(6*time.Hour)) {
		t.Errorf("battery_age fired at %v, want within 6h after %v", at, limit)
	}
	maintDue := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Add(-MaintenanceLead)
	if at := got[key{RuleMaintenance, rules.Firing}]; at.Before(maintDue) || at.After(maintDue.Add(6*time.Hour)) {
		t.Errorf("battery_maintenance fired at %v, want within 6h after %v", at, maintDue)
	}
	for _, rule := range []string{RuleAge, RuleMaintenance} {
		if at := got[key{rule, rules.Resolved}]; !at.Equal(swap) {
			t.Errorf("%s resolved at %v, want %v (battery changed)", rule, at, swap)
		}
	}
	if u.ExtraAge != 0 || u.Install != time.Date(swap.Year(), swap.Month(), swap.Day(), 0, 0, 0, 0, time.UTC).Unix() {
		t.Errorf("after the swap: install %v, extra %v", time.Unix(u.Install, 0).UTC(), u.ExtraAge)
	}
}
