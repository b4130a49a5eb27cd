package area

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

var t0 = time.Date(2026, 12, 1, 9, 12, 0, 0, time.UTC)

func serial(i int) ups.Serial { return ups.Serial(fmt.Sprintf("1000000000%02d", i)) }

// step is one input to a State: a unit event (rule, kind, unit) or a tick
// (rule ""), at t0+at; want lists what must come out.
type step struct {
	at     time.Duration
	rule   string
	kind   rules.EventKind
	unit   int
	status string
	values []rules.Value

	wantEvents   []string // "site_outage/firing/6" = rule/kind/len(Units)
	wantVerdicts []string // "3:hold" (firing), "3:hold/fold" (firing/resolved)
}

func unitEvent(s step) *rules.Event {
	started := t0 // every unit alert of a unit starts at the same time here
	if s.kind == rules.Firing {
		started = t0.Add(s.at)
	}
	ev := &rules.Event{Kind: s.kind, Rule: s.rule, Severity: rules.Warning, Serial: serial(s.unit),
		At: t0.Add(s.at), StartedAt: started, Status: s.status, Values: s.values}
	ev.Fingerprint = fmt.Sprintf("%s/%s/x", ev.Serial, s.rule) // one instance per unit and rule
	return ev
}

func TestState(t *testing.T) {
	cfg := DefaultConfig() // 20 units: threshold max(3, 6) = 6
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ob := func(at time.Duration, unit int, want ...string) step {
		return step{at: at, rule: onBattery, kind: rules.Firing, unit: unit, status: "OB DISCHRG", wantVerdicts: want}
	}
	ol := func(at time.Duration, unit int, want ...string) step {
		return step{at: at, rule: onBattery, kind: rules.Resolved, unit: unit, wantVerdicts: want}
	}
	tick := func(at time.Duration, events []string, verdicts ...string) step {
		return step{at: at, wantEvents: events, wantVerdicts: verdicts}
	}
	tests := []struct {
		name  string
		units int
		steps []step
	}{
		{"blackout: first sent, the rest held then folded, joiners in one update, resolved at 80% back", 20, []step{
			ob(0, 1, "1:send"),
			ob(5*time.Second, 2, "2:hold"),
			ob(6*time.Second, 3, "3:hold"),
			ob(7*time.Second, 4, "4:hold"),
			ob(8*time.Second, 5, "5:hold"),
			{at: 9 * time.Second, rule: onBattery, kind: rules.Firing, unit: 6, status: "OB DISCHRG",
				wantEvents:   []string{"site_outage/firing/6"},
				wantVerdicts: []string{"1:send", "2:fold", "3:fold", "4:fold", "5:fold", "6:fold"}},
			ob(3*time.Minute, 7, "7:fold"),
			ob(3*time.Minute, 8, "8:fold"),
			tick(4*time.Minute, nil), // joiners wait for update_every
			tick(5*time.Minute+9*time.Second, []string{"site_outage/updated/8"}),
			ol(6*time.Minute, 1, "1:send/fold"),
			ol(6*time.Minute, 2, "2:fold/fold"),
			ol(6*time.Minute, 3, "3:fold/fold"),
			ol(6*time.Minute, 4, "4:fold/fold"),
			ol(6*time.Minute, 5, "5:fold/fold"),
			ol(6*time.Minute, 6, "6:fold/fold"),
			tick(7*time.Minute, nil), // 6 of 8 back: 75 %
			ol(7*time.Minute, 7, "7:fold/fold"),
			tick(8*time.Minute, nil), // 7 of 8 back, not yet for 2 minutes
			tick(9*time.Minute, []string{"site_outage/resolved/1"}),
			ol(10*time.Minute, 8, "8:fold/fold"), // still folded after the alert ended
		}},
		{"two units within the window: the second held, then sent", 20, []step{
			ob(0, 1, "1:send"),
			ob(10*time.Second, 2, "2:hold"),
			tick(2*time.Minute, nil),
			tick(2*time.Minute+10*time.Second, nil, "2:send"),
			ol(3*time.Minute, 2, "2:send/send"),
			ol(3*time.Minute, 1, "1:send/send"),
		}},
		{"a held unit back before the hold ends: a blip, neither notice", 20, []step{
			ob(0, 1, "1:send"),
			ob(10*time.Second, 2, "2:hold"),
			ol(40*time.Second, 2, "2:fold/fold"),
			tick(3*time.Minute, nil),
		}},
		{"units going on battery further apart than the window are each sent", 20, []step{
			ob(0, 1, "1:send"), ol(time.Minute, 1, "1:send/send"),
			ob(3*time.Minute, 2, "2:send"), ol(4*time.Minute, 2, "2:send/send"),
			ob(6*time.Minute, 3, "3:send"),
		}},
		{"a self-test on 3 of 3 units raises nothing", 3, []step{
			{rule: onBattery, kind: rules.Firing, unit: 1, status: "OB TEST", wantVerdicts: []string{"1:send"}},
			{rule: onBattery, kind: rules.Firing, unit: 2, status: "OL CAL DISCHRG", wantVerdicts: []string{"2:send"}},
			{rule: onBattery, kind: rules.Firing, unit: 3, status: "OB TEST DISCHRG", wantVerdicts: []string{"3:send"}},
			tick(5*time.Minute, nil),
		}},
		{"3 of 3 units: the minimum of 3 is enough in a small area", 3, []step{
			ob(0, 1, "1:send"), ob(time.Second, 2, "2:hold"),
			{at: 2 * time.Second, rule: onBattery, kind: rules.Firing, unit: 3, status: "OB",
				wantEvents: []string{"site_outage/firing/3"}, wantVerdicts: []string{"1:send", "2:fold", "3:fold"}},
		}},
		{"low battery of a unit makes the area alert critical at once", 3, []step{
			ob(0, 1, "1:send"), ob(time.Second, 2, "2:hold"),
			{at: 2 * time.Second, rule: onBattery, kind: rules.Firing, unit: 3, status: "OB",
				wantEvents: []string{"site_outage/firing/3"}, wantVerdicts: []string{"1:send", "2:fold", "3:fold"}},
			{at: time.Minute, rule: lowBattery, kind: rules.Firing, unit: 2, status: "OB LB",
				values: []rules.Value{{Name: "battery.runtime", Value: 170}}, wantEvents: []string{"site_outage/updated/3"}},
		}},
		{"units going silent without going on battery: one site_unreachable; silent on battery is power", 10, []step{
			ob(0, 9, "9:send"),
			{rule: commLost, kind: rules.Firing, unit: 9, wantVerdicts: []string{"9:send"}},
			{at: time.Second, rule: commLost, kind: rules.Firing, unit: 1, wantVerdicts: []string{"1:send"}},
			{at: 2 * time.Second, rule: commLost, kind: rules.Firing, unit: 2, wantVerdicts: []string{"2:hold"}},
			{at: 3 * time.Second, rule: commLost, kind: rules.Firing, unit: 3,
				wantEvents: []string{"site_unreachable/firing/3"}, wantVerdicts: []string{"1:send", "2:fold", "3:fold"}},
			{at: 4 * time.Second, rule: commLost, kind: rules.Firing, unit: 4, wantVerdicts: []string{"4:fold"}},
			{at: time.Minute, rule: commLost, kind: rules.Resolved, unit: 1, wantVerdicts: []string{"1:send/fold"}},
			{at: time.Minute, rule: commLost, kind: rules.Resolved, unit: 2, wantVerdicts: []string{"2:fold/fold"}},
			{at: time.Minute, rule: commLost, kind: rules.Resolved, unit: 3, wantVerdicts: []string{"3:fold/fold"}},
			{at: time.Minute, rule: commLost, kind: rules.Resolved, unit: 4, wantVerdicts: []string{"4:fold/fold"}},
			tick(3*time.Minute, []string{"site_unreachable/resolved/0"}),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState("hq")
			for i, s := range tc.steps {
				var out []rules.Event
				var vs []Verdict
				if s.rule == "" {
					out, vs = st.Tick(&cfg, t0.Add(s.at))
				} else {
					out, vs = st.Apply(&cfg, unitEvent(s), tc.units, t0.Add(s.at))
				}
				var gotE, gotV []string
				for _, ev := range out {
					gotE = append(gotE, fmt.Sprintf("%s/%s/%d", ev.Rule, ev.Kind, len(ev.Units)))
					if ev.Area != "hq" || ev.Serial == "" || ev.Fingerprint == "" {
						t.Errorf("step %d: area event without area, anchor or fingerprint: %+v", i, ev)
					}
				}
				for _, v := range vs {
					d := fmt.Sprintf("%d:%s", unitNo(v.Serial), v.Firing)
					if v.Resolved != "" {
						d += "/" + string(v.Resolved)
					}
					gotV = append(gotV, d)
				}
				if strings.Join(gotE, " ") != strings.Join(s.wantEvents, " ") {
					t.Errorf("step %d: events %v, want %v", i, gotE, s.wantEvents)
				}
				if strings.Join(gotV, " ") != strings.Join(s.wantVerdicts, " ") {
					t.Errorf("step %d: verdicts %v, want %v", i, gotV, s.wantVerdicts)
				}
			}
		})
	}
}

func unitNo(s ups.Serial) int {
	var n int
	fmt.Sscanf(string(s)[10:], "%d", &n)
	return n
}

// The area alert's content: anchor, start, lowest runtime, severity, and
// on resolve the duration and the units still on battery.
func TestStateEventContent(t *testing.T) {
	cfg := DefaultConfig()
	_ = cfg.validate()
	st := NewState("hq")
	rt := []float64{1500, 900, 1200}
	var fired rules.Event
	for i := range 3 {
		ev := unitEvent(step{at: time.Duration(i) * time.Second, rule: onBattery, kind: rules.Firing, unit: i + 1,
			status: "OB", values: []rules.Value{{Name: "battery.runtime", Value: rt[i]}}})
		out, _ := st.Apply(&cfg, ev, 3, ev.At)
		if len(out) == 1 {
			fired = out[0]
		}
	}
	if fired.Kind != rules.Firing || fired.Serial != serial(1) || !fired.StartedAt.Equal(t0) || fired.Severity != rules.Warning {
		t.Fatalf("firing: %+v", fired)
	}
	if v, _ := value(&fired, "battery.runtime"); v != 900 {
		t.Errorf("lowest runtime %v, want 900", v)
	}
	if fired.Fingerprint != fmt.Sprintf("%s/site_outage/%d", serial(1), t0.UnixMilli()) {
		t.Errorf("fingerprint %q", fired.Fingerprint)
	}
	for _, u := range []int{1, 2, 3} {
		st.Apply(&cfg, unitEvent(step{at: 10 * time.Minute, rule: onBattery, kind: rules.Resolved, unit: u}), 3, t0.Add(10*time.Minute))
		if u == 2 { // 2 of 3 back: below 80 %
			if out, _ := st.Tick(&cfg, t0.Add(20*time.Minute)); len(out) != 0 {
				t.Fatalf("resolved with 2 of 3 back: %+v", out)
			}
		}
	}
	out, _ := st.Tick(&cfg, t0.Add(12*time.Minute))
	if len(out) != 1 || out[0].Kind != rules.Resolved || out[0].Duration != 10*time.Minute || len(out[0].Units) != 0 {
		t.Fatalf("resolved: %+v", out)
	}
	if !st.Idle() {
		t.Errorf("state not idle after everything resolved: %+v", st)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"defaults", ``, ""},
		{"areas by tag", "sites:\n  campus:\n    areas:\n      building-a: [\"123456789012\"]\n", ""},
		{"unknown key", "windw: 1m\n", "invalid areas config: areas: yaml: unmarshal errors:\n  line 1: field windw not found in type area.plain"},
		{"share out of range", "share: 1.5\n", "invalid areas config: areas: share must be in (0, 1]"},
		{"bad serial", "sites:\n  hq:\n    areas:\n      a: [\"12\"]\n", `invalid areas config: areas: sites.hq.areas.a: "12" is not a serial number of 12 or 16 digits`},
		{"unit in two areas", "sites:\n  hq:\n    areas:\n      a: [\"123456789012\"]\n      b: [\"123456789012\"]\n",
			"invalid areas config: areas: sites.hq.areas.b: unit 123456789012 is already in area a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tc.yaml), &doc); err != nil {
				t.Fatal(err)
			}
			var n *yaml.Node
			if len(doc.Content) > 0 {
				n = doc.Content[0]
			}
			c, err := ParseConfig(n)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("error %q\nwant  %q", got, tc.want)
			}
			if tc.name == "areas by tag" {
				if a := c.Of("123456789012", "campus"); a != "campus/building-a" {
					t.Errorf("tagged unit in %q", a)
				}
				if a := c.Of("123456789013", "campus"); a != "campus" {
					t.Errorf("untagged unit in %q", a)
				}
			}
		})
	}
}

// The areas example commented in configs/rules.yaml parses, and its values
// are the defaults.
func TestRulesFileExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "configs", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n# areas:\n")
	if i < 0 {
		t.Fatal("configs/rules.yaml has no commented areas example")
	}
	var lines []string
	for _, l := range strings.Split(text[i+1:], "\n") {
		if !strings.HasPrefix(l, "#") {
			break
		}
		lines = append(lines, strings.TrimPrefix(strings.TrimPrefix(l, "#"), " "))
	}
	var doc struct {
		Areas yaml.Node `yaml:"areas"`
	}
	if err := yaml.Unmarshal([]byte(strings.Join(lines, "\n")), &doc); err != nil {
		t.Fatalf("example: %v", err)
	}
	c, err := ParseConfig(&doc.Areas)
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if c.MinUnits != d.MinUnits || c.Share != d.Share || c.Window != d.Window || c.ResolveShare != d.ResolveShare ||
		c.ResolveAfter != d.ResolveAfter || c.UpdateEvery != d.UpdateEvery {
		t.Errorf("example %+v differs from the defaults %+v", c, d)
	}
	if a := c.Of("123456789013", "campus"); a != "campus/building-a" {
		t.Errorf("example's tagged unit in %q", a)
	}
}

// Units that went on battery at the same time: the anchor is the one whose
// own notice was sent (the first the evaluator saw), not the lowest serial.
func TestStateAnchorIsTheUnitSent(t *testing.T) {
	cfg := DefaultConfig()
	_ = cfg.validate()
	st := NewState("hq")
	var out []rules.Event
	for _, u := range []int{3, 1, 2} {
		ev := unitEvent(step{rule: onBattery, kind: rules.Firing, unit: u, status: "OB"})
		out, _ = st.Apply(&cfg, ev, 3, t0)
	}
	if len(out) != 1 || out[0].Serial != serial(3) {
		t.Fatalf("area alert %+v, want anchored on unit 3", out)
	}
}
