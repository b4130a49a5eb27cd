package battery

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/upswatch/upswatch/ups"
)

// dump is one upsc dump of the NUT device library: raw values by name,
// `#` comments stripped.
type dump struct {
	name string
	vars map[string]string
	// exact raw lines "name: value" before stripping comments
	lines map[string]string
}

// nutDumps reads every dump under ../shared/nut-ddl beside the
// repository; it skips the test when the library is not there. The
// dumps are read in place and never copied into the repository.
func nutDumps(t *testing.T) []dump {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "..", "shared", "nut-ddl")
	var ds []dump
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".dev") {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		rel, _ := filepath.Rel(dir, p)
		dm := dump{name: rel, vars: map[string]string{}, lines: map[string]string{}}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if n, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(n, "#") {
				dm.lines[strings.TrimSpace(n)] = strings.TrimSpace(v)
			}
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			n, v, ok := strings.Cut(line, ":")
			if n = strings.TrimSpace(n); ok && n != "" {
				dm.vars[n] = strings.TrimSpace(v)
			}
		}
		ds = append(ds, dm)
		return sc.Err()
	})
	if os.IsNotExist(err) || len(ds) == 0 {
		t.Skipf("NUT device library not found at %s (it lives beside the repository, not in it)", dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package")
		}
		dir = parent
	}
}

// reading builds the reading the ingest would: numeric strings become
// numbers, the rest texts.
func (d dump) reading(serial ups.Serial) *ups.Reading {
	r := &ups.Reading{Serial: serial, Time: now}
	for n, v := range d.vars {
		if x, err := strconv.ParseFloat(v, 64); err == nil && n != "ups.status" {
			r.SetNum(n, x)
		} else {
			r.SetText(n, v)
		}
	}
	return r
}

// TestNUTDeviceLibraryDates runs the date normaliser over every battery
// date in the 718 dumps. The counts are those the issue states from the
// same corpus; the split of the rest is asserted too, so a change in any
// verdict shows.
func TestNUTDeviceLibraryDates(t *testing.T) {
	ds := nutDumps(t)
	if len(ds) != 718 {
		t.Fatalf("%d dumps, want 718", len(ds))
	}
	count := func(name string) (present int, verdicts map[DateVerdict]int) {
		verdicts = map[DateVerdict]int{}
		for _, d := range ds {
			if v, ok := d.vars[name]; ok {
				present++
				_, vd := ParseDate(v, now)
				verdicts[vd]++
			}
		}
		return present, verdicts
	}

	n, got := count("battery.date")
	if n != 70 {
		t.Errorf("battery.date in %d dumps, want 70", n)
	}
	for vd, want := range map[DateVerdict]int{
		DateFactoryDefault: 14, // 2001/09/25
		DatePlaceholder:    5,  // "not set"
		DateImpossible:     6,  // 4158/00/03, 2624/00/02, 2065/165/165, 2052/00/36, 2001/00/00 x2
		DateFuture:         1,  // 3150/08/01
		DateEmpty:          1,
		DateUnrecognised:   2, // 11172014, 01012014 (no separators)
		DateOK:             41,
	} {
		if got[vd] != want {
			t.Errorf("battery.date %v: %d, want %d", vd, got[vd], want)
		}
	}

	n, got = count("battery.mfr.date")
	if n != 94 {
		t.Errorf("battery.mfr.date in %d dumps, want 94", n)
	}
	cps := 0
	for _, d := range ds {
		if d.lines["battery.mfr.date"] == "CPS" {
			cps++
		}
	}
	if cps != 43 {
		t.Errorf("battery.mfr.date exactly \"CPS\" in %d dumps, want 43", cps)
	}
	for vd, want := range map[DateVerdict]int{
		// 43 "CPS", one more "CPS" with a #BAD comment, 3 "?",
		// "Mini-Box.Com", "CyberPower Systems"
		DatePlaceholder:  49,
		DateUnrecognised: 2, // "1"
		DateImpossible:   2, // 1980/00/01
		DateOK:           41,
	} {
		if got[vd] != want {
			t.Errorf("battery.mfr.date %v: %d, want %d", vd, got[vd], want)
		}
	}
}

// TestNUTDeviceLibrarySensors checks the plausibility filters against
// the counts: 23 of 75 battery temperatures and 35 of 402
// runtimes (0 or less, 65535 or more, or over 10 h) are not to be
// believed.
func TestNUTDeviceLibrarySensors(t *testing.T) {
	ds := nutDumps(t)
	temps, badTemps, runtimes, badRuntimes := 0, 0, 0, 0
	for _, d := range ds {
		if v, ok := d.vars["battery.temperature"]; ok {
			temps++
			if x, err := strconv.ParseFloat(v, 64); err != nil || !PlausibleTemp(x) {
				badTemps++
			}
		}
		if v, ok := d.vars["battery.runtime"]; ok {
			runtimes++
			if x, err := strconv.ParseFloat(v, 64); err == nil && !SaneRuntime(x) {
				badRuntimes++
			}
		}
	}
	if temps != 75 || badTemps != 23 {
		t.Errorf("battery.temperature: %d implausible of %d, want 23 of 75", badTemps, temps)
	}
	if runtimes != 402 || badRuntimes != 35 {
		t.Errorf("battery.runtime: %d insane of %d, want 35 of 402", badRuntimes, runtimes)
	}
}

// TestNUTDeviceLibraryInstall feeds each dump to a fresh Unit and checks
// the install date follows the precedence: a valid battery.date, else a
// valid battery.mfr.date, else the day first seen.
func TestNUTDeviceLibraryInstall(t *testing.T) {
	ds := nutDumps(t)
	bySource := map[Source]int{}
	for _, d := range ds {
		var u Unit
		u.Observe(d.reading("S1"), nil)
		bd, bv := ParseDate(d.vars["battery.date"], now)
		md, mv := ParseDate(d.vars["battery.mfr.date"], now)
		want, wantSrc := now.Unix(), SourceFirstSeen
		switch {
		case bv == DateOK:
			want, wantSrc = bd.Unix(), SourceBatteryDate
		case mv == DateOK:
			want, wantSrc = md.Unix(), SourceMfrDate
		}
		if u.Install != want || u.InstallSrc != wantSrc {
			t.Errorf("%s: install %d by %v, want %d by %v", d.name, u.Install, u.InstallSrc, want, wantSrc)
		}
		bySource[u.InstallSrc]++
	}
	if bySource[SourceBatteryDate] != 41 {
		t.Errorf("%d install dates from battery.date, want the 41 valid ones", bySource[SourceBatteryDate])
	}
	t.Logf("install date sources over %d dumps: %v", len(ds), bySource)
}
