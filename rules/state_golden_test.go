package rules

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goldenState is the state file written by the encoding as it was before
// the rule table (stateVersion 1). State saved by a running engine must
// keep decoding, and evaluate on as it did then. Regenerate only on
// purpose: UPSWATCH_UPDATE_GOLDEN=1 go test -run TestGoldenState ./rules
const goldenState = "testdata/state_v1.golden"

// goldenBefore drives a unit into many alert states at once: power
// unstable, on battery, battery low and warning, replace battery,
// overload, temperature, alarm, device thresholds and a learnt interval.
func goldenBefore() []step {
	const sec, min = time.Second, time.Minute
	th := []any{"battery.charge.low", 25, "battery.charge.warning", 55, "input.voltage.nominal", 230,
		"input.transfer.low", 180, "input.transfer.high", 260, "input.frequency.nominal", 50}
	return seq(
		rd(0, "OL", append([]any{"input.voltage", 231, "battery.charge", 100, "ups.load", 40}, th...)...),
		rd(10*sec, "OB", "input.voltage", 0, "battery.charge", 99),
		rd(20*sec, "OL", "input.voltage", 229, "battery.charge", 99),
		rd(30*sec, "OB", "input.voltage", 0, "battery.charge", 98),
		rd(40*sec, "OL", "input.voltage", 230, "battery.charge", 98),
		rd(50*sec, "OB", "input.voltage", 0, "battery.charge", 97),
		every(60*sec, 12*min, 20*sec, func(at time.Duration) step {
			return rd(at, "OB RB ALARM", "input.voltage", 0, "battery.charge", 20,
				"battery.runtime", 100, "ups.load", 97, "battery.temperature", 46,
				"ups.alarm", "Fan failure", "ups.test.result", "Done and passed")
		}),
	)
}

// goldenAfter continues from the saved state: the mains returns, the
// unit recovers, then falls silent.
func goldenAfter() []step {
	const sec, min = time.Second, time.Minute
	return seq(
		every(12*min, 40*min, 20*sec, func(at time.Duration) step {
			return rd(at, "OL", "input.voltage", 230, "input.frequency", 50, "battery.charge", 90,
				"battery.runtime", 1800, "ups.load", 30, "battery.temperature", 28, "ups.alarm", "")
		}),
		tick(50*min),
	)
}

func playOn(e *Evaluator, st *UnitState, steps []step) []string {
	var out []Event
	for _, s := range steps {
		if s.r == nil {
			out = e.Tick(st, t0.Add(s.at), out)
		} else {
			out = e.Evaluate(st, s.r, t0.Add(s.at), out)
		}
	}
	var b []string
	for _, ev := range out {
		b = append(b, brief(ev))
	}
	return b
}

func TestGoldenState(t *testing.T) {
	path := filepath.FromSlash(goldenState)
	if os.Getenv("UPSWATCH_UPDATE_GOLDEN") != "" {
		st := &UnitState{Site: "depot"}
		playOn(NewEvaluator(nil), st, goldenBefore())
		b, err := st.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		firing := st.Firing()
		after := playOn(NewEvaluator(nil), st, goldenAfter())
		doc := hex.EncodeToString(b) + "\n" + strings.Join(firing, " ") + "\n" + strings.Join(after, "\n") + "\n"
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("%s: %d lines", path, len(lines))
	}
	b, err := hex.DecodeString(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	var st UnitState
	if err := st.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	if got, want := strings.Join(st.Firing(), " "), lines[1]; got != want {
		t.Errorf("firing after decoding:\n got %s\nwant %s", got, want)
	}
	again, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, b) {
		t.Errorf("re-encoding differs:\n got %x\nwant %x", again, b)
	}
	got := playOn(NewEvaluator(nil), &st, goldenAfter())
	if g, w := strings.Join(got, "\n"), strings.Join(lines[2:], "\n"); g != w {
		t.Errorf("events after decoding:\n got\n%s\nwant\n%s", g, w)
	}
}
