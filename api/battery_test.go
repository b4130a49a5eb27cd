package api

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/ups"
)

// batteryCalls exercises the battery routes within the schema test (do
// checks each answer against the document): a state as the tracker
// would have saved it for 110000000077, read back, then the owner's
// date set, refused and cleared.
func batteryCalls(t *testing.T, ctx context.Context, js jetstream.JetStream,
	do func(token, method, pattern, path string, body any, code int) map[string]any, owner string) {
	t.Helper()
	if _, _, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{Partitions: 1, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	kv, err := battery.EnsureBucket(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	u := battery.Unit{}
	start := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Hour)
	for i := range 48 {
		var r ups.Reading
		r.Serial, r.Time = "110000000077", start.Add(time.Duration(i)*time.Hour)
		r.SetText("ups.status", "OL")
		r.SetText("battery.date", "2021/03/04")
		r.SetText("battery.date.maintenance", "2031/03/04")
		r.SetText("ups.test.result", "Done and passed")
		r.SetNum("battery.temperature", 31)
		r.SetNum("battery.charge", 100)
		r.SetNum("ups.load", 40)
		r.SetNum("battery.runtime", 1800)
		u.Observe(&r, nil)
	}
	blob, _ := u.MarshalBinary()
	if _, err := kv.Put(ctx, "110000000077", blob); err != nil {
		t.Fatal(err)
	}
	rep := do(owner, "GET", "/v1/units/{serial}/battery", "/v1/units/110000000077/battery", nil, 200)
	if in, _ := rep["install"].(map[string]any); in["date"] != "2021-03-04" || in["source"] != "battery.date" {
		t.Errorf("battery report: %v", rep)
	}
	if al, _ := rep["alerts"].([]any); len(al) != 1 || al[0] != battery.RuleAge {
		t.Errorf("battery alerts %v, want battery_age (more than 3 years at 31 °C)", rep["alerts"])
	}
	rep = do(owner, "PUT", "/v1/units/{serial}/battery/install-date", "/v1/units/110000000077/battery/install-date",
		map[string]any{"date": time.Now().UTC().AddDate(0, -1, 0).Format(time.DateOnly)}, 200)
	if in, _ := rep["install"].(map[string]any); in["source"] != "owner" {
		t.Errorf("after the owner's date: %v", rep)
	}
	do(owner, "PUT", "/v1/units/{serial}/battery/install-date", "/v1/units/110000000077/battery/install-date",
		map[string]any{"date": "2090-01-01"}, 400)
	do(owner, "PUT", "/v1/units/{serial}/battery/install-date", "/v1/units/110000000077/battery/install-date",
		map[string]any{"date": nil}, 200)
	do(owner, "GET", "/v1/units/{serial}/battery", "/v1/units/110000000099/battery", nil, 404)
	// Due: the state put above (installed 2021, past its age limit) is
	// listed for site hq, whatever the owner's date the tracker (not
	// running here) would apply.
	due := do(owner, "GET", "/v1/batteries/due", "/v1/batteries/due?days=30", nil, 200)
	sites, _ := due["sites"].([]any)
	if len(sites) != 1 || sites[0].(map[string]any)["site"] != "hq" || len(sites[0].(map[string]any)["batteries"].([]any)) != 1 {
		t.Errorf("batteries due: %v", due)
	}
	do(owner, "GET", "/v1/batteries/due", "/v1/batteries/due?days=0", nil, 400)
}

// TestBatteryReportSchema checks a report with every field set against
// the document (the live answer above leaves the optional ones out).
func TestBatteryReportSchema(t *testing.T) {
	doc := loadOADoc(t)
	at := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	rep := battery.Report{Serial: "110000000001", Seen: true, FirstSeen: at, LastSeen: at,
		Install: battery.Install{Date: "2024-01-02", Source: battery.SourceSwap, Owner: "2023-01-01",
			BatteryDate: "2022-01-01", MfrDate: "2021-01-01", Detected: "2024-01-02"},
		AgeDays: 1, EffectiveAgeDays: 2, AgeLimitDays: 1095, Temperature: 31, Maintenance: "2027-01-01",
		Health: battery.Health{SoH: 0.9, Known: true, K: 1.2, KFitted: true, KPoints: 100, Baseline: 1800, Current: 1620,
			BaseDays: 14, Days: 7, Since: at, Outage50: 1600, OutageAt: at},
		Forecast: battery.Forecast{At: at, Reason: "health", Health: at, SlopePerYear: -0.2, Points: 8, Age: at, Maintenance: at},
		Swaps:    []battery.Swap{{At: at, Reason: "runtime_jump+power_cycle_recharge"}},
		Tests: battery.TestsReport{IntervalDays: 14, Stale: true,
			History: []battery.TestReport{{At: at, Result: battery.TestAborted}}},
		Alerts: []string{battery.RuleHealth},
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	for _, p := range doc.conform("BatteryReport", map[string]any{"$ref": "#/components/schemas/BatteryReport"}, v) {
		t.Error(p)
	}
	if h, _ := v["health"].(map[string]any); len(h) != 12 {
		t.Errorf("health has %d keys, want all 12 set: %v", len(h), h)
	}
}
