package rules

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ups"
)

var t0 = time.Date(2025, 11, 24, 16, 0, 0, 0, time.UTC)

const testSerial = ups.Serial("123456789012")

// step is one input of a scenario: a reading at offset at, or a Tick.
type step struct {
	at   time.Duration
	r    *ups.Reading // nil: Tick at t0+at
	now  time.Duration
	hasN bool // now set explicitly (replay); else now = at
}

// rd builds a reading: status then name/value pairs (numbers or text).
func rd(at time.Duration, status string, kv ...any) step {
	r := &ups.Reading{Serial: testSerial, Time: t0.Add(at)}
	if status != "-" {
		r.SetText("ups.status", status)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		name := kv[i].(string)
		switch v := kv[i+1].(type) {
		case int:
			r.SetNum(name, float64(v))
		case float64:
			r.SetNum(name, v)
		case string:
			r.SetText(name, v)
		}
	}
	return step{at: at, r: r}
}

func presence(at time.Duration, p ups.Presence) step {
	return step{at: at, r: &ups.Reading{Serial: testSerial, Time: t0.Add(at), Presence: p}}
}

func tick(at time.Duration) step { return step{at: at} }

// every repeats f at from, from+every, ... up to (excluding) to.
func every(from, to, every time.Duration, f func(at time.Duration) step) []step {
	var s []step
	for at := from; at < to; at += every {
		s = append(s, f(at))
	}
	return s
}

func seq(parts ...any) []step {
	var s []step
	for _, p := range parts {
		switch p := p.(type) {
		case step:
			s = append(s, p)
		case []step:
			s = append(s, p...)
		}
	}
	return s
}

// withNow makes every step run as if the engine's clock read t0+now
// (a replayed backlog).
func withNow(now time.Duration, s []step) []step {
	for i := range s {
		s[i].now, s[i].hasN = now, true
	}
	return s
}

// play runs the steps; restartAt >= 0 persists and restores the state
// (with a fresh evaluator) before step restartAt.
func play(t *testing.T, cat *Catalog, steps []step, restartAt int) []Event {
	t.Helper()
	e := NewEvaluator(cat)
	st := &UnitState{Site: "depot"}
	var out []Event
	for i, s := range steps {
		if i == restartAt {
			b, err := st.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			st = &UnitState{}
			if err := st.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if st.Site != "depot" {
				t.Fatalf("site lost across restart: %q", st.Site)
			}
			e = NewEvaluator(cat)
		}
		now := t0.Add(s.at)
		if s.hasN {
			now = t0.Add(s.now)
		}
		if s.r == nil {
			out = e.Tick(st, now, out)
		} else {
			out = e.Evaluate(st, s.r, now, out)
		}
	}
	return out
}

// brief renders an event for comparison: kind rule severity @offset,
// then dur= on resolutions and flags.
func brief(ev Event) string {
	s := fmt.Sprintf("%s %s %s @%s", ev.Kind, ev.Rule, ev.Severity, ev.At.Sub(t0))
	if ev.Kind == Resolved {
		s += " dur=" + ev.Duration.String()
	}
	if ev.Historical {
		s += " historical"
	}
	if ev.Silent {
		s += " silent"
	}
	return s
}

func TestScenarios(t *testing.T) {
	const (
		sec = time.Second
		min = time.Minute
		hr  = time.Hour
	)
	ol := func(at time.Duration) step {
		return rd(at, "OL CHRG", "input.voltage", 231, "battery.charge", 100, "ups.load", 30)
	}
	ob := func(at time.Duration) step {
		return rd(at, "OB DISCHRG", "input.voltage", 0, "battery.charge", 90, "ups.load", 30)
	}
	ticks := func(from, to time.Duration) []step { return every(from, to, 5*sec, tick) }

	// 20 blips in 10 minutes: every 30 s, on battery for `blip`.
	blips := func(blip time.Duration) []step {
		var s []step
		for i := range 20 {
			at := 1*min + time.Duration(i)*30*sec
			s = append(s, ob(at), tick(at+blip/2), ol(at+blip), tick(at+blip+5*sec))
		}
		return seq(ol(0), s, every(11*min, 25*min, 30*sec, ol))
	}

	// Battery draining 60 -> 12 % on battery, with +/-1 % noise at 20.
	drain := func() []step {
		var s []step
		charges := []int{60, 55, 50, 45, 40, 35, 30, 25, 22, 21, 20, 21, 20, 19, 20, 18, 17, 15, 12}
		for i, c := range charges {
			s = append(s, rd(1*min+time.Duration(i)*30*sec, "OB DISCHRG", "input.voltage", 0,
				"battery.charge", c, "battery.runtime", 600-i*20))
		}
		// Power back, recharging.
		for i, c := range []int{13, 16, 19, 22, 24, 26, 30} {
			s = append(s, rd(12*min+time.Duration(i)*time.Minute, "OL CHRG", "input.voltage", 230,
				"battery.charge", c))
		}
		return seq(ol(0), s)
	}

	load := func(at time.Duration, l int) step {
		return rd(at, "OL", "input.voltage", 230, "ups.load", l)
	}
	oscillate := func(lo, hi int, from, to time.Duration) []step {
		var s []step
		for at, i := from, 0; at < to; at, i = at+10*sec, i+1 {
			l := lo
			if i%2 == 1 {
				l = hi
			}
			s = append(s, load(at, l))
		}
		return s
	}

	tests := []struct {
		name  string
		steps []step
		want  []string
	}{
		{
			name:  "2-second flicker sends nothing",
			steps: seq(every(0, 1*min, 10*sec, ol), ob(1*min), tick(61*sec), ol(62*sec), tick(63*sec), tick(68*sec), every(70*sec, 5*min, 10*sec, ol)),
			want:  nil,
		},
		{
			name:  "10-minute outage: on_battery once, power_restored once with the duration",
			steps: seq(every(0, 2*min, 30*sec, ol), every(2*min, 12*min, 30*sec, ob), ticks(2*min, 3*min), every(12*min, 20*min, 30*sec, ol)),
			want: []string{
				"firing on_battery warning @2m6s",
				"resolved on_battery warning @12m0s dur=10m0s",
			},
		},
		{
			name:  "outage seen only at reading times still fires at for",
			steps: seq(ol(0), ob(30*sec), ob(60*sec), ol(90*sec)),
			want: []string{
				"firing on_battery warning @36s",
				"resolved on_battery warning @1m30s dur=1m0s",
			},
		},
		{
			name:  "battery draining crosses low_battery once",
			steps: drain(),
			want: []string{
				"firing on_battery warning @1m6s",
				"firing battery_warning warning @2m30s",
				"firing low_battery critical @6m0s",
				"resolved on_battery warning @12m0s dur=11m0s",
				"resolved battery_warning warning @12m0s dur=9m30s",
				"resolved low_battery critical @17m0s dur=11m0s",
			},
		},
		{
			name:  "load oscillating around 80 % does not flap",
			steps: seq(oscillate(74, 88, 0, 60*min), oscillate(40, 50, 60*min, 80*min)),
			want: []string{
				"firing overload warning @9m10s",
				"resolved overload warning @1h1m40s dur=52m30s",
			},
		},
		{
			name:  "overload: OVER at once, critical mean, back to warning, clear",
			steps: seq(load(0, 50), rd(10*sec, "OL OVER", "ups.load", 120), load(20*sec, 50), every(30*sec, 40*min, 30*sec, func(at time.Duration) step { return load(at, 99) }), every(40*min, 70*min, 30*sec, func(at time.Duration) step { return load(at, 20) })),
			want: []string{
				"firing overload critical @10s",
				"resolved overload critical @20s dur=10s",
				"firing overload warning @5m0s",
				"updated overload critical @13m0s",
				"updated overload warning @40m30s",
				"resolved overload warning @42m0s dur=37m0s",
			},
		},
		{
			name:  "20 two-second blips in 10 minutes give one digest",
			steps: blips(2 * sec),
			want: []string{
				"firing power_unstable warning @2m0s",
				"resolved power_unstable warning @20m32s dur=8m32s",
			},
		},
		{
			name:  "20 ten-second blips: two outages page, then one digest",
			steps: blips(10 * sec),
			want: []string{
				"firing on_battery warning @1m6s",
				"resolved on_battery warning @1m10s dur=10s",
				"firing on_battery warning @1m36s",
				"resolved on_battery warning @1m40s dur=10s",
				"firing power_unstable warning @2m0s",
				"resolved power_unstable warning @20m40s dur=8m40s",
			},
		},
		{
			name: "self-test and calibration do not page",
			steps: seq(every(0, 1*min, 10*sec, ol),
				every(1*min, 90*sec, 10*sec, func(at time.Duration) step {
					return rd(at, "OB DISCHRG TEST", "input.voltage", 230, "battery.charge", 95)
				}), tick(65*sec), tick(75*sec), every(90*sec, 3*min, 10*sec, ol),
				every(3*min, 13*min, 30*sec, func(at time.Duration) step {
					return rd(at, "OL DISCHRG CAL", "input.voltage", 0, "battery.charge", 100-int((at-3*min)/(30*sec))*3)
				}), tick(3*min+10*sec), every(13*min, 15*min, 10*sec, ol)),
			want: nil,
		},
		{
			name: "CyberPower UT: OL DISCHRG with no input is on battery; HP OL OB with mains is not",
			steps: seq(rd(0, "OL CHRG", "input.voltage", 230),
				rd(10*sec, "OL OB", "input.voltage", 209), rd(20*sec, "OL OB", "input.voltage", 209),
				rd(30*sec, "OL DISCHRG", "input.voltage", 0), rd(40*sec, "OL DISCHRG", "input.voltage", 0),
				rd(50*sec, "OL CHRG", "input.voltage", 230)),
			want: []string{
				"firing on_battery warning @36s",
				"resolved on_battery warning @50s dur=20s",
			},
		},
		{
			name:  "comm_lost by silence: 3x the 10 s interval, at least 1 min; reminders every 5 min; resolves on return",
			steps: seq(every(0, 2*min, 10*sec, ol), ticks(2*min, 13*min), every(13*min, 14*min, 10*sec, ol)),
			want: []string{
				"firing comm_lost warning @2m50s",
				"reminder comm_lost warning @7m50s",
				"reminder comm_lost warning @12m50s",
				"resolved comm_lost warning @13m0s dur=11m10s",
			},
		},
		{
			name:  "comm_lost by offline while on battery is critical",
			steps: seq(every(0, 1*min, 10*sec, ol), every(1*min, 2*min, 10*sec, ob), tick(2*min), presence(2*min, ups.PresenceOffline), ticks(2*min, 8*min), every(8*min, 9*min, 10*sec, ol)),
			want: []string{
				"firing on_battery warning @1m6s",
				"firing comm_lost critical @2m0s",
				"reminder comm_lost critical @7m0s",
				"resolved comm_lost critical @8m0s dur=6m0s",
				"resolved on_battery warning @8m0s dur=7m0s",
			},
		},
		{
			name:  "comm_lost by silence after on battery is critical",
			steps: seq(every(0, 1*min, 20*sec, ol), every(1*min, 2*min, 20*sec, ob), ticks(2*min, 4*min)),
			want: []string{
				"firing on_battery warning @1m6s",
				"firing comm_lost critical @2m40s",
			},
		},
		{
			name:  "replace_battery reminds every 12 h",
			steps: seq(ol(0), every(10*min, 25*hr, 10*min, func(at time.Duration) step { return rd(at, "OL CHRG RB", "input.voltage", 230) }), ol(25*hr)),
			want: []string{
				"firing replace_battery warning @10m0s",
				"reminder replace_battery warning @12h10m0s",
				"reminder replace_battery warning @24h10m0s",
				"resolved replace_battery warning @25h0m0s dur=24h50m0s",
			},
		},
		{
			name:  "replayed 3-hour-old outage is historical",
			steps: withNow(3*hr+15*min, seq(every(0, 2*min, 30*sec, ol), every(2*min, 12*min, 30*sec, ob), every(12*min, 15*min, 30*sec, ol))),
			want: []string{
				"firing on_battery warning @2m6s historical",
				"resolved on_battery warning @12m0s dur=10m0s historical",
			},
		},
		{
			name: "replayed outage still going on is announced once it is recent",
			steps: seq(withNow(3*hr, seq(ol(0), every(1*min, 2*hr+30*min, 10*min, ob))),
				every(2*hr+30*min, 3*hr, 10*min, ob), withNow(3*hr, seq(ol(3*hr)))),
			want: []string{
				"firing on_battery warning @1m6s",
				"resolved on_battery warning @3h0m0s dur=2h59m0s",
			},
		},
		{
			name: "input voltage: warning after for, updated to critical, resolved with hysteresis",
			steps: seq(every(0, 1*min, 10*sec, func(at time.Duration) step {
				return rd(at, "OL", "input.voltage", 230, "input.voltage.nominal", 230, "input.transfer.low", 180, "input.transfer.high", 270)
			}),
				every(1*min, 3*min, 10*sec, func(at time.Duration) step { return rd(at, "OL BOOST", "input.voltage", 200) }),
				every(3*min, 4*min, 10*sec, func(at time.Duration) step { return rd(at, "OL BOOST", "input.voltage", 175) }),
				every(4*min, 5*min, 10*sec, func(at time.Duration) step { return rd(at, "OL", "input.voltage", 205) }),
				every(5*min, 6*min, 10*sec, func(at time.Duration) step { return rd(at, "OL", "input.voltage", 226) })),
			want: []string{
				"firing input_voltage warning @2m0s",
				"updated input_voltage critical @3m0s",
				"updated input_voltage warning @4m0s",
				"resolved input_voltage warning @5m0s dur=4m0s",
			},
		},
		{
			name: "OFF only after 30 s; FSD, BYPASS and ALARM at once",
			steps: seq(rd(0, "OL"), rd(10*sec, "OL OFF"), rd(20*sec, "OL"), rd(30*sec, "OFF"), tick(55*sec), tick(65*sec),
				rd(70*sec, "OL BYPASS ALARM", "ups.alarm", "Bypass not available!"), rd(80*sec, "OL FSD"), rd(90*sec, "OL")),
			want: []string{
				"firing ups_off critical @1m0s",
				"firing bypass warning @1m10s",
				"resolved ups_off critical @1m10s dur=40s",
				"firing ups_alarm warning @1m10s",
				"resolved bypass warning @1m20s dur=10s",
				"firing fsd critical @1m20s",
				"resolved ups_alarm warning @1m20s dur=10s",
				"resolved fsd critical @1m30s dur=10s",
			},
		},
		{
			name: "self-test result, temperature",
			steps: seq(rd(0, "OL", "ups.test.result", "Done and passed", "battery.temperature", 30),
				rd(10*sec, "OL", "ups.test.result", "Done and error", "battery.temperature", 36),
				rd(20*sec, "OL", "ups.test.result", "Done and error", "battery.temperature", 34, "ambient.temperature", 61),
				rd(30*sec, "OL", "ups.test.result", "No test initiated", "battery.temperature", 32, "ambient.temperature", 30)),
			want: []string{
				"firing temperature warning @10s",
				"firing self_test_failed warning @10s",
				"updated temperature critical @20s",
				"resolved temperature critical @30s dur=20s",
				"resolved self_test_failed warning @30s dur=20s",
			},
		},
	}
	cat := DefaultCatalog()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := play(t, cat, tt.steps, -1)
			var got []string
			for _, ev := range base {
				got = append(got, brief(ev))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			// A restart before any step gives exactly the same events.
			for k := 1; k < len(tt.steps); k++ {
				if again := play(t, cat, tt.steps, k); !reflect.DeepEqual(again, base) {
					t.Fatalf("restart before step %d changed the events:\n got %+v\nwant %+v", k, again, base)
				}
			}
		})
	}
}

func TestKeepFiringForAndSiteOverride(t *testing.T) {
	cat, err := ParseCatalog([]byte(`
sites:
  depot:
    bypass:
      keep_firing_for: 1m
`))
	if err != nil {
		t.Fatal(err)
	}
	sec := time.Second
	steps := seq(rd(0, "OL"), rd(10*sec, "OL BYPASS"), rd(20*sec, "OL"), rd(40*sec, "OL BYPASS"),
		rd(50*sec, "OL"), rd(80*sec, "OL"), tick(100*sec), tick(112*sec), rd(2*time.Minute, "OL"))
	want := []string{
		"firing bypass warning @10s",
		"resolved bypass warning @1m50s dur=40s",
	}
	base := play(t, cat, steps, -1)
	var got []string
	for _, ev := range base {
		got = append(got, brief(ev))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if !base[1].EndedAt.Equal(t0.Add(50 * sec)) {
		t.Fatalf("EndedAt = %v, want the clear at 50s", base[1].EndedAt)
	}
	for k := 1; k < len(steps); k++ {
		if again := play(t, cat, steps, k); !reflect.DeepEqual(again, base) {
			t.Fatalf("restart before step %d changed the events", k)
		}
	}
	// The same unit without the site override resolves at once.
	e := NewEvaluator(cat)
	st := &UnitState{}
	var evs []Event
	for _, s := range steps[:3] {
		evs = e.Evaluate(st, s.r, s.r.Time, evs)
	}
	if len(evs) != 2 || evs[1].Kind != Resolved {
		t.Fatalf("without site: %v", evs)
	}
}
