package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	agentconfig "github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/internal/testenv"
)

// ddlDir is NUT's device dump library beside the repository
// (../shared/nut-ddl), or $UPSWATCH_NUT_DDL.
func ddlDir(t *testing.T) string {
	if d := os.Getenv("UPSWATCH_NUT_DDL"); d != "" {
		return d
	}
	return filepath.Join(testenv.RepoRoot(t), "..", "shared", "nut-ddl")
}

// statusOf is the ups.status line of a dump, "" when it has none.
func statusOf(dump []byte) string {
	for _, l := range strings.Split(string(dump), "\n") {
		if v, ok := strings.CutPrefix(l, "ups.status:"); ok {
			v, _, _ = strings.Cut(v, "#")
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Every dump of the NUT device library, served by dummy-ups through a
// real upsd, reaches upswatch through the agent and decodes: the unit's
// latest reading is stored, with the dump's ups.status. The dumps go in
// batches (one dummy-ups each, one upsd and one agent per batch).
func TestNUTDeviceLibrary(t *testing.T) {
	t.Parallel()
	dir := ddlDir(t)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".dev") {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Skipf("NUT device dump library not found at %s (%v): set UPSWATCH_NUT_DDL to run this test", dir, err)
	}
	sort.Strings(files)
	total := len(files)
	// make test runs every 6th dump (one batch, all makers, about 10 s);
	// UPSWATCH_NUT_DDL_ALL=1 (make test-nut-ddl) runs them all (about
	// 75-120 s with -race on two busy cores).
	if os.Getenv("UPSWATCH_NUT_DDL_ALL") == "" {
		var sub []string
		for i := 0; i < len(files); i += 6 {
			sub = append(sub, files[i])
		}
		files = sub
	}
	s := sharedServe(t)
	const batch = 120
	reached := 0
	for start := 0; start < len(files); start += batch {
		part := files[start:min(start+batch, len(files))]
		t.Run(fmt.Sprintf("dumps %d-%d", start, start+len(part)-1), func(t *testing.T) {
			reached += serveDumps(t, s, dir, start, part)
		})
	}
	t.Logf("%d of %d NUT device dumps (of %d in the library) reached upswatch through dummy-ups, upsd and the agent, and decoded", reached, len(files), total)
}

// serveDumps runs one batch: one upsd, a dummy-ups per dump, one agent.
func serveDumps(t *testing.T, s *serve, dir string, start int, part []string) int {
	reached := 0
	{
		var units []testenv.NUTUnit
		var cfgUnits []agentconfig.Unit
		serials := map[string]string{} // ups name -> serial
		want := map[string]string{}    // serial -> ups.status
		for i, f := range part {
			dump, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("ddl%03d", start+i)
			serial := fmt.Sprintf("7%011d", start+i)
			units = append(units, testenv.NUTUnit{Name: name, Dump: dump})
			cfgUnits = append(cfgUnits, agentconfig.Unit{UPS: name, Serial: serial, Password: s.register(t, serial)})
			serials[name] = serial
			want[serial] = statusOf(dump)
		}
		n := testenv.NUT(t, units...)
		c := agentConfig(t, n, s, cfgUnits...)
		c.Poll = time.Second
		c.Broker.KeepAlive = 10 * time.Second
		c.Log.Level = "info"
		runAgent(t, c)
		for i, u := range cfgUnits {
			var latest map[string]any
			ok := true
			deadline := time.Now().Add(30 * time.Second)
			for latest == nil && ok {
				latest = s.latest(u.Serial)
				ok = time.Now().Before(deadline)
				if latest == nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
			rel, _ := filepath.Rel(dir, part[i])
			if latest == nil {
				t.Errorf("%s (%s): no reading at upswatch", rel, u.UPS)
				continue
			}
			if w := want[u.Serial]; w != "" && !strings.Contains(fmt.Sprint(latest), w) {
				t.Errorf("%s: ups.status %q not in the stored reading %v", rel, w, latest)
				continue
			}
			reached++
		}
	}
	return reached
}
