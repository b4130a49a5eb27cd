package app

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/wait"
)

// The daemon serves /v1/reports from its history store and alert
// timeline: a replayed 40 s outage (OB readings at 20 s and 40 s, on
// line again at 60 s) of a unit shows as one outage of 40 s
// in its report and its site's.
func TestReportServed(t *testing.T) {
	in := start(t, testConfig(t, t.TempDir()))
	u := in.register("123456789012")
	dev := in.device(u)
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	publish(t, dev, "ups/123456789012/telemetry", fmt.Sprintf(
		`[{"ts":%q,"ups.status":"OL","input.voltage":230},{"ts":%q,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":90},{"ts":%q,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":85},{"ts":%q,"ups.status":"OL CHRG","input.voltage":231}]`,
		base.Format(time.RFC3339), base.Add(20*time.Second).Format(time.RFC3339),
		base.Add(40*time.Second).Format(time.RFC3339), base.Add(60*time.Second).Format(time.RFC3339)))
	rng := "&from=" + url.QueryEscape(base.Format(time.RFC3339)) + "&to=" + url.QueryEscape(base.Add(5*time.Minute).Format(time.RFC3339))
	type rep struct {
		Outages struct {
			Count        int      `json:"count"`
			TotalS       float64  `json:"total_s"`
			LowestCharge *float64 `json:"lowest_charge"`
		} `json:"outages"`
	}
	for _, q := range []string{"scope=unit&id=123456789012", "scope=site&id=hq"} {
		var got rep
		wait.Within(t, 10*time.Second, "the outage in the "+q+" report", func() bool {
			got = rep{}
			code, _ := in.do("GET", "/v1/reports?"+q+rng, nil, &got)
			// Until the engine has seen the unit back on line, its
			// on_battery alert may be open: the outage lasts to the end.
			// The history recorder and the engine read the batch
			// independently: the charges may land after the alert.
			return code == 200 && got.Outages.Count == 1 && got.Outages.TotalS == 40 && got.Outages.LowestCharge != nil
		})
		if got.Outages.LowestCharge == nil || *got.Outages.LowestCharge != 85 {
			t.Errorf("%s: lowest charge %v, want 85", q, got.Outages.LowestCharge)
		}
	}
}
