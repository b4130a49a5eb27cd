package rules

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestRuleDefsMatchRuleSet checks that every rule of the table has its
// key in RuleSet, and every key of RuleSet but power_restored (the
// resolution of on_battery) is a rule of the table.
func TestRuleDefsMatchRuleSet(t *testing.T) {
	keys := map[string]bool{}
	rt := reflect.TypeFor[RuleSet]()
	for i := range rt.NumField() {
		k, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ",")
		keys[k] = true
	}
	delete(keys, "power_restored")
	for id := range numRules {
		d := &ruleDefs[id]
		if d.name == "" || d.desc == "" || d.timing == nil || d.validate == nil {
			t.Errorf("rule %d: incomplete definition %+v", id, d)
			continue
		}
		if !keys[d.name] {
			t.Errorf("rule %q has no key in RuleSet", d.name)
		}
		delete(keys, d.name)
	}
	for k := range keys {
		t.Errorf("RuleSet key %q has no rule definition", k)
	}
}

// TestEveryRuleFires drives each rule of the table, on the default
// catalog, with readings that must raise it. The conditions are called
// one by one in telemetry (not through the table, for speed); a rule
// added to ruleDefs without its step there, or without a case here,
// fails this test.
func TestEveryRuleFires(t *testing.T) {
	const sec, min = time.Second, time.Minute
	// steady repeats one reading every 10 s for 5 minutes.
	steady := func(status string, kv ...any) []step {
		return every(0, 5*min, 10*sec, func(at time.Duration) step { return rd(at, status, kv...) })
	}
	ol := func(at time.Duration) step { return rd(at, "OL", "input.voltage", 230) }
	ob := func(at time.Duration) step { return rd(at, "OB DISCHRG", "input.voltage", 0) }
	cases := map[string][]step{
		"on_battery":      steady("OB DISCHRG", "input.voltage", 0),
		"low_battery":     steady("OB DISCHRG LB", "input.voltage", 0, "battery.charge", 10),
		"battery_warning": steady("OB DISCHRG", "input.voltage", 0, "battery.charge", 40),
		"replace_battery": steady("OL RB"),
		"overload":        steady("OL", "ups.load", 99),
		"input_voltage":   steady("OL", "input.voltage", 290, "input.voltage.nominal", 230),
		"input_frequency": steady("OL", "input.voltage", 230, "input.frequency", 45, "input.frequency.nominal", 50),
		"bypass":          steady("OL BYPASS"),
		"ups_off":         steady("OFF"),
		"fsd":             steady("OB FSD", "input.voltage", 0),
		"ups_alarm":       steady("OL ALARM", "ups.alarm", "Fan failure"),
		"temperature":     steady("OL", "battery.temperature", 50),
		"self_test_failed": seq(rd(0, "OL", "ups.test.result", "Done and passed"),
			rd(10*sec, "OL", "ups.test.result", "Done and error")),
		// Three short outages within the window.
		"power_unstable": seq(ol(0), ob(10*sec), ol(12*sec), ob(40*sec), ol(42*sec),
			ob(70*sec), ol(72*sec), ob(100*sec), ol(102*sec), tick(110*sec)),
		// One reading, then silence: ticks for an hour.
		"comm_lost": seq(ol(0), ol(10*sec), every(15*sec, time.Hour, 15*sec, tick)),
	}
	for id := range numRules {
		name := ruleDefs[id].name
		t.Run(name, func(t *testing.T) {
			steps, ok := cases[name]
			if !ok {
				t.Fatalf("no readings that raise %s: add a case", name)
			}
			for _, ev := range play(t, DefaultCatalog(), steps, -1) {
				if ev.Kind == Firing && ev.Rule == name {
					return
				}
			}
			t.Errorf("%s never fired", name)
		})
	}
}
