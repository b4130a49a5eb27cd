package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/wait"
)

// TestBatteryLifecycle runs the whole daemon: a unit whose battery.date
// is years old raises battery_age through the battery tracker, listed
// with the rule engine's alerts; the owner's newer install date, set
// through the API, makes it a new battery and resolves it.
func TestBatteryLifecycle(t *testing.T) {
	in := start(t, testConfig(t, t.TempDir()))
	const serial = "123456789021"
	u := in.register(serial)
	dev := in.device(u)
	publish(t, dev, "ups/"+serial+"/telemetry",
		"battery.date: 2020/01/01\nbattery.mfr.date: CPS\nups.test.result: Aborted\nbattery.charge: 100\n"+
			"battery.runtime: 1800\nups.load: 35\nups.status: OL\nbattery.temperature: 0.0\nups.temperature: 30\n")

	type report struct {
		Install struct {
			Date, Source string
		}
		Alerts []string
		Tests  struct {
			History []struct{ Result string }
		}
	}
	var rep report
	wait.Within(t, 10*time.Second, "battery report from the reading", func() bool {
		code, _ := in.do("GET", "/v1/units/"+serial+"/battery", nil, &rep)
		return code == http.StatusOK && len(rep.Alerts) == 1
	})
	if rep.Install.Date != "2020-01-01" || rep.Install.Source != "battery.date" || rep.Alerts[0] != "battery_age" ||
		len(rep.Tests.History) != 1 || rep.Tests.History[0].Result != "aborted" {
		t.Fatalf("report %+v", rep)
	}
	var alerts struct {
		Alerts []struct {
			Rule string `json:"rule"`
		} `json:"alerts"`
	}
	wait.Within(t, 10*time.Second, "battery_age listed as firing", func() bool {
		code, _ := in.do("GET", "/v1/alerts?state=firing", nil, &alerts)
		for _, a := range alerts.Alerts {
			if a.Rule == "battery_age" {
				return code == http.StatusOK
			}
		}
		return false
	})

	day := time.Now().UTC().AddDate(0, 0, -3).Format(time.DateOnly)
	if code, body := in.do("PUT", "/v1/units/"+serial+"/battery/install-date", map[string]any{"date": day}, &rep); code != http.StatusOK {
		t.Fatalf("install date: %d %s", code, body)
	}
	wait.Within(t, 10*time.Second, "the owner's date applied and battery_age resolved", func() bool {
		code, _ := in.do("GET", "/v1/units/"+serial+"/battery", nil, &rep)
		return code == http.StatusOK && rep.Install.Source == "owner" && len(rep.Alerts) == 0
	})
	if rep.Install.Date != day {
		t.Fatalf("install date %s, want %s", rep.Install.Date, day)
	}
	if code, _ := in.do("PUT", "/v1/units/"+serial+"/battery/install-date", map[string]any{"date": "tomorrow"}, nil); code != http.StatusBadRequest {
		t.Fatalf("a bad date: %d", code)
	}
}
