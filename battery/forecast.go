package battery

import (
	"math"
	"slices"
	"time"
)

// Forecast constants.
const (
	trendPoints    = 16 // weekly SoH points: 90 days and some
	trendEvery     = 7  // days between trend points
	trendWindow    = 90 // days of points the trend is fitted on
	minTrendPoints = 6
)

// trendPt is one weekly SoH value: unix day and SoH * 10000.
type trendPt struct {
	Day int32
	S   uint16
}

// addTrend records the day's SoH when a week passed since the last one.
func (u *Unit) addTrend(dayIdx int32, soh float64) {
	h := &u.H
	if h.TrN > 0 && dayIdx-h.Trend[h.TrN-1].Day < trendEvery {
		return
	}
	if int(h.TrN) == trendPoints {
		copy(h.Trend[:], h.Trend[1:])
		h.TrN--
	}
	h.Trend[h.TrN] = trendPt{dayIdx, uint16(math.Round(min(max(soh, 0), 6.5) * 10000))}
	h.TrN++
}

// Forecast is when the battery should be replaced and why.
type Forecast struct {
	// At is the earliest of the three dates below that is known.
	At     time.Time `json:"at,omitzero"`
	Reason string    `json:"reason,omitempty"` // "health", "age" or "maintenance"
	// Health is where the SoH trend crosses 0.8 (zero: no decline, or
	// fewer than 6 points in 90 days).
	Health time.Time `json:"health_at,omitzero"`
	// SlopePerYear is the Theil-Sen slope of SoH, per year.
	SlopePerYear float64   `json:"soh_slope_per_year"`
	Points       int       `json:"points"`
	Age          time.Time `json:"age_at,omitzero"`
	Maintenance  time.Time `json:"maintenance_at,omitzero"`
}

// ForecastAt is the replacement forecast as of now: the earliest of the
// day the SoH trend (Theil-Sen over the weekly points of the last 90
// days) crosses HealthWarning, the day the effective age reaches
// AgeLimit, and battery.date.maintenance.
func (u *Unit) ForecastAt(now time.Time) Forecast {
	var f Forecast
	h := &u.H
	from := int32(now.Unix()/86400) - trendWindow
	var xs, ys [trendPoints]float64
	n := 0
	for _, p := range h.Trend[:h.TrN] {
		if p.Day >= from {
			xs[n], ys[n] = float64(p.Day), float64(p.S)/10000
			n++
		}
	}
	f.Points = n
	if n >= minTrendPoints {
		slope, icept := theilSen(xs[:n], ys[:n])
		f.SlopePerYear = slope * 365
		if slope < 0 {
			d := (HealthWarning - icept) / slope
			t := time.Unix(int64(d*86400), 0).UTC()
			if t.Before(now) {
				t = now.UTC()
			}
			f.Health = t
		}
	}
	if u.Install != 0 {
		f.Age = u.AgeLimitAt(now).UTC()
	}
	if u.Maint != 0 {
		f.Maintenance = time.Unix(u.Maint, 0).UTC()
	}
	for _, c := range []struct {
		t      time.Time
		reason string
	}{{f.Health, "health"}, {f.Age, "age"}, {f.Maintenance, "maintenance"}} {
		if !c.t.IsZero() && (f.At.IsZero() || c.t.Before(f.At)) {
			f.At, f.Reason = c.t, c.reason
		}
	}
	return f
}

// theilSen fits y = slope*x + intercept robustly: the slope is the
// median of the pairwise slopes, the intercept the median of y - slope*x.
func theilSen(xs, ys []float64) (slope, intercept float64) {
	var buf [trendPoints * (trendPoints - 1) / 2]float64
	ss := buf[:0]
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			if xs[j] != xs[i] {
				ss = append(ss, (ys[j]-ys[i])/(xs[j]-xs[i]))
			}
		}
	}
	slope = median(ss)
	var rb [trendPoints]float64
	rs := rb[:0]
	for i := range xs {
		rs = append(rs, ys[i]-slope*xs[i])
	}
	return slope, median(rs)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}
