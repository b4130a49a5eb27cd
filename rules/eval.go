package rules

import (
	"math"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// Evaluator applies a Catalog to units' readings. It is immutable and
// safe for concurrent use; all mutable data lives in the UnitState the
// caller passes.
type Evaluator struct {
	cat *Catalog
}

// NewEvaluator returns an evaluator for a catalog (DefaultCatalog if nil).
func NewEvaluator(c *Catalog) *Evaluator {
	if c == nil {
		c = DefaultCatalog()
	}
	return &Evaluator{cat: c}
}

// Catalog returns the evaluator's catalog.
func (e *Evaluator) Catalog() *Catalog { return e.cat }

// unitEval is one evaluation of a unit (one reading or one Tick): the
// unit's state, its effective rules, and the clock.
type unitEval struct {
	p       *params
	st      *UnitState
	r       *ups.Reading // nil when driven by Tick
	histCut int64        // ms: alerts ended before this are historical
	out     []Event
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// Evaluate applies one reading of the unit to its state and appends the
// resulting events to out.
//
// Rules run on the reading's time (r.Time). now is the caller's clock
// when the reading is processed; it is used only to tell a replayed
// backlog from live data (historical_after) and to measure silence for
// comm_lost in Tick, so a unit with a skewed clock is neither paged late
// nor declared lost. A reading older than one already evaluated for the
// unit is ignored: rules need readings in order.
//
// Readings carry the unit's whole upsc view as a rule sees it; a reading
// without ups.status keeps the last status, a missing variable leaves
// the rules that need it as they are.
func (e *Evaluator) Evaluate(st *UnitState, r *ups.Reading, now time.Time, out []Event) []Event {
	t := r.Time.UnixMilli()
	if st.last != 0 && t < st.last {
		return out
	}
	if st.serial != r.Serial {
		st.serial = r.Serial
	}
	u := unitEval{p: e.cat.params(st.Site, st.serial), st: st, r: r, out: out}
	u.histCut = now.UnixMilli() - u.p.historicalAfter
	// Deadlines that passed since the previous reading fire first, at
	// their own time, exactly as a Tick would have fired them: the
	// events do not depend on how often the caller ticks.
	u.timers(t)
	switch r.Presence {
	case ups.PresenceOffline:
		st.bits |= bitOffline
		u.commLost(t, t)
	case ups.PresenceOnline:
		st.bits &^= bitOffline
		u.commBack(t)
	default:
		u.telemetry(t)
	}
	st.last = t
	st.arrival = now.UnixMilli()
	return u.out
}

// Tick runs the unit's timers up to now: pending rules whose `for`
// elapsed without a new reading, keep_firing_for expiry, reminders,
// power_unstable's quiet period and comm_lost.
//
// Call it periodically (every few seconds) for every unit with a state,
// but only once the unit's readings are caught up: during the replay of a
// backlog the silence it measures is not real. now is the caller's clock;
// timers run on the unit's event time, estimated as the last reading's
// time plus the time elapsed since it arrived.
func (e *Evaluator) Tick(st *UnitState, now time.Time, out []Event) []Event {
	if st.last == 0 {
		return out
	}
	u := unitEval{p: e.cat.params(st.Site, st.serial), st: st, out: out}
	nowMs := now.UnixMilli()
	u.histCut = nowMs - u.p.historicalAfter
	elapsed := max(nowMs-st.arrival, 0)
	te := st.last + elapsed
	u.timers(te)
	cl := &u.p.CommLost
	if cl.Enabled && st.bits&bitOffline == 0 {
		if a := st.find(rCommLost); a == nil {
			limit := int64(cl.Factor * float64(u.interval()))
			if elapsed >= limit {
				u.commLost(st.last, st.last+limit)
				if a := st.find(rCommLost); a != nil {
					u.catchUp(a, te)
				}
			}
		}
	}
	return u.out
}

// interval returns the unit's reporting interval in ms.
func (u *unitEval) interval() int64 {
	if u.st.interval == 0 {
		return ms(u.p.CommLost.DefaultInterval)
	}
	return u.st.interval
}

// commLost fires comm_lost: silent since `since`, detected at `at`.
func (u *unitEval) commLost(since, at int64) {
	cl := &u.p.CommLost
	if !cl.Enabled || u.st.find(rCommLost) != nil {
		return
	}
	sev := cl.Severity
	if u.st.bits&bitOnBattery != 0 {
		sev = Critical
	}
	a := u.st.add(alertState{rule: rCommLost, phase: pending, sev: sev, started: since})
	a.vals[0] = val{valSilence, float32(at-since) / 1000}
	u.fire(a, at)
}

// commBack resolves comm_lost when the unit is heard from again.
func (u *unitEval) commBack(t int64) {
	if a := u.st.find(rCommLost); a != nil {
		// A device replaying its buffer may send readings older than the
		// moment the silence was declared.
		at := max(t, a.fired)
		a.vals[0] = val{}
		u.resolve(a, at, at)
	}
}

// telemetry evaluates every rule on an ordinary reading.
func (u *unitEval) telemetry(t int64) {
	st, r, p := u.st, u.r, u.p
	u.commBack(t)

	// Learn the reporting interval from the gaps between readings. A gap
	// counts at most 4 intervals, so one long silence does not teach the
	// engine to wait forever, yet a unit that really slowed down is
	// learnt within a few readings.
	if st.lastTelemetry != 0 && t > st.lastTelemetry {
		gap := t - st.lastTelemetry
		if st.interval == 0 {
			st.interval = gap
		} else {
			st.interval += (min(gap, 4*st.interval) - st.interval) / 4
		}
		st.interval = min(max(st.interval, ms(p.CommLost.MinInterval)), ms(p.CommLost.MaxInterval))
	}
	st.lastTelemetry = t

	hadStatus := st.bits&bitHasStatus != 0
	if r.HasStatus {
		st.status = r.Status.Flags
		st.bits |= bitHasStatus
	}
	hasStatus := st.bits&bitHasStatus != 0
	flags := st.status
	for i, v := range thresholdVars {
		if y, ok := r.Num(v); ok && y > 0 && !math.IsInf(y, 0) {
			st.thresholds[i] = float32(y)
		}
	}
	if load, ok := r.Num(ups.UPSLoad); ok {
		if st.loadAt == 0 {
			st.loadMean = float32(load)
		} else if dt := t - st.loadAt; dt > 0 {
			tau := float64(ms(p.Overload.Window)) / 2
			k := 1 - math.Exp(-float64(dt)/tau)
			st.loadMean += float32(k * (load - float64(st.loadMean)))
		}
		st.loadAt = t
	}

	o := observed{flags: flags, hasStatus: hasStatus}
	o.in, o.hasIn = r.Num(ups.InputVoltage)
	o.noMains = o.hasIn && o.in < p.OnBattery.NoInputBelow
	o.onBatt = runsOnBattery(flags, o.noMains)
	o.testing = flags&(ups.CAL|ups.TEST) != 0
	o.raw = o.onBatt && !(o.testing && p.OnBattery.SuppressDuringTest)
	if o.onBatt {
		st.bits |= bitOnBattery
	} else {
		st.bits &^= bitOnBattery
	}
	u.flap(t, o.raw, hadStatus)

	// Each rule's condition, in the order of ruleDefs (power_unstable and
	// comm_lost are driven by the flap digest and by silence). They are
	// called here directly, not through a function in each ruleDefs
	// entry: a call through a function value is not inlined, and the
	// condition's result then travels through memory; measured, that made
	// Evaluate 1.8 times slower (BenchmarkEvaluate).
	u.step(rOnBattery, u.onBattery(&o), t)
	u.step(rLowBattery, u.lowBattery(o.flags, o.onBatt), t)
	u.step(rBatteryWarning, u.batteryWarning(o.raw), t)
	u.step(rReplaceBattery, u.replaceBattery(o.flags, o.hasStatus), t)
	u.step(rOverload, u.overload(o.flags, o.hasStatus), t)
	u.step(rInputVoltage, u.inputVoltage(o.in, o.hasIn), t)
	u.step(rInputFrequency, u.inputFrequency(o.noMains), t)
	u.step(rBypass, flagCond(o.flags, o.hasStatus, ups.BYPASS, p.Bypass.Severity), t)
	u.step(rUPSOff, flagCond(o.flags, o.hasStatus, ups.OFF, p.UPSOff.Severity), t)
	u.step(rFSD, flagCond(o.flags, o.hasStatus, ups.FSD, p.FSD.Severity), t)
	u.step(rUPSAlarm, u.upsAlarm(o.flags, o.hasStatus), t)
	u.step(rTemperature, u.temperature(), t)
	u.step(rSelfTestFailed, u.selfTest(), t)
}
