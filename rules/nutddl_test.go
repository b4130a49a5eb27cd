package rules

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// parseDump reads a upsc dump (`name: value` lines, `#` comments) into a
// reading. It is a test helper only; the real decoder lives in ingest.
func parseDump(t *testing.T, path string) *ups.Reading {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &ups.Reading{Serial: testSerial, Time: t0}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if name == "" {
			continue
		}
		switch name {
		case "ups.status", "ups.alarm", "ups.test.result":
			r.SetText(name, value)
			continue
		}
		if x, err := strconv.ParseFloat(value, 64); err == nil {
			r.SetNum(name, x)
		} else {
			r.SetText(name, value)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

// TestNUTDeviceLibrary runs every dump of the NUT device library beside
// the repository through the engine as one reading, then a Tick after
// the longest default pending period, and checks the alerts its status
// flags imply.
func TestNUTDeviceLibrary(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "..", "shared", "nut-ddl")
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".dev") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Skipf("no NUT device dumps under %s", dir)
	}
	e := NewEvaluator(nil)
	counts := map[string]int{}
	pendingOB := 0
	for _, path := range files {
		name, _ := filepath.Rel(dir, path)
		r := parseDump(t, path)
		st := &UnitState{}
		var evs []Event
		evs = e.Evaluate(st, r, t0, evs)
		f := r.Status.Flags
		noMains := r.NumOr(ups.InputVoltage, 230) < 50
		wantOB := (f&ups.OB != 0 && (f&ups.OL == 0 || noMains)) || (f&ups.OL != 0 && f&ups.DISCHRG != 0 && noMains)
		wantOB = wantOB && f&(ups.CAL|ups.TEST) == 0
		if a := st.find(rOnBattery); (a != nil && a.phase == pending) != wantOB {
			t.Errorf("%s: status %q: on_battery pending = %v, want %v", name, r.Status.Raw, a != nil, wantOB)
		} else if wantOB {
			pendingOB++
		}
		// A minute later, still no new reading: every pending rule fires
		// (comm_lost would wait 3 minutes).
		evs = e.Tick(st, t0.Add(61*time.Second), evs)
		fired := map[string]bool{}
		for _, ev := range evs {
			if ev.Kind == Firing {
				fired[ev.Rule] = true
				counts[ev.Rule]++
			}
		}
		alarm, _ := r.Text("ups.alarm")
		alarm = strings.TrimSpace(alarm)
		implied := []struct {
			rule string
			want bool
		}{
			{"on_battery", wantOB},
			{"replace_battery", f&ups.RB != 0 || r.NumOr(ups.BatteryPacksBad, 0) > 0},
			{"overload", f&ups.OVER != 0},
			{"low_battery", f&ups.LB != 0},
			{"bypass", f&ups.BYPASS != 0},
			{"fsd", f&ups.FSD != 0},
			{"ups_off", f&ups.OFF != 0},
			{"ups_alarm", f&ups.ALARM != 0 || (alarm != "" && alarm != "0")},
		}
		for _, im := range implied {
			if im.want && !fired[im.rule] {
				t.Errorf("%s: status %q alarm %q: %s did not fire (fired %v)", name, r.Status.Raw, alarm, im.rule, fired)
			}
			// The flag-only rules fire on nothing else.
			if !im.want && fired[im.rule] && im.rule != "overload" && im.rule != "low_battery" && im.rule != "replace_battery" {
				t.Errorf("%s: status %q: %s fired without its flag", name, r.Status.Raw, im.rule)
			}
		}
		if fired["on_battery"] && !wantOB {
			t.Errorf("%s: status %q input %v: on_battery fired", name, r.Status.Raw, r.NumOr(ups.InputVoltage, -1))
		}
		if fired["comm_lost"] {
			t.Errorf("%s: comm_lost after 61 s", name)
		}
	}
	rules := make([]string, 0, len(counts))
	for k := range counts {
		rules = append(rules, k)
	}
	sort.Strings(rules)
	var b strings.Builder
	b.WriteString("\n| rule | dumps firing |\n|---|---|\n")
	for _, k := range rules {
		b.WriteString("| " + k + " | " + strconv.Itoa(counts[k]) + " |\n")
	}
	t.Logf("%d dumps, %d on battery (pending after the reading):%s", len(files), pendingOB, b.String())
}
