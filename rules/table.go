package rules

import (
	"fmt"
	"strings"
	"time"
)

// ruleDef is one stateful rule: everything the evaluator and the
// configuration know about it, in one entry of ruleDefs.
type ruleDef struct {
	// name is the rule's key under `rules:` in rules.yaml and its name in
	// events.
	name string
	// desc is the alert's message.
	desc string
	// timing returns the rule's timing from a rule set.
	timing func(*RuleSet) Common
	// validate checks the rule's configuration; p names its key.
	validate func(v *validator, p string, rs *RuleSet)
}

// ruleDefs holds every stateful rule, indexed by its persisted ruleID.
// Conditions are evaluated in this order.
var ruleDefs = [numRules]ruleDef{
	rOnBattery: {
		name:   "on_battery",
		desc:   "on battery",
		timing: func(rs *RuleSet) Common { return rs.OnBattery.Common },
		validate: func(v *validator, p string, rs *RuleSet) {
			v.common(p, rs.OnBattery.Common)
			v.sev(p+".severity", rs.OnBattery.Severity)
			v.rangeF(p+".no_input_below", rs.OnBattery.NoInputBelow, 0, 1000)
		},
	},
	rPowerUnstable: {
		name:   "power_unstable",
		desc:   "power unstable",
		timing: func(rs *RuleSet) Common { return Common{Enabled: rs.PowerUnstable.Enabled} },
		validate: func(v *validator, p string, rs *RuleSet) {
			pu := rs.PowerUnstable
			v.sev(p+".severity", pu.Severity)
			if pu.Interruptions < 2 || pu.Interruptions > 250 {
				v.fail(p+".interruptions", "must be between 2 and 250")
			}
			v.dur(p+".window", pu.Window, 10*time.Second, 24*time.Hour)
			v.dur(p+".quiet", pu.Quiet, 0, 24*time.Hour)
			v.dur(p+".on_battery_for", pu.OnBatteryFor, 0, time.Hour)
		},
	},
	rLowBattery: {
		name:   "low_battery",
		desc:   "battery low",
		timing: func(rs *RuleSet) Common { return rs.LowBattery.Common },
		validate: func(v *validator, p string, rs *RuleSet) {
			lb := rs.LowBattery
			v.common(p, lb.Common)
			v.sev(p+".severity", lb.Severity)
			v.rangeF(p+".charge_at_or_below", lb.ChargeAtOrBelow, 0, 100)
			v.dur(p+".runtime_at_or_below", lb.RuntimeAtOrBelow, 0, 24*time.Hour)
			v.rangeF(p+".clear_charge_margin", lb.ClearCharge, 0, 100)
			v.dur(p+".clear_runtime_margin", lb.ClearRuntime, 0, 24*time.Hour)
		},
	},
	rBatteryWarning: {
		name:   "battery_warning",
		desc:   "battery charge below warning level",
		timing: func(rs *RuleSet) Common { return rs.BatteryWarning.Common },
		validate: func(v *validator, p string, rs *RuleSet) {
			bw := rs.BatteryWarning
			v.common(p, bw.Common)
			v.sev(p+".severity", bw.Severity)
			v.rangeF(p+".charge_below", bw.ChargeBelow, 0, 100)
			v.rangeF(p+".clear_charge_margin", bw.ClearCharge, 0, 100)
		},
	},
	rReplaceBattery: {
		name:     "replace_battery",
		desc:     "battery needs replacing",
		timing:   func(rs *RuleSet) Common { return rs.ReplaceBattery.Common },
		validate: func(v *validator, p string, rs *RuleSet) { v.simple(p, rs.ReplaceBattery) },
	},
	rOverload: {
		name:   "overload",
		desc:   "UPS overloaded",
		timing: func(rs *RuleSet) Common { return rs.Overload.Common },
		validate: func(v *validator, p string, rs *RuleSet) {
			ol := rs.Overload
			v.common(p, ol.Common)
			v.dur(p+".window", ol.Window, time.Minute, 24*time.Hour)
			v.rangeF(p+".warn_above", ol.WarnAbove, 0, 1000)
			v.rangeF(p+".critical_above", ol.CriticalAbove, 0, 1000)
			v.rangeF(p+".warn_clear_below", ol.WarnClearBelow, 0, 1000)
			v.rangeF(p+".critical_clear_below", ol.CriticalClearBelow, 0, 1000)
			if ol.WarnClearBelow > ol.WarnAbove {
				v.fail(p+".warn_clear_below", "must not exceed warn_above (%g)", ol.WarnAbove)
			}
			if ol.CriticalClearBelow > ol.CriticalAbove {
				v.fail(p+".critical_clear_below", "must not exceed critical_above (%g)", ol.CriticalAbove)
			}
			if ol.CriticalAbove < ol.WarnAbove {
				v.fail(p+".critical_above", "must not be below warn_above (%g)", ol.WarnAbove)
			}
		},
	},
	rInputVoltage: {
		name:   "input_voltage",
		desc:   "input voltage out of range",
		timing: func(rs *RuleSet) Common { return rs.InputVoltage.Common },
		validate: func(v *validator, p string, rs *RuleSet) {
			iv := rs.InputVoltage
			v.common(p, iv.Common)
			if iv.Nominal != 0 {
				v.rangeF(p+".nominal", iv.Nominal, 1, 1000)
			}
			v.rangeF(p+".tolerance_pct", iv.TolerancePct, 0.1, 100)
			v.rangeF(p+".clear_pct", iv.ClearPct, 0, iv.TolerancePct)
			v.rangeF(p+".critical_pct", iv.CriticalPct, iv.TolerancePct, 100)
		},
	},
	rInputFrequency: {
		name:   "input_frequency",
		desc:   "input frequency out of range",
		timing: func(rs *RuleSet) Common { return rs.InputFrequency.Common },
		validate: func(v *validator, p string, rs *RuleSet) {
			fr := rs.InputFrequency
			v.common(p, fr.Common)
			if fr.Nominal != 0 {
				v.rangeF(p+".nominal", fr.Nominal, 1, 1000)
			}
			v.rangeF(p+".tolerance_pct", fr.TolerancePct, 0.01, 100)
			v.rangeF(p+".clear_pct", fr.ClearPct, 0, fr.TolerancePct)
			v.rangeF(p+".critical_hz", fr.CriticalHz, 0.01, 100)
		},
	},
	rBypass: {
		name:     "bypass",
		desc:     "UPS on bypass",
		timing:   func(rs *RuleSet) Common { return rs.Bypass.Common },
		validate: func(v *validator, p string, rs *RuleSet) { v.simple(p, rs.Bypass) },
	},
	rUPSOff: {
		name:     "ups_off",
		desc:     "UPS output off",
		timing:   func(rs *RuleSet) Common { return rs.UPSOff.Common },
		validate: func(v *validator, p string, rs *RuleSet) { v.simple(p, rs.UPSOff) },
	},
	rFSD: {
		name:     "fsd",
		desc:     "forced shutdown",
		timing:   func(rs *RuleSet) Common { return rs.FSD.Common },
		validate: func(v *validator, p string, rs *RuleSet) { v.simple(p, rs.FSD) },
	},
	rUPSAlarm: {
		name:   "ups_alarm",
		desc:   "UPS alarm",
		timing: func(rs *RuleSet) Common { return rs.UPSAlarm.Common },
		validate: func(v *validator, p string, rs *RuleSet) {
			v.common(p, rs.UPSAlarm.Common)
			v.sev(p+".severity", rs.UPSAlarm.Severity)
		},
	},
	rTemperature: {
		name:   "temperature",
		desc:   "temperature high",
		timing: func(rs *RuleSet) Common { return rs.Temperature.Common },
		validate: func(v *validator, p string, rs *RuleSet) {
			tp := rs.Temperature
			v.common(p, tp.Common)
			v.rangeF(p+".battery_warn_at", tp.BatteryWarnAt, -60, 200)
			v.rangeF(p+".battery_critical_at", tp.BatteryCriticalAt, tp.BatteryWarnAt, 200)
			v.rangeF(p+".ambient_warn_at", tp.AmbientWarnAt, -60, 200)
			v.rangeF(p+".ambient_critical_at", tp.AmbientCriticalAt, tp.AmbientWarnAt, 200)
			v.rangeF(p+".clear_margin", tp.ClearMargin, 0, 50)
		},
	},
	rSelfTestFailed: {
		name:   "self_test_failed",
		desc:   "self-test failed",
		timing: func(rs *RuleSet) Common { return rs.SelfTestFailed.Common },
		validate: func(v *validator, p string, rs *RuleSet) {
			st := rs.SelfTestFailed
			v.common(p, st.Common)
			v.sev(p+".severity", st.Severity)
			for i, w := range st.FailureWords {
				if strings.TrimSpace(w) == "" {
					v.fail(fmt.Sprintf("%s.failure_words[%d]", p, i), "must not be empty")
				}
			}
		},
	},
	rCommLost: {
		name: "comm_lost",
		desc: "communication lost",
		timing: func(rs *RuleSet) Common {
			return Common{Enabled: rs.CommLost.Enabled, RepeatEvery: rs.CommLost.RepeatEvery}
		},
		validate: func(v *validator, p string, rs *RuleSet) {
			cl := rs.CommLost
			v.sev(p+".severity", cl.Severity)
			v.rangeF(p+".factor", cl.Factor, 1.5, 100)
			v.dur(p+".min_interval", cl.MinInterval, time.Second, time.Hour)
			v.dur(p+".max_interval", cl.MaxInterval, cl.MinInterval, 24*time.Hour)
			v.dur(p+".default_interval", cl.DefaultInterval, cl.MinInterval, cl.MaxInterval)
			if cl.RepeatEvery != 0 {
				v.dur(p+".repeat_every", cl.RepeatEvery, time.Minute, 30*24*time.Hour)
			}
		},
	},
}

func (id ruleID) String() string { return ruleDefs[id].name }

// RuleNames lists the rules that raise alerts, in evaluation order.
// (power_restored is the resolution of on_battery, not an alert of its
// own.)
func RuleNames() []string {
	out := make([]string, len(ruleDefs))
	for i := range ruleDefs {
		out[i] = ruleDefs[i].name
	}
	return out
}
