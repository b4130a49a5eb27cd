package agent_test

import (
	"testing"
	"time"

	agentconfig "github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

// A scripted outage on a real upsd (upsrw, as an operator would) reaches
// upswatch through the agent: on_battery within 3 s of the change, and
// power_restored (on_battery resolved) with the outage's duration within
// about one poll of the return.
//
// Not parallel: it runs before the parallel tests, so the latency it
// checks is the agent's, not the machine's load.
func TestScriptedOutage(t *testing.T) {
	s := sharedServe(t)
	serial := newSerial()
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	pw := s.register(t, serial)
	ra := runAgent(t, agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Password: pw})) // serial from device.serial
	wait.Within(t, 10*time.Second, "first reading at upswatch", func() bool { return s.latest(serial) != nil })

	start := time.Now()
	n.Set(t, "ups1", "ups.status", "OB DISCHRG")
	n.Set(t, "ups1", "input.voltage", "0")
	fired := s.waitEvent(t, serial, "on_battery", "firing", start.Add(-time.Second), 10*time.Second)
	latency := time.Since(start)
	t.Logf("upsrw -> on_battery at upswatch: %v", latency)
	if latency > 3*time.Second {
		t.Errorf("on_battery after %v, want within 3s", latency)
	}
	if fired.StartedAt.Before(start.Add(-time.Second)) || fired.StartedAt.After(time.Now()) {
		t.Errorf("on_battery started at %v, the outage began at %v", fired.StartedAt, start)
	}

	back := time.Now()
	n.Set(t, "ups1", "ups.status", "OL CHRG")
	n.Set(t, "ups1", "input.voltage", "229.0")
	resolved := s.waitEvent(t, serial, "on_battery", "resolved", back.Add(-time.Second), 10*time.Second)
	t.Logf("upsrw -> power_restored at upswatch: %v (outage %v)", time.Since(back), resolved.Duration)
	outage := back.Sub(start)
	if d := resolved.Duration; d < outage-time.Second || d > outage+time.Second {
		t.Errorf("power_restored carries %v, the scripted outage lasted %v", d, outage)
	}
	if st := ra.stats(serial); st.Published < 3 || st.Buffer.Records != 0 {
		t.Errorf("agent stats %+v", st)
	}
}
