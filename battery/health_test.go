package battery

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// sim is a synthetic unit whose runtime follows the model with a known
// truth: R(L) = capacity(t) * r50 * (L/50)^-k, with a few per cent of
// noise, reported in whole seconds as UPSes do.
type sim struct {
	k        float64
	r50      float64
	capacity func(t time.Time) float64
	load     func(t time.Time, rng *rand.Rand) float64
	noise    float64
	step     time.Duration
	rng      *rand.Rand
}

func (s *sim) runtime(t time.Time, load float64) float64 {
	return math.Round(s.capacity(t) * s.r50 * math.Pow(load/50, -s.k) * (1 + s.noise*(2*s.rng.Float64()-1)))
}

func (s *sim) reading(t time.Time) *ups.Reading {
	load := s.load(t, s.rng)
	r := &ups.Reading{Serial: "S1", Time: t}
	r.SetText("ups.status", "OL")
	r.SetNum("battery.charge", 100)
	r.SetNum("ups.load", math.Round(load))
	r.SetNum("battery.runtime", s.runtime(t, math.Round(load)))
	return r
}

// run feeds readings from t0 for d and returns the events.
func (s *sim) run(u *Unit, t0 time.Time, d time.Duration, evs []rules.Event) []rules.Event {
	for t := t0; t.Before(t0.Add(d)); t = t.Add(s.step) {
		evs = u.Observe(s.reading(t), evs)
	}
	return evs
}

var tSim = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func uniformLoad(lo, hi float64) func(time.Time, *rand.Rand) float64 {
	return func(_ time.Time, rng *rand.Rand) float64 { return lo + (hi-lo)*rng.Float64() }
}

// linearLoss is a capacity losing perMonth (fraction) every 30 days.
func linearLoss(perMonth float64) func(time.Time) float64 {
	return func(t time.Time) float64 { return 1 - perMonth*t.Sub(tSim).Hours()/24/30 }
}

// TestHealthTracksCapacityLoss: a battery losing 2 % capacity a month
// shows a SoH within ±0.05 of the truth after six months.
func TestHealthTracksCapacityLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k     float64
		loads func(time.Time, *rand.Rand) float64
	}{
		{"varied load, k 1.15", 1.15, uniformLoad(20, 80)},
		{"varied load, k 1.5", 1.5, uniformLoad(15, 85)},
		{"steady load", 1.3, uniformLoad(38, 42)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sim{k: tc.k, r50: 1800, capacity: linearLoss(0.02), load: tc.loads, noise: 0.03,
				step: 10 * time.Minute, rng: rand.New(rand.NewPCG(1, 2))}
			var u Unit
			d := 6 * 30 * day
			s.run(&u, tSim, d+time.Hour, nil)
			h := u.HealthAt(tSim.Add(d))
			truth := s.capacity(tSim.Add(d))
			if !h.Known || math.Abs(h.SoH-truth) > 0.05 {
				t.Fatalf("SoH %.3f (known %v), truth %.3f; inputs %+v", h.SoH, h.Known, truth, h)
			}
			t.Logf("SoH %.3f truth %.3f k %.2f (fitted %v, true %.2f)", h.SoH, truth, h.K, h.KFitted, tc.k)
		})
	}
}

// TestHealthIgnoresLoadChanges: a healthy battery whose load moves from
// 20-30 % in its first weeks to 60-85 % keeps its SoH within 0.05 of 1.
func TestHealthIgnoresLoadChanges(t *testing.T) {
	for _, k := range []float64{0.9, 1.1, 1.3, 1.6} {
		s := &sim{k: k, r50: 2400, capacity: func(time.Time) float64 { return 1 }, noise: 0.02,
			step: 10 * time.Minute, rng: rand.New(rand.NewPCG(3, 4)),
			load: func(t time.Time, rng *rand.Rand) float64 {
				if t.Sub(tSim) < 20*day {
					return 20 + 10*rng.Float64()
				}
				return 60 + 25*rng.Float64()
			}}
		var u Unit
		s.run(&u, tSim, 60*day+time.Hour, nil)
		h := u.HealthAt(tSim.Add(60 * day))
		if !h.Known || math.Abs(h.SoH-1) > 0.05 {
			t.Errorf("k %.1f: SoH %.3f after a load change alone; inputs %+v", k, h.SoH, h)
		}
		if !h.KFitted || math.Abs(h.K-k) > 0.1 {
			t.Errorf("k %.1f: fitted %.2f (fitted %v)", k, h.K, h.KFitted)
		}
	}
}

// TestHealthDefaultKWithoutSpread: with one load only, k cannot be
// fitted and stays at the default.
func TestHealthDefaultKWithoutSpread(t *testing.T) {
	s := &sim{k: 1.1, r50: 1800, capacity: func(time.Time) float64 { return 1 }, load: uniformLoad(40, 40.4),
		step: 10 * time.Minute, rng: rand.New(rand.NewPCG(5, 6))}
	var u Unit
	s.run(&u, tSim, 20*day, nil)
	if k, fitted := u.K(); fitted || k != DefaultK {
		t.Fatalf("k %.2f fitted %v from a single load", k, fitted)
	}
}

// TestOutageMeasurement: a real outage at 40 % load whose charge falls
// as the reported runtime says gives a measurement that agrees with the
// normalised runtime of the readings within 5 %.
func TestOutageMeasurement(t *testing.T) {
	s := &sim{k: 1.2, r50: 1800, capacity: func(time.Time) float64 { return 0.9 }, load: uniformLoad(25, 75),
		noise: 0.02, step: 10 * time.Minute, rng: rand.New(rand.NewPCG(7, 8))}
	var u Unit
	s.run(&u, tSim, 20*day, nil)
	// 12 minutes on battery at 40 %, a reading every 30 s.
	start := tSim.Add(20 * day)
	full := 0.9 * 1800 * math.Pow(40.0/50, -1.2)
	for i := 0; i <= 24; i++ {
		at := start.Add(time.Duration(i) * 30 * time.Second)
		r := &ups.Reading{Serial: "S1", Time: at}
		r.SetText("ups.status", "OB DISCHRG")
		r.SetNum("ups.load", 40)
		r.SetNum("battery.charge", math.Round(100-100*at.Sub(start).Seconds()/full))
		u.Observe(r, nil)
	}
	s.run(&u, start.Add(13*time.Minute), 3*day, nil)
	h := u.HealthAt(start.Add(3 * day))
	if h.OutageAt.IsZero() {
		t.Fatal("no outage measurement")
	}
	if rel := h.Outage50/h.Current - 1; math.Abs(rel) > 0.05 {
		t.Fatalf("outage runtime at 50 %% %.0f s vs normalised readings %.0f s (%.1f %%)", h.Outage50, h.Current, 100*rel)
	}
	// Too short, or too shallow, outages measure nothing.
	var v Unit
	s.run(&v, tSim, 2*day, nil)
	for i, status := range []string{"OB DISCHRG", "OB DISCHRG", "OL CHRG"} {
		r := &ups.Reading{Serial: "S1", Time: tSim.Add(2*day + time.Duration(i)*20*time.Second)}
		r.SetText("ups.status", status)
		r.SetNum("ups.load", 40)
		r.SetNum("battery.charge", float64(100-10*i))
		v.Observe(r, nil)
	}
	if v.H.OutageAt != 0 {
		t.Fatal("a 40 s outage gave a measurement")
	}
}

// TestHealthAlert: battery_health warns below 0.8, turns critical below
// 0.6, once each, and a new battery resolves it and restarts the
// baseline.
func TestHealthAlert(t *testing.T) {
	s := &sim{k: 1.3, r50: 1800, capacity: linearLoss(0.03), load: uniformLoad(20, 80), noise: 0.02,
		step: 30 * time.Minute, rng: rand.New(rand.NewPCG(9, 10))}
	var u Unit
	evs := s.run(&u, tSim, 16*30*day, nil)
	var got []string
	var at []time.Time
	for _, ev := range evs {
		if ev.Rule == RuleHealth {
			got = append(got, ev.Kind.String()+"/"+ev.Severity.String())
			at = append(at, ev.At)
		}
	}
	if !equal(got, []string{"firing/warning", "updated/critical"}) {
		t.Fatalf("battery_health events %v", got)
	}
	// Truth: 0.8 after 6.67 months, 0.6 after 13.3 (a day of lag for
	// the day to close, a few of noise and median lag).
	for i, months := range []float64{20.0 / 3, 40.0 / 3} {
		want := tSim.Add(time.Duration(months * 30 * float64(day)))
		if d := at[i].Sub(want); d < -5*day || d > 10*day {
			t.Errorf("%s at %v, truth %v", got[i], at[i], want)
		}
	}
	// The owner enters the new battery's date: resolved, baseline anew.
	swap := tSim.Add(16 * 30 * day)
	evs = u.SetOwnerDate(swap, swap)
	var after []string
	for _, ev := range evs {
		after = append(after, ev.Rule+"/"+ev.Kind.String())
	}
	if !equal(after, []string{"battery_replaced/firing", "battery_replaced/resolved", "battery_health/resolved"}) {
		t.Fatalf("after the new battery: %v", after)
	}
	if h := u.HealthAt(swap); h.Known || h.BaseDays != 0 {
		t.Fatalf("health after reset %+v", h)
	}
}

func TestFastLog(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 100000; i++ {
		x := math.Exp(rng.Float64()*30 - 10) // 4.5e-5 .. 4.8e8
		if d := math.Abs(fastLog(x) - math.Log(x)); d > 1e-7 {
			t.Fatalf("fastLog(%g) = %g, math.Log %g", x, fastLog(x), math.Log(x))
		}
	}
	for _, x := range []float64{1, 2, 0.5, math.Sqrt2 / 2, math.Sqrt2, 36000, 0.2, 1.8} {
		if d := math.Abs(fastLog(x) - math.Log(x)); d > 1e-7 {
			t.Fatalf("fastLog(%g) = %g, math.Log %g", x, fastLog(x), math.Log(x))
		}
	}
}
