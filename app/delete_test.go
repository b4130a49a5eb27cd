package app

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/wait"
)

// TestDeletedUnitLeavesNoAlerts: through the API, a unit on battery is
// listed as firing; once deleted it is not, on the rule engine that owns
// it too; registered again, its next outage fires anew (a kept state would
// still hold the old alert and stay quiet). Its timeline keeps both.
func TestDeletedUnitLeavesNoAlerts(t *testing.T) {
	in := start(t, testConfig(t, t.TempDir()))
	const serial = "123456789012"
	topic := "ups/" + serial + "/telemetry"
	outage := func(r registered) {
		dev := in.device(r)
		now := time.Now()
		publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OL","input.voltage":230,"battery.charge":100}`, now.Add(-20*time.Second).UnixMilli()))
		publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":98}`, now.Add(-10*time.Second).UnixMilli()))
		publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":96}`, now.UnixMilli()))
	}
	firing := func() []map[string]any {
		var out struct {
			Alerts []map[string]any `json:"alerts"`
		}
		if code, body := in.do("GET", "/v1/alerts?state=firing", nil, &out); code != http.StatusOK {
			t.Fatalf("firing alerts: %d %s", code, body)
		}
		var mine []map[string]any
		for _, a := range out.Alerts {
			if a["serial"] == serial {
				mine = append(mine, a)
			}
		}
		return mine
	}
	onBatteryFirings := func() int {
		var out struct {
			Events []map[string]any `json:"events"`
		}
		if code, body := in.do("GET", "/v1/units/"+serial+"/alerts", nil, &out); code != http.StatusOK {
			t.Fatalf("timeline: %d %s", code, body)
		}
		n := 0
		for _, ev := range out.Events {
			if ev["rule"] == "on_battery" && ev["kind"] == "firing" {
				n++
			}
		}
		return n
	}

	outage(in.register(serial))
	wait.Within(t, 10*time.Second, "on_battery listed as firing", func() bool { return len(firing()) == 1 })

	if code, body := in.do("DELETE", "/v1/units/"+serial, nil, nil); code != http.StatusNoContent && code != http.StatusOK {
		t.Fatalf("delete unit: %d %s", code, body)
	}
	wait.Within(t, 10*time.Second, "the rule engine forgot the unit", func() bool {
		return in.metric("upswatch_rules_units_forgotten_total") == 1
	})
	if got := firing(); len(got) != 0 {
		t.Fatalf("the deleted unit is still listed as firing: %v", got)
	}

	outage(in.register(serial))
	wait.Within(t, 10*time.Second, "a new on_battery after re-registration", func() bool { return onBatteryFirings() == 2 })
	wait.Within(t, 10*time.Second, "listed as firing again", func() bool { return len(firing()) == 1 })
	if n := in.metric("upswatch_history_undecodable_total"); n != 0 {
		t.Fatalf("the recorder counted %v undecodable messages (the deletion is an empty batch to it)", n)
	}
}
