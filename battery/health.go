package battery

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// RuleHealth is the state-of-health alert.
const RuleHealth = "battery_health"

// State of health (SoH) is the battery's runtime now against its runtime
// when new, at the same load. The runtime a unit reports depends on the
// load: R(L) = R100 * (L/100)^-k, so every runtime is first brought to
// 50 % load, R50 = R(L) * (L/50)^k, with k fitted per unit by a log-log
// regression of its own runtimes on its loads (DefaultK until the unit
// has enough hours at different loads).
const (
	DefaultK      = 1.3
	minKPoints    = 48   // hourly points before a fitted k is trusted
	minKVariance  = 0.02 // of ln(load): loads must differ (about ±15 %)
	minK, maxK    = 0.5, 3.0
	baselineDays  = 14
	recentDays    = 7
	daySlots      = 28 // 24 hours and up to 4 outages a day
	outageWeight  = 6  // an outage is a direct measurement: it counts as 6 hours
	minOutage     = time.Minute
	minChargeDrop = 5.0
	// HealthWarning and HealthCritical are the battery_health
	// thresholds (replace at 80 % capacity); healthClear gives the
	// warning some hysteresis.
	HealthWarning  = 0.8
	HealthCritical = 0.6
	healthClear    = 0.82
)

// point is a runtime measurement: ln of runtime (s) and ln(load/50).
type point struct{ R, L float32 }

func (p point) norm(k float64) float64 { return float64(p.R) + k*float64(p.L) }

// health is the SoH state of a unit.
type health struct {
	// Touched by every reading: first, to share cache lines.
	Hour               int64   // unix hour of the open hour
	HR, HL             float32 // sums of ln R and ln(L/50) in the open hour
	HN                 uint16
	OBN                uint16
	Day                int32 // unix day of Today
	OBStart, OBLast    int64
	OBCharge, OBLastCh float32
	OBLoad             float32
	TN, BN, RN, TrN    uint8
	Since              int64 // start of the baseline window (unix s)
	// Regression sums over hourly points: x = ln(L/50), y = ln R.
	N                uint32
	Sx, Sy, Sxx, Sxy float64
	Outage           point // last outage measurement
	OutageAt         int64
	Today            [daySlots]point
	TW               [daySlots]uint8 // weights
	Base             [baselineDays]point
	Recent           [recentDays]point // newest last
	Trend            [trendPoints]trendPt
}

// resetHealth starts the baseline again (a new battery) at at.
func (u *Unit) resetHealth(at int64) {
	u.H = health{Since: at}
}

// K is the unit's runtime-vs-load exponent and whether it was fitted.
func (u *Unit) K() (float64, bool) {
	h := &u.H
	if h.N < minKPoints {
		return DefaultK, false
	}
	n := float64(h.N)
	vx := h.Sxx/n - (h.Sx/n)*(h.Sx/n)
	if vx < minKVariance {
		return DefaultK, false
	}
	k := -(h.Sxy/n - h.Sx/n*h.Sy/n) / vx
	if k < minK || k > maxK || math.IsNaN(k) {
		return DefaultK, false
	}
	return k, true
}

// Health is a unit's SoH with its inputs.
type Health struct {
	SoH      float64   `json:"soh"` // 0 when not known yet
	Known    bool      `json:"known"`
	K        float64   `json:"k"`
	KFitted  bool      `json:"k_fitted"`
	KPoints  int       `json:"k_points"`
	Baseline float64   `json:"baseline_runtime50_s,omitempty"`
	Current  float64   `json:"runtime50_s,omitempty"`
	BaseDays int       `json:"baseline_days"`
	Days     int       `json:"recent_days"`
	Since    time.Time `json:"baseline_since,omitzero"`
	Outage50 float64   `json:"outage_runtime50_s,omitempty"`
	OutageAt time.Time `json:"outage_at,omitzero"`
}

// HealthAt returns the SoH as of the last closed day: the median
// normalised runtime of the last 7 days over that of the first 14 days
// after install, swap or first sight. It is known once the baseline
// window is over and both sides have data.
func (u *Unit) HealthAt(now time.Time) Health {
	h := &u.H
	k, fitted := u.K()
	out := Health{K: k, KFitted: fitted, KPoints: int(h.N), BaseDays: int(h.BN), Days: int(h.RN)}
	if h.Since != 0 {
		out.Since = time.Unix(h.Since, 0).UTC()
	}
	if h.OutageAt != 0 {
		out.Outage50 = math.Exp(h.Outage.norm(k))
		out.OutageAt = time.Unix(h.OutageAt, 0).UTC()
	}
	if h.BN == 0 || h.RN == 0 {
		return out
	}
	base := medianNorm(h.Base[:h.BN], nil, k)
	cur := medianNorm(h.Recent[:h.RN], nil, k)
	out.Baseline, out.Current = math.Exp(base), math.Exp(cur)
	if now.Unix() >= h.Since+baselineDays*86400 {
		out.SoH, out.Known = math.Exp(cur-base), true
	}
	return out
}

// medianNorm is the (weighted) median of the points normalised with k.
func medianNorm(ps []point, w []uint8, k float64) float64 {
	var buf [daySlots]struct {
		v float64
		w int
	}
	vs := buf[:0]
	total := 0
	for i, p := range ps {
		wi := 1
		if w != nil {
			wi = int(w[i])
		}
		vs = append(vs, struct {
			v float64
			w int
		}{p.norm(k), wi})
		total += wi
	}
	slices.SortFunc(vs, func(a, b struct {
		v float64
		w int
	}) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	// Lower and upper weighted medians, averaged.
	acc, lo := 0, math.NaN()
	for _, x := range vs {
		acc += x.w
		if math.IsNaN(lo) && 2*acc >= total {
			lo = x.v
		}
		if 2*acc > total {
			return (lo + x.v) / 2
		}
	}
	return lo
}

// medianPoint picks the day's representative point: the one whose
// normalised value is the weighted median, so it can be normalised
// again when k changes.
func medianPoint(ps []point, w []uint8, k float64) point {
	m := medianNorm(ps, w, k)
	best, bd := ps[0], math.Inf(1)
	for _, p := range ps {
		if d := math.Abs(p.norm(k) - m); d < bd {
			best, bd = p, d
		}
	}
	return best
}

// observeHealth folds a reading into the runtime and outage state. The
// hour and day close when a reading of a later one arrives.
func (u *Unit) observeHealth(r *ups.Reading, at int64, evs []rules.Event) []rules.Event {
	h := &u.H
	if h.Since == 0 {
		h.Since = at
	}
	if hour := at / 3600; hour != h.Hour {
		jump := u.closeHour()
		h.Hour = hour
		if d := int32(at / 86400); d != h.Day {
			if h.TN > 0 {
				evs = u.closeDay(r, evs)
			}
			h.Day = d
		}
		if jump {
			evs = u.signal(sigRuntimeUp, r, evs)
			h.Hour, h.Day = hour, int32(at/86400) // a swap resets them
		}
	}
	load, okL := r.Num(ups.UPSLoad)
	charge, okC := r.Num(ups.BatteryCharge)
	onBattery := r.Status.Has(ups.OB)
	switch {
	case onBattery && okC:
		if h.OBStart == 0 {
			h.OBStart, h.OBCharge, h.OBLoad, h.OBN = at, float32(charge), 0, 0
		}
		h.OBLast, h.OBLastCh = at, float32(charge)
		if okL {
			h.OBLoad += float32(load)
			h.OBN++
		}
	case !onBattery && h.OBStart != 0:
		u.closeOutage()
	}
	if onBattery || !r.Status.Has(ups.OL) || r.Status.Any(ups.CAL|ups.TEST) || !okL || !okC ||
		charge < 99 || load < 10 || load > 90 {
		return evs
	}
	rt, ok := r.Num(ups.BatteryRuntime)
	if !ok || !SaneRuntime(rt) {
		return evs
	}
	h.HN++
	// Logs per reading, not of the hour's means: the load can swing
	// within an hour, and the mean of runtimes at different loads is
	// not the runtime at the mean load.
	h.HR += float32(fastLog(rt))
	h.HL += float32(fastLog(load / 50))
	return evs
}

// closeHour reduces the open hour to a point; it reports whether that
// point is a runtime jump (a swap signal).
func (u *Unit) closeHour() (jump bool) {
	h := &u.H
	if h.HN == 0 {
		return false
	}
	p := point{h.HR / float32(h.HN), h.HL / float32(h.HN)}
	h.HN, h.HR, h.HL = 0, 0, 0
	x, y := float64(p.L), float64(p.R)
	jump = u.runtimeJump(p)
	h.N++
	h.Sx += x
	h.Sy += y
	h.Sxx += x * x
	h.Sxy += x * y
	u.addToday(p, 1)
	return jump
}

func (u *Unit) addToday(p point, w uint8) {
	h := &u.H
	if int(h.TN) < daySlots {
		h.Today[h.TN], h.TW[h.TN] = p, w
		h.TN++
	}
}

// closeOutage turns a finished time on battery into a runtime
// measurement: the whole charge would last duration*100/drop.
func (u *Unit) closeOutage() {
	h := &u.H
	d := time.Duration(h.OBLast-h.OBStart) * time.Second
	drop := float64(h.OBCharge - h.OBLastCh)
	if d >= minOutage && drop >= minChargeDrop && h.OBN > 0 {
		load := float64(h.OBLoad) / float64(h.OBN)
		if load >= 10 && load <= 90 {
			p := point{float32(math.Log(d.Seconds() * 100 / drop)), float32(math.Log(load / 50))}
			h.Outage, h.OutageAt = p, h.OBLast
			u.addToday(p, outageWeight)
		}
	}
	h.OBStart, h.OBLast, h.OBN, h.OBLoad = 0, 0, 0, 0
}

// closeDay reduces the day to its median point, adds it to the baseline
// (within the window) and the last 7 days, and checks battery_health.
func (u *Unit) closeDay(r *ups.Reading, evs []rules.Event) []rules.Event {
	h := &u.H
	k, _ := u.K()
	p := medianPoint(h.Today[:h.TN], h.TW[:h.TN], k)
	dayStart := int64(h.Day) * 86400
	if dayStart+86400 > h.Since && dayStart < h.Since+baselineDays*86400 && int(h.BN) < baselineDays {
		h.Base[h.BN] = p
		h.BN++
	}
	if int(h.RN) == recentDays {
		copy(h.Recent[:], h.Recent[1:])
		h.RN--
	}
	h.Recent[h.RN] = p
	h.RN++
	h.TN, h.Today, h.TW = 0, [daySlots]point{}, [daySlots]uint8{}
	hl := u.HealthAt(r.Time)
	if !hl.Known {
		return evs
	}
	u.addTrend(h.Day, hl.SoH)
	firing := u.Alerts[alertHealth].Since != 0
	sev := rules.Warning
	if hl.SoH < HealthCritical {
		sev = rules.Critical
	}
	on := hl.SoH < HealthWarning || (firing && hl.SoH < healthClear)
	return u.set(alertHealth, on, sev, r, evs, func() (string, []rules.Value) {
		return fmt.Sprintf("battery state of health %.0f %%", hl.SoH*100),
			[]rules.Value{{Name: "battery.soh", Value: math.Round(hl.SoH*1000) / 1000}}
	})
}

// fastLog is ln(x) for the positive, finite values of runtimes and loads,
// within 1e-7 of math.Log at a fraction of its cost (it ran on every
// reading twice and was the tracker's main cost): x = m * 2^e with m in
// [sqrt(1/2), sqrt(2)), ln m = 2 atanh(z), z = (m-1)/(m+1), |z| < 0.172,
// by four terms of the atanh series.
func fastLog(x float64) float64 {
	m, e := math.Frexp(x) // m in [0.5, 1)
	if m < math.Sqrt2/2 {
		m *= 2
		e--
	}
	z := (m - 1) / (m + 1)
	z2 := z * z
	return float64(e)*math.Ln2 + 2*z*(1+z2*(1.0/3+z2*(1.0/5+z2*(1.0/7))))
}
