package battery

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestForecastCapacityLoss: after six months of a battery losing 2 % a
// month, the forecast is within ±30 days of the day it truly reaches
// 80 % (day 300).
func TestForecastCapacityLoss(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		s := &sim{k: 1.2, r50: 1800, capacity: linearLoss(0.02), load: uniformLoad(20, 80), noise: 0.04,
			step: 15 * time.Minute, rng: rand.New(rand.NewPCG(seed, 42))}
		var u Unit
		now := tSim.Add(6 * 30 * day)
		s.run(&u, tSim, 6*30*day+time.Hour, nil)
		f := u.ForecastAt(now)
		truth := tSim.Add(300 * day)
		if f.Reason != "health" || f.Points < minTrendPoints {
			t.Fatalf("seed %d: forecast %+v", seed, f)
		}
		if d := f.At.Sub(truth); d < -30*day || d > 30*day {
			t.Errorf("seed %d: forecast %v, truth %v (%+.0f days); %+v", seed, f.At, truth, d.Hours()/24, f)
		}
		// -0.02 a month is -0.243 a year.
		if math.Abs(f.SlopePerYear+0.243) > 0.03 {
			t.Errorf("seed %d: slope %.3f/year, truth -0.243", seed, f.SlopePerYear)
		}
	}
}

func TestForecastEarliestReason(t *testing.T) {
	s := &sim{k: 1.3, r50: 1800, capacity: func(time.Time) float64 { return 1 }, load: uniformLoad(20, 80),
		noise: 0.02, step: 30 * time.Minute, rng: rand.New(rand.NewPCG(5, 5))}
	var u Unit
	s.run(&u, tSim, 120*day, nil)
	now := tSim.Add(120 * day)
	f := u.ForecastAt(now)
	if !f.Health.IsZero() && f.Health.Before(now.Add(5*365*day)) {
		t.Errorf("a healthy battery forecast to fail on %v", f.Health)
	}
	if f.Reason != "age" || !f.At.Equal(f.Age) || f.Age.Sub(tSim) < AgeLimit-day || f.Age.Sub(tSim) > AgeLimit+day {
		t.Errorf("healthy, installed %v: forecast %+v, want the age limit", tSim, f)
	}
	u.Maint = now.Add(200 * day).Unix()
	if f := u.ForecastAt(now); f.Reason != "maintenance" || !f.At.Equal(now.Add(200*day).UTC()) {
		t.Errorf("with an earlier maintenance date: %+v", f)
	}
	// Fewer than six points in 90 days: no health forecast.
	var v Unit
	s.run(&v, tSim, 40*day, nil)
	if f := v.ForecastAt(tSim.Add(40 * day)); !f.Health.IsZero() || f.Points >= minTrendPoints {
		t.Errorf("after 40 days: %+v", f)
	}
}

func TestTheilSenResistsOutliers(t *testing.T) {
	xs := []float64{0, 7, 14, 21, 28, 35, 42, 49}
	ys := make([]float64, len(xs))
	for i, x := range xs {
		ys[i] = 1 - 0.001*x
	}
	ys[3], ys[6] = 0.3, 1.4 // two wild points
	slope, icept := theilSen(xs, ys)
	if math.Abs(slope+0.001) > 1e-4 || math.Abs(icept-1) > 0.01 {
		t.Fatalf("slope %.5f intercept %.3f, want -0.001 and 1", slope, icept)
	}
}
