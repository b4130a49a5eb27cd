package battery

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

func replacedEvents(evs []rules.Event) []time.Time {
	var at []time.Time
	for _, ev := range evs {
		if ev.Rule == RuleReplaced && ev.Kind == rules.Firing {
			at = append(at, ev.At)
		}
	}
	return at
}

// TestSwapDetectedOnceAndResets: a worn battery (70 %) is swapped for a
// new one: the unit is off for half an hour, comes back charging from
// 40 %, and its runtime at the same load jumps. The swap is detected
// once, the baseline restarts, and the SoH of the new battery is ~1.
func TestSwapDetectedOnceAndResets(t *testing.T) {
	swapAt := tSim.Add(60 * day)
	s := &sim{k: 1.3, r50: 1800, load: uniformLoad(30, 70), noise: 0.03, step: 10 * time.Minute,
		rng: rand.New(rand.NewPCG(11, 12)),
		capacity: func(t time.Time) float64 {
			if t.Before(swapAt) {
				return 0.7
			}
			return 1
		}}
	var u Unit
	evs := s.run(&u, tSim, 60*day-30*time.Minute, nil)
	if got := replacedEvents(evs); len(got) != 0 {
		t.Fatalf("replaced before the swap: %v", got)
	}
	// Back after 30 minutes off, charging from 40 % for two hours.
	for i := 0; i < 12; i++ {
		r := &ups.Reading{Serial: "S1", Time: swapAt.Add(time.Duration(i) * 10 * time.Minute)}
		r.SetText("ups.status", "OL CHRG")
		r.SetNum("battery.charge", 40+5*float64(i))
		r.SetNum("ups.load", 50)
		evs = u.Observe(r, evs)
	}
	evs = s.run(&u, swapAt.Add(2*time.Hour), 40*day, evs)
	got := replacedEvents(evs)
	if len(got) != 1 || got[0].Before(swapAt) || got[0].After(swapAt.Add(day)) {
		t.Fatalf("battery_replaced at %v, want once within a day of %v", got, swapAt)
	}
	if sw := u.SwapList(); len(sw) != 1 || sw[0].Reason != "runtime_jump+power_cycle_recharge" {
		t.Fatalf("swaps %+v", sw)
	}
	if u.InstallSrc != SourceSwap || u.Install != got[0].Unix() {
		t.Fatalf("install %v by %v, want the swap", time.Unix(u.Install, 0).UTC(), u.InstallSrc)
	}
	h := u.HealthAt(swapAt.Add(40 * day))
	if !h.Known || math.Abs(h.SoH-1) > 0.05 || h.Since.Before(swapAt) {
		t.Fatalf("new battery's health %+v", h)
	}
}

// TestSwapSignals: one signal alone is not a swap; two within 14 days
// are; two 20 days apart are not.
func TestSwapSignals(t *testing.T) {
	step := func(u *Unit, at time.Time, status, result string, evs []rules.Event) []rules.Event {
		r := &ups.Reading{Serial: "S1", Time: at}
		r.SetText("ups.status", status)
		r.SetText("ups.test.result", result)
		r.SetNum("battery.charge", 100)
		return u.Observe(r, evs)
	}
	for _, tc := range []struct {
		name   string
		script []struct {
			day            int
			status, result string
		}
		want int
	}{
		{"RB clearing alone", []struct {
			day            int
			status, result string
		}{{0, "OL RB", "Done and passed"}, {1, "OL", "Done and passed"}}, 0},
		{"failed then passed alone", []struct {
			day            int
			status, result string
		}{{0, "OL", "Done and error"}, {3, "OL", "Done and passed"}}, 0},
		{"RB clears and the test passes after a failure", []struct {
			day            int
			status, result string
		}{{0, "OL RB", "Done and error"}, {5, "OL RB", "Done and error"}, {6, "OL", "Done and error"}, {7, "OL", "Done and passed"}}, 1},
		{"signals 20 days apart", []struct {
			day            int
			status, result string
		}{{0, "OL RB", "Done and error"}, {1, "OL", "Done and error"}, {21, "OL", "Done and passed"}}, 0},
		{"failure fixed after more than 14 days", []struct {
			day            int
			status, result string
		}{{0, "OL RB", "Done and error"}, {19, "OL", "Done and error"}, {20, "OL", "Done and passed"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u Unit
			var evs []rules.Event
			for _, s := range tc.script {
				evs = step(&u, tSim.Add(time.Duration(s.day)*day), s.status, s.result, evs)
			}
			if got := len(replacedEvents(evs)); got != tc.want {
				t.Fatalf("%d swaps, want %d", got, tc.want)
			}
		})
	}
}

// TestNoSwapFromLoadOrOutages: load swings and outages with recharge
// from below 90 % on a healthy battery never look like a swap.
func TestNoSwapFromLoadOrOutages(t *testing.T) {
	s := &sim{k: 1.1, r50: 2000, capacity: linearLoss(0.01), noise: 0.03, step: 10 * time.Minute,
		rng: rand.New(rand.NewPCG(13, 14)),
		load: func(t time.Time, rng *rand.Rand) float64 {
			if (t.Sub(tSim)/(10*day))%2 == 0 {
				return 15 + 10*rng.Float64()
			}
			return 60 + 25*rng.Float64()
		}}
	var u Unit
	var evs []rules.Event
	at := tSim
	for week := 0; week < 20; week++ {
		evs = s.run(&u, at, 7*day, evs)
		at = at.Add(7 * day)
		// An outage that also took the network: 20 minutes of silence,
		// back charging from 70 %.
		at = at.Add(20 * time.Minute)
		r := &ups.Reading{Serial: "S1", Time: at}
		r.SetText("ups.status", "OL CHRG")
		r.SetNum("battery.charge", 70)
		evs = u.Observe(r, evs)
		at = at.Add(10 * time.Minute)
	}
	if got := replacedEvents(evs); len(got) != 0 {
		t.Fatalf("swaps detected on one battery: %v", got)
	}
}
