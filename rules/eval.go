package rules

import (
	"fmt"
	"math"
	"strconv"
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

// run is one evaluation: the unit, its effective rules, and the clock.
type run struct {
	p       *params
	st      *UnitState
	r       *ups.Reading // nil when driven by Tick
	histCut int64        // ms: alerts ended before this are historical
	out     []Event
}

type condKind uint8

const (
	// cQuiet: neither the fire nor the clear condition holds (the
	// hysteresis band, missing data, a self-test). A pending alert
	// goes back to inactive, a firing one stays.
	cQuiet condKind = iota
	cClear
	cFire
)

type cond struct {
	kind condKind
	sev  Severity
	vals [2]val
}

// fires is a fire condition at severity sev with its values.
func fires(sev Severity, v ...val) cond {
	c := cond{kind: cFire, sev: sev}
	copy(c.vals[:], v)
	return c
}

// clears is a clear condition with its values.
func clears(v ...val) cond {
	c := cond{kind: cClear}
	copy(c.vals[:], v)
	return c
}

var quiet = cond{}

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
	x := run{p: e.cat.params(st.Site, st.serial), st: st, r: r, out: out}
	x.histCut = now.UnixMilli() - x.p.historicalAfter
	// Deadlines that passed since the previous reading fire first, at
	// their own time, exactly as a Tick would have fired them: the
	// events do not depend on how often the caller ticks.
	x.timers(t)
	switch r.Presence {
	case ups.PresenceOffline:
		st.bits |= bitOffline
		x.commLost(t, t)
	case ups.PresenceOnline:
		st.bits &^= bitOffline
		x.commBack(t)
	default:
		x.telemetry(t)
	}
	st.last = t
	st.arrival = now.UnixMilli()
	return x.out
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
	x := run{p: e.cat.params(st.Site, st.serial), st: st, out: out}
	nowMs := now.UnixMilli()
	x.histCut = nowMs - x.p.historicalAfter
	elapsed := max(nowMs-st.arrival, 0)
	te := st.last + elapsed
	x.timers(te)
	cl := &x.p.CommLost
	if cl.Enabled && st.bits&bitOffline == 0 {
		if a := st.find(rCommLost); a == nil {
			limit := int64(cl.Factor * float64(x.interval()))
			if elapsed >= limit {
				x.commLost(st.last, st.last+limit)
				if a := st.find(rCommLost); a != nil {
					x.catchUp(a, te)
				}
			}
		}
	}
	return x.out
}

// interval returns the unit's reporting interval in ms.
func (x *run) interval() int64 {
	if x.st.interval == 0 {
		return ms(x.p.CommLost.DefaultInterval)
	}
	return x.st.interval
}

// timers fires what is due at event time te.
func (x *run) timers(te int64) {
	st := x.st
	for i := 0; i < len(st.alerts); {
		a := &st.alerts[i]
		n := len(st.alerts)
		x.timer(a, te)
		if len(st.alerts) == n {
			i++
		}
	}
	if a := st.find(rPowerUnstable); a != nil && st.bits&bitRawOB == 0 {
		if end := st.flapLast + ms(x.p.PowerUnstable.Quiet); te >= end {
			x.resolve(a, st.flapLast, end)
		}
	}
}

func (x *run) timer(a *alertState, te int64) {
	c := x.common(a.rule)
	if a.phase == pending {
		if due := a.started + x.forOf(a.rule, c); te >= due {
			x.fire(a, due)
		}
		return
	}
	if a.clear != 0 {
		if due := a.clear + ms(c.KeepFiringFor); te >= due {
			x.resolve(a, a.clear, due)
			return
		}
	}
	x.catchUp(a, te)
	if rep := ms(c.RepeatEvery); rep > 0 && a.flags&flagAnnounced != 0 && te-a.note >= rep {
		at := a.note + (te-a.note)/rep*rep
		x.emit(Reminder, a, at, at < x.histCut)
		a.note = at
	}
}

// common returns the timing of a rule.
func (x *run) common(id ruleID) Common {
	p := &x.p.RuleSet
	switch id {
	case rOnBattery:
		return p.OnBattery.Common
	case rLowBattery:
		return p.LowBattery.Common
	case rBatteryWarning:
		return p.BatteryWarning.Common
	case rReplaceBattery:
		return p.ReplaceBattery.Common
	case rOverload:
		return p.Overload.Common
	case rInputVoltage:
		return p.InputVoltage.Common
	case rInputFrequency:
		return p.InputFrequency.Common
	case rBypass:
		return p.Bypass.Common
	case rUPSOff:
		return p.UPSOff.Common
	case rFSD:
		return p.FSD.Common
	case rUPSAlarm:
		return p.UPSAlarm.Common
	case rTemperature:
		return p.Temperature.Common
	case rSelfTestFailed:
		return p.SelfTestFailed.Common
	case rCommLost:
		return Common{Enabled: p.CommLost.Enabled, RepeatEvery: p.CommLost.RepeatEvery}
	case rPowerUnstable:
		return Common{Enabled: p.PowerUnstable.Enabled}
	}
	return Common{}
}

// forOf is the pending period; on_battery waits longer while the power is
// unstable, so blips stop paging but a real outage still does.
func (x *run) forOf(id ruleID, c Common) int64 {
	f := ms(c.For)
	if id == rOnBattery && x.st.find(rPowerUnstable) != nil {
		f = max(f, ms(x.p.PowerUnstable.OnBatteryFor))
	}
	return f
}

// step moves one rule's state machine on a condition observed at t.
func (x *run) step(id ruleID, c Common, cn cond, t int64) {
	st := x.st
	a := st.find(id)
	if !c.Enabled {
		if a != nil && a.phase == pending {
			st.remove(id)
		} else if a != nil {
			// Disabled while firing (configuration changed): close it.
			x.resolve(a, t, t)
		}
		return
	}
	switch cn.kind {
	case cFire:
		if a == nil {
			a = st.add(alertState{rule: id, phase: pending, sev: cn.sev, started: t})
		}
		a.vals = cn.vals
		if a.phase == pending {
			a.sev = cn.sev
			if t-a.started >= x.forOf(id, c) {
				x.fire(a, t)
			}
			return
		}
		a.clear = 0
		x.catchUp(a, t)
		if cn.sev != a.sev {
			a.sev = cn.sev
			if a.flags&flagAnnounced != 0 {
				x.emit(Updated, a, t, t < x.histCut)
				a.note = t
			}
		}
	case cQuiet, cClear:
		if a == nil {
			return
		}
		if a.phase == pending {
			st.remove(id)
			return
		}
		if cn.kind == cClear {
			if cn.vals[0].id != 0 {
				a.vals = cn.vals
			}
			if a.clear == 0 {
				a.clear = t
			}
			if t-a.clear >= ms(c.KeepFiringFor) {
				x.resolve(a, a.clear, t)
				return
			}
		}
		x.catchUp(a, t)
	}
	if rep := ms(c.RepeatEvery); rep > 0 && a.flags&flagAnnounced != 0 && t-a.note >= rep {
		x.emit(Reminder, a, t, t < x.histCut)
		a.note = t
	}
}

// fire moves a to firing at time at. An alert firing in a backlog older
// than historical_after is not announced yet (see flagAnnounced).
func (x *run) fire(a *alertState, at int64) {
	a.phase = firing
	a.fired = at
	a.note = at
	a.clear = 0
	if at >= x.histCut {
		a.flags |= flagAnnounced
		x.emit(Firing, a, at, false)
	}
}

// catchUp announces an alert held back during a backlog once it is seen
// still firing in recent time.
func (x *run) catchUp(a *alertState, t int64) {
	if a.flags&flagAnnounced == 0 && t >= x.histCut {
		a.flags |= flagAnnounced
		a.note = t
		x.emit(Firing, a, a.fired, false)
	}
}

// resolve ends a firing alert: the condition cleared at ended, the alert
// resolves at at. An alert never announced is emitted whole, Firing then
// Resolved, historical if it ended before historical_after.
func (x *run) resolve(a *alertState, ended, at int64) {
	if a.flags&flagAnnounced == 0 {
		hist := ended < x.histCut
		x.emit(Firing, a, a.fired, hist)
		x.emitResolved(a, ended, at, hist)
	} else {
		x.emitResolved(a, ended, at, false)
	}
	if a.rule == rPowerUnstable {
		x.st.flapTotal = 0
	}
	x.st.remove(a.rule)
}

func (x *run) emitResolved(a *alertState, ended, at int64, hist bool) {
	ev := x.event(Resolved, a, at, hist)
	ev.EndedAt = time.UnixMilli(ended).UTC()
	ev.Duration = time.Duration(ended-a.started) * time.Millisecond
	switch a.rule {
	case rOnBattery:
		ev.Message = "power restored after " + ev.Duration.String()
		ev.Silent = !x.p.PowerRestored.Enabled
	case rPowerUnstable:
		ev.Message = fmt.Sprintf("power stable again after %d interruptions", x.st.flapTotal)
		ev.Values = []Value{{valName(valInterruptions), float64(x.st.flapTotal)}}
	default:
		ev.Message = ruleDesc[a.rule] + " cleared after " + ev.Duration.String()
	}
	x.out = append(x.out, ev)
}

func (x *run) emit(k EventKind, a *alertState, at int64, hist bool) {
	ev := x.event(k, a, at, hist)
	switch k {
	case Firing:
		ev.Message = ruleDesc[a.rule]
		if a.rule == rUPSAlarm && x.r != nil {
			if s, ok := x.r.Text("ups.alarm"); ok && s != "" {
				ev.Message += ": " + s
			}
		}
		if a.rule == rPowerUnstable {
			ev.Message = fmt.Sprintf("power unstable: %d interruptions within %s",
				x.st.flapTotal, x.p.PowerUnstable.Window)
		}
	case Updated:
		ev.Message = ruleDesc[a.rule] + ", now " + a.sev.String()
	case Reminder:
		ev.Message = ruleDesc[a.rule] + " since " + ev.StartedAt.Format(time.RFC3339)
	}
	x.out = append(x.out, ev)
}

func (x *run) event(k EventKind, a *alertState, at int64, hist bool) Event {
	ev := Event{
		Kind:        k,
		Rule:        ruleNames[a.rule],
		Severity:    a.sev,
		Serial:      x.st.serial,
		At:          time.UnixMilli(at).UTC(),
		StartedAt:   time.UnixMilli(a.started).UTC(),
		Fingerprint: string(x.st.serial) + "/" + ruleNames[a.rule] + "/" + strconv.FormatInt(a.started, 10),
		Historical:  hist,
	}
	if x.r != nil && x.r.HasStatus {
		ev.Status = x.r.Status.Raw
	} else if x.st.bits&bitHasStatus != 0 {
		ev.Status = x.st.status.String()
	}
	for _, v := range a.vals {
		if v.id != 0 {
			ev.Values = append(ev.Values, Value{valName(v.id), float64(v.x)})
		}
	}
	return ev
}

var ruleDesc = [numRules]string{
	rOnBattery:      "on battery",
	rPowerUnstable:  "power unstable",
	rLowBattery:     "battery low",
	rBatteryWarning: "battery charge below warning level",
	rReplaceBattery: "battery needs replacing",
	rOverload:       "UPS overloaded",
	rInputVoltage:   "input voltage out of range",
	rInputFrequency: "input frequency out of range",
	rBypass:         "UPS on bypass",
	rUPSOff:         "UPS output off",
	rFSD:            "forced shutdown",
	rUPSAlarm:       "UPS alarm",
	rTemperature:    "temperature high",
	rSelfTestFailed: "self-test failed",
	rCommLost:       "communication lost",
}

// commLost fires comm_lost: silent since `since`, detected at `at`.
func (x *run) commLost(since, at int64) {
	cl := &x.p.CommLost
	if !cl.Enabled || x.st.find(rCommLost) != nil {
		return
	}
	sev := cl.Severity
	if x.st.bits&bitOnBattery != 0 {
		sev = Critical
	}
	a := x.st.add(alertState{rule: rCommLost, phase: pending, sev: sev, started: since})
	a.vals[0] = val{valSilence, float32(at-since) / 1000}
	x.fire(a, at)
}

// commBack resolves comm_lost when the unit is heard from again.
func (x *run) commBack(t int64) {
	if a := x.st.find(rCommLost); a != nil {
		// A device replaying its buffer may send readings older than the
		// moment the silence was declared.
		at := max(t, a.fired)
		a.vals[0] = val{}
		x.resolve(a, at, at)
	}
}

// telemetry evaluates every rule on an ordinary reading.
func (x *run) telemetry(t int64) {
	st, r, p := x.st, x.r, x.p
	x.commBack(t)

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
	for i, v := range devVars {
		if y, ok := r.Num(v); ok && y > 0 && !math.IsInf(y, 0) {
			st.dev[i] = float32(y)
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

	in, hasIn := r.Num(ups.InputVoltage)
	noMains := hasIn && in < p.OnBattery.NoInputBelow
	onBatt := onBattery(flags, noMains)
	testing := flags&(ups.CAL|ups.TEST) != 0
	raw := onBatt && !(testing && p.OnBattery.SuppressDuringTest)
	if onBatt {
		st.bits |= bitOnBattery
	} else {
		st.bits &^= bitOnBattery
	}
	x.flap(t, raw, hadStatus)

	// on_battery
	var c cond
	switch {
	case !hasStatus:
		c = quiet
	case onBatt && testing && p.OnBattery.SuppressDuringTest:
		c = quiet
	case onBatt:
		c = fires(p.OnBattery.Severity, inVal(r))
	default:
		c = clears(inVal(r))
	}
	x.step(rOnBattery, p.OnBattery.Common, c, t)

	x.step(rLowBattery, p.LowBattery.Common, x.lowBattery(flags, onBatt), t)
	x.step(rBatteryWarning, p.BatteryWarning.Common, x.batteryWarning(raw), t)
	x.step(rReplaceBattery, p.ReplaceBattery.Common, x.replaceBattery(flags, hasStatus), t)
	x.step(rOverload, p.Overload.Common, x.overload(flags, hasStatus), t)
	x.step(rInputVoltage, p.InputVoltage.Common, x.inputVoltage(in, hasIn), t)
	x.step(rInputFrequency, p.InputFrequency.Common, x.inputFrequency(noMains), t)
	x.step(rBypass, p.Bypass.Common, flagCond(flags, hasStatus, ups.BYPASS, p.Bypass.Severity), t)
	x.step(rUPSOff, p.UPSOff.Common, flagCond(flags, hasStatus, ups.OFF, p.UPSOff.Severity), t)
	x.step(rFSD, p.FSD.Common, flagCond(flags, hasStatus, ups.FSD, p.FSD.Severity), t)
	x.step(rUPSAlarm, p.UPSAlarm.Common, x.upsAlarm(flags, hasStatus), t)
	x.step(rTemperature, p.Temperature.Common, x.temperature(), t)
	x.step(rSelfTestFailed, p.SelfTestFailed.Common, x.selfTest(), t)
}

// onBattery decides whether the unit runs on battery, applying the quirks
// of real units:
//   - OB alone: on battery.
//   - OL and OB together (HP SNMP cards report it while on line, see the
//     #BAD notes of the NUT device library): on line, unless the input
//     voltage is reported and says the mains is gone. Trusting OL avoids
//     a page for a unit that is fine; the input voltage settles it when
//     present.
//   - OL+DISCHRG with no input voltage: on battery (CyberPower UT series
//     never clear OL). OL+DISCHRG with mains present is a battery
//     calibration or a charger quirk (APC Back-UPS): on line.
func onBattery(f ups.Flag, noMains bool) bool {
	ob, ol := f&ups.OB != 0, f&ups.OL != 0
	switch {
	case ob && !ol:
		return true
	case ob && ol:
		return noMains
	case ol && f&ups.DISCHRG != 0:
		return noMains
	}
	return false
}

func inVal(r *ups.Reading) val {
	if v, ok := r.Num(ups.InputVoltage); ok {
		return vv(ups.InputVoltage, v)
	}
	return val{}
}

func flagCond(f ups.Flag, hasStatus bool, flag ups.Flag, sev Severity) cond {
	switch {
	case !hasStatus:
		return quiet
	case f&flag != 0:
		return fires(sev)
	}
	return clears()
}

// flap counts on-line to on-battery transitions and raises one
// power_unstable digest instead of a page per blip.
// Only transitions seen against a known previous status count: a unit's
// first reading on battery is not an interruption.
func (x *run) flap(t int64, raw, hadStatus bool) {
	st, p := x.st, &x.p.PowerUnstable
	was := st.bits&bitRawOB != 0
	if raw {
		st.bits |= bitRawOB
	} else {
		st.bits &^= bitRawOB
	}
	if raw == was || !hadStatus {
		return
	}
	st.flapLast = t
	if !raw {
		return
	}
	bw := max(ms(p.Window)/flapBuckets, 1)
	idx := t / bw
	if gap := idx - st.flapHead; gap > 0 {
		if gap >= flapBuckets {
			st.flapCount = [flapBuckets]uint8{}
		} else {
			for i := int64(1); i <= gap; i++ {
				st.flapCount[(st.flapHead+i)%flapBuckets] = 0
			}
		}
		st.flapHead = idx
	}
	if idx > st.flapHead-flapBuckets {
		if c := &st.flapCount[idx%flapBuckets]; *c < math.MaxUint8 {
			*c++
		}
	}
	n := 0
	for _, c := range st.flapCount {
		n += int(c)
	}
	if a := st.find(rPowerUnstable); a != nil {
		if st.flapTotal < math.MaxUint16 {
			st.flapTotal++
		}
		return
	}
	if !p.Enabled || n < p.Interruptions {
		return
	}
	st.flapTotal = uint16(n)
	a := st.add(alertState{rule: rPowerUnstable, phase: pending, sev: p.Severity, started: t})
	a.vals[0] = val{valInterruptions, float32(n)}
	x.fire(a, t)
}

// devOr returns the unit's reported threshold i, or def.
func (x *run) devOr(i int, use bool, def float64) float64 {
	if use && x.st.dev[i] > 0 {
		return float64(x.st.dev[i])
	}
	return def
}

func (x *run) lowBattery(f ups.Flag, onBatt bool) cond {
	p, r := &x.p.LowBattery, x.r
	low := x.devOr(dChargeLow, p.UseDeviceThresholds, p.ChargeAtOrBelow)
	if low > 100 {
		low = p.ChargeAtOrBelow
	}
	rtLow := x.devOr(dRuntimeLow, p.UseDeviceThresholds, p.RuntimeAtOrBelow.Seconds())
	charge, hasC := r.Num(ups.BatteryCharge)
	rt, hasR := r.Num(ups.BatteryRuntime)
	// The runtime estimate counts on battery only: on line some units
	// report 0 or a placeholder when they do not know.
	hasR = hasR && onBatt
	var v [2]val
	if hasC {
		v[0] = vv(ups.BatteryCharge, charge)
	}
	if hasR {
		v[1] = vv(ups.BatteryRuntime, rt)
	}
	lb := f&ups.LB != 0
	if lb || (hasC && charge <= low) || (hasR && rt <= rtLow) {
		return cond{kind: cFire, sev: p.Severity, vals: v}
	}
	if x.st.bits&bitHasStatus == 0 && !hasC && !hasR {
		return quiet
	}
	if (hasC && charge <= low+p.ClearCharge) || (hasR && rt <= rtLow+p.ClearRuntime.Seconds()) {
		return quiet
	}
	return cond{kind: cClear, vals: v}
}

// batteryWarning: onBatt excludes self-tests and calibrations, which
// drain the battery on purpose.
func (x *run) batteryWarning(onBatt bool) cond {
	p := &x.p.BatteryWarning
	warn := x.devOr(dChargeWarning, p.UseDeviceThresholds, p.ChargeBelow)
	if warn > 100 {
		warn = p.ChargeBelow
	}
	charge, ok := x.r.Num(ups.BatteryCharge)
	switch {
	case p.OnBatteryOnly && !onBatt && x.st.bits&bitHasStatus != 0:
		return clears()
	case !ok:
		return quiet
	case charge < warn:
		return fires(p.Severity, vv(ups.BatteryCharge, charge))
	case charge < warn+p.ClearCharge:
		return quiet
	}
	return clears(vv(ups.BatteryCharge, charge))
}

func (x *run) replaceBattery(f ups.Flag, hasStatus bool) cond {
	bad, hasBad := x.r.Num(ups.BatteryPacksBad)
	switch {
	case f&ups.RB != 0 || bad > 0:
		if hasBad {
			return fires(x.p.ReplaceBattery.Severity, vv(ups.BatteryPacksBad, bad))
		}
		return fires(x.p.ReplaceBattery.Severity)
	case hasStatus || hasBad:
		return clears()
	}
	return quiet
}

// overload: OVER at once, else the load mean with two bands of
// hysteresis (warning from warn_above down to warn_clear_below, critical
// from critical_above down to critical_clear_below).
func (x *run) overload(f ups.Flag, hasStatus bool) cond {
	p := &x.p.Overload
	st := x.st
	if f&ups.OVER != 0 {
		if st.loadAt != 0 {
			return fires(Critical, vv(ups.UPSLoad, x.r.NumOr(ups.UPSLoad, float64(st.loadMean))))
		}
		return fires(Critical)
	}
	if st.loadAt == 0 {
		if hasStatus {
			return clears()
		}
		return quiet
	}
	m := float64(st.loadMean)
	vals := [2]val{{valLoadMean, st.loadMean}}
	if l, ok := x.r.Num(ups.UPSLoad); ok {
		vals[1] = vv(ups.UPSLoad, l)
	}
	cur := st.find(rOverload)
	firingSev := Severity(255)
	if cur != nil && cur.phase == firing {
		firingSev = cur.sev
	}
	switch {
	case m > p.CriticalAbove || (firingSev == Critical && m >= p.CriticalClearBelow):
		return cond{kind: cFire, sev: Critical, vals: vals}
	case m > p.WarnAbove || (firingSev != 255 && m >= p.WarnClearBelow):
		return cond{kind: cFire, sev: Warning, vals: vals}
	case cur != nil && cur.phase == pending:
		return quiet
	}
	return cond{kind: cClear, vals: vals}
}

func (x *run) inputVoltage(in float64, hasIn bool) cond {
	p := &x.p.InputVoltage
	if !hasIn || in < x.p.OnBattery.NoInputBelow {
		// No mains: on_battery's business, not a voltage excursion.
		return quiet
	}
	nom := x.devOr(dVoltageNominal, p.UseDeviceThresholds, p.Nominal)
	if nom == 0 {
		nom = x.st.inferVoltageNominal(in)
	}
	lo, hi := nom*(1-p.CriticalPct/100), nom*(1+p.CriticalPct/100)
	if p.UseDeviceThresholds {
		tl, th := float64(x.st.dev[dTransferLow]), float64(x.st.dev[dTransferHigh])
		// Transfer limits that do not bracket the nominal are garbage
		// (some units report 0.0).
		if tl > 0 && th > 0 && tl < nom && nom < th {
			lo, hi = tl, th
		}
	}
	dev := math.Abs(in-nom) / nom * 100
	v := vv(ups.InputVoltage, in)
	switch {
	case in < lo || in > hi:
		return fires(Critical, v)
	case dev > p.TolerancePct:
		return fires(Warning, v)
	case dev > p.ClearPct:
		return quiet
	}
	return clears(v)
}

// inferVoltageNominal guesses a unit's nominal input voltage from a
// reading and remembers it (in the slot of the reported nominal, which
// wins whenever the unit reports one).
func (st *UnitState) inferVoltageNominal(in float64) float64 {
	if st.dev[dVoltageNominal] > 0 {
		return float64(st.dev[dVoltageNominal])
	}
	nom := 230.0
	for _, n := range []float64{100, 120} {
		if math.Abs(in-n) < math.Abs(in-nom) {
			nom = n
		}
	}
	st.dev[dVoltageNominal] = float32(nom)
	return nom
}

func (x *run) inputFrequency(noMains bool) cond {
	p := &x.p.InputFrequency
	fr, ok := x.r.Num(ups.InputFrequency)
	if !ok || noMains || fr < 1 {
		return quiet
	}
	nom := x.devOr(dFrequencyNominal, p.UseDeviceThresholds, p.Nominal)
	if nom == 0 {
		nom = 50
		if math.Abs(fr-60) < math.Abs(fr-50) {
			nom = 60
		}
	}
	dev := math.Abs(fr - nom)
	v := vv(ups.InputFrequency, fr)
	switch {
	case dev > p.CriticalHz:
		return fires(Critical, v)
	case dev/nom*100 > p.TolerancePct:
		return fires(Warning, v)
	case dev/nom*100 > p.ClearPct:
		return quiet
	}
	return clears(v)
}

func (x *run) upsAlarm(f ups.Flag, hasStatus bool) cond {
	p := &x.p.UPSAlarm
	text, hasText := x.r.Text("ups.alarm")
	active := f&ups.ALARM != 0
	if hasText {
		s := trimSpace(text)
		if s != "" && !x.ignoredAlarm(s) {
			active = true
		}
	}
	switch {
	case active:
		return fires(p.Severity)
	case hasStatus || hasText:
		return clears()
	}
	return quiet
}

func (x *run) ignoredAlarm(s string) bool {
	for _, ig := range x.p.UPSAlarm.Ignore {
		if equalFold(s, ig) {
			return true
		}
	}
	return false
}

func (x *run) temperature() cond {
	p := &x.p.Temperature
	bt, hasB := x.r.Num(ups.BatteryTemperature)
	at, hasA := x.r.Num(ups.AmbientTemperature)
	if !hasB && !hasA {
		return quiet
	}
	var v [2]val
	if hasB {
		v[0] = vv(ups.BatteryTemperature, bt)
	}
	if hasA {
		v[1] = vv(ups.AmbientTemperature, at)
	}
	switch {
	case (hasB && bt >= p.BatteryCriticalAt) || (hasA && at >= p.AmbientCriticalAt):
		return cond{kind: cFire, sev: Critical, vals: v}
	case (hasB && bt >= p.BatteryWarnAt) || (hasA && at >= p.AmbientWarnAt):
		return cond{kind: cFire, sev: Warning, vals: v}
	case (hasB && bt >= p.BatteryWarnAt-p.ClearMargin) || (hasA && at >= p.AmbientWarnAt-p.ClearMargin):
		return quiet
	}
	return cond{kind: cClear, vals: v}
}

func (x *run) selfTest() cond {
	res, ok := x.r.Text("ups.test.result")
	if !ok {
		return quiet
	}
	for i := 0; i < len(res); i++ {
		if !x.p.failureFirst[res[i]] {
			continue
		}
		for _, w := range x.p.failureWords {
			if hasPrefixFold(res[i:], w) {
				return fires(x.p.SelfTestFailed.Severity)
			}
		}
	}
	return clears()
}

// ASCII helpers that do not allocate (strings.ToLower would, per reading).

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// hasPrefixFold reports whether s starts with prefix, ASCII
// case-insensitively; prefix is already lower case.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lower(s[i]) != prefix[i] {
			return false
		}
	}
	return true
}
