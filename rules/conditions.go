package rules

// The rules' conditions: what a telemetry reading says about each rule
// (fire at a severity, clear, or neither).

import (
	"math"

	"github.com/upswatch/upswatch/ups"
)

// condKind is what a reading says about one rule.
type condKind uint8

const (
	// cQuiet: neither the fire nor the clear condition holds (the
	// hysteresis band, missing data, a self-test). A pending alert
	// goes back to inactive, a firing one stays.
	cQuiet condKind = iota
	cClear
	cFire
)

// cond is a rule's condition on one reading, the state machine's input
// (step): its kind, and when it fires, the severity; the values go with
// the alert.
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

// observed is what one telemetry reading says, once the quirks are
// applied, for the rules' conditions.
type observed struct {
	flags     ups.Flag // the last known status
	hasStatus bool     // a status was ever seen
	onBatt    bool     // on battery (quirks applied, tests included)
	testing   bool     // a self-test or calibration runs (CAL, TEST)
	raw       bool     // on battery and not in a suppressed self-test
	in        float64  // input voltage
	hasIn     bool
	noMains   bool // the input voltage says the mains is gone
}

// onBattery is on_battery's condition.
func (u *unitEval) onBattery(o *observed) cond {
	switch {
	case !o.hasStatus:
		return quiet
	case o.onBatt && o.testing && u.p.OnBattery.SuppressDuringTest:
		return quiet
	case o.onBatt:
		return fires(u.p.OnBattery.Severity, inVal(u.r))
	}
	return clears(inVal(u.r))
}

// runsOnBattery decides whether the unit runs on battery, applying the quirks
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
func runsOnBattery(f ups.Flag, noMains bool) bool {
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
		return varVal(ups.InputVoltage, v)
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

// threshold returns the unit's reported threshold i, or def.
func (u *unitEval) threshold(i int, use bool, def float64) float64 {
	if use && u.st.thresholds[i] > 0 {
		return float64(u.st.thresholds[i])
	}
	return def
}

func (u *unitEval) lowBattery(f ups.Flag, onBatt bool) cond {
	p, r := &u.p.LowBattery, u.r
	low := u.threshold(thChargeLow, p.UseDeviceThresholds, p.ChargeAtOrBelow)
	if low > 100 {
		low = p.ChargeAtOrBelow
	}
	rtLow := u.threshold(thRuntimeLow, p.UseDeviceThresholds, p.RuntimeAtOrBelow.Seconds())
	charge, hasC := r.Num(ups.BatteryCharge)
	rt, hasR := r.Num(ups.BatteryRuntime)
	// The runtime estimate counts on battery only: on line some units
	// report 0 or a placeholder when they do not know.
	hasR = hasR && onBatt
	var v [2]val
	if hasC {
		v[0] = varVal(ups.BatteryCharge, charge)
	}
	if hasR {
		v[1] = varVal(ups.BatteryRuntime, rt)
	}
	lb := f&ups.LB != 0
	if lb || (hasC && charge <= low) || (hasR && rt <= rtLow) {
		return cond{kind: cFire, sev: p.Severity, vals: v}
	}
	if u.st.bits&bitHasStatus == 0 && !hasC && !hasR {
		return quiet
	}
	if (hasC && charge <= low+p.ClearCharge) || (hasR && rt <= rtLow+p.ClearRuntime.Seconds()) {
		return quiet
	}
	return cond{kind: cClear, vals: v}
}

// batteryWarning: onBatt excludes self-tests and calibrations, which
// drain the battery on purpose.
func (u *unitEval) batteryWarning(onBatt bool) cond {
	p := &u.p.BatteryWarning
	warn := u.threshold(thChargeWarning, p.UseDeviceThresholds, p.ChargeBelow)
	if warn > 100 {
		warn = p.ChargeBelow
	}
	charge, ok := u.r.Num(ups.BatteryCharge)
	switch {
	case p.OnBatteryOnly && !onBatt && u.st.bits&bitHasStatus != 0:
		return clears()
	case !ok:
		return quiet
	case charge < warn:
		return fires(p.Severity, varVal(ups.BatteryCharge, charge))
	case charge < warn+p.ClearCharge:
		return quiet
	}
	return clears(varVal(ups.BatteryCharge, charge))
}

func (u *unitEval) replaceBattery(f ups.Flag, hasStatus bool) cond {
	bad, hasBad := u.r.Num(ups.BatteryPacksBad)
	switch {
	case f&ups.RB != 0 || bad > 0:
		if hasBad {
			return fires(u.p.ReplaceBattery.Severity, varVal(ups.BatteryPacksBad, bad))
		}
		return fires(u.p.ReplaceBattery.Severity)
	case hasStatus || hasBad:
		return clears()
	}
	return quiet
}

// overload: OVER at once, else the load mean with two bands of
// hysteresis (warning from warn_above down to warn_clear_below, critical
// from critical_above down to critical_clear_below).
func (u *unitEval) overload(f ups.Flag, hasStatus bool) cond {
	p := &u.p.Overload
	st := u.st
	if f&ups.OVER != 0 {
		if st.loadAt != 0 {
			return fires(Critical, varVal(ups.UPSLoad, u.r.NumOr(ups.UPSLoad, float64(st.loadMean))))
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
	if l, ok := u.r.Num(ups.UPSLoad); ok {
		vals[1] = varVal(ups.UPSLoad, l)
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

func (u *unitEval) inputVoltage(in float64, hasIn bool) cond {
	p := &u.p.InputVoltage
	if !hasIn || in < u.p.OnBattery.NoInputBelow {
		// No mains: on_battery's business, not a voltage excursion.
		return quiet
	}
	nom := u.threshold(thVoltageNominal, p.UseDeviceThresholds, p.Nominal)
	if nom == 0 {
		nom = u.st.inferVoltageNominal(in)
	}
	lo, hi := nom*(1-p.CriticalPct/100), nom*(1+p.CriticalPct/100)
	if p.UseDeviceThresholds {
		tl, th := float64(u.st.thresholds[thTransferLow]), float64(u.st.thresholds[thTransferHigh])
		// Transfer limits that do not bracket the nominal are garbage
		// (some units report 0.0).
		if tl > 0 && th > 0 && tl < nom && nom < th {
			lo, hi = tl, th
		}
	}
	offPct := math.Abs(in-nom) / nom * 100
	v := varVal(ups.InputVoltage, in)
	switch {
	case in < lo || in > hi:
		return fires(Critical, v)
	case offPct > p.TolerancePct:
		return fires(Warning, v)
	case offPct > p.ClearPct:
		return quiet
	}
	return clears(v)
}

// inferVoltageNominal guesses a unit's nominal input voltage from a
// reading and remembers it (in the slot of the reported nominal, which
// wins whenever the unit reports one).
func (st *UnitState) inferVoltageNominal(in float64) float64 {
	if st.thresholds[thVoltageNominal] > 0 {
		return float64(st.thresholds[thVoltageNominal])
	}
	nom := 230.0
	for _, n := range []float64{100, 120} {
		if math.Abs(in-n) < math.Abs(in-nom) {
			nom = n
		}
	}
	st.thresholds[thVoltageNominal] = float32(nom)
	return nom
}

func (u *unitEval) inputFrequency(noMains bool) cond {
	p := &u.p.InputFrequency
	fr, ok := u.r.Num(ups.InputFrequency)
	if !ok || noMains || fr < 1 {
		return quiet
	}
	nom := u.threshold(thFrequencyNominal, p.UseDeviceThresholds, p.Nominal)
	if nom == 0 {
		nom = 50
		if math.Abs(fr-60) < math.Abs(fr-50) {
			nom = 60
		}
	}
	offHz := math.Abs(fr - nom)
	v := varVal(ups.InputFrequency, fr)
	switch {
	case offHz > p.CriticalHz:
		return fires(Critical, v)
	case offHz/nom*100 > p.TolerancePct:
		return fires(Warning, v)
	case offHz/nom*100 > p.ClearPct:
		return quiet
	}
	return clears(v)
}

func (u *unitEval) upsAlarm(f ups.Flag, hasStatus bool) cond {
	p := &u.p.UPSAlarm
	text, hasText := u.r.Text("ups.alarm")
	active := f&ups.ALARM != 0
	if hasText {
		s := trimSpace(text)
		if s != "" && !u.ignoredAlarm(s) {
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

func (u *unitEval) ignoredAlarm(s string) bool {
	for _, ig := range u.p.UPSAlarm.Ignore {
		if equalFold(s, ig) {
			return true
		}
	}
	return false
}

func (u *unitEval) temperature() cond {
	p := &u.p.Temperature
	bt, hasB := u.r.Num(ups.BatteryTemperature)
	at, hasA := u.r.Num(ups.AmbientTemperature)
	if !hasB && !hasA {
		return quiet
	}
	var v [2]val
	if hasB {
		v[0] = varVal(ups.BatteryTemperature, bt)
	}
	if hasA {
		v[1] = varVal(ups.AmbientTemperature, at)
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

func (u *unitEval) selfTest() cond {
	res, ok := u.r.Text("ups.test.result")
	if !ok {
		return quiet
	}
	for i := 0; i < len(res); i++ {
		if !u.p.failureFirst[res[i]] {
			continue
		}
		for _, w := range u.p.failureWords {
			if hasPrefixFold(res[i:], w) {
				return fires(u.p.SelfTestFailed.Severity)
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
