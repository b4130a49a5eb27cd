package app

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/servetest"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/report/weekly"
)

// TestWeeklySummaryOnceAcrossRestart runs the daemon with its clock on
// Monday 9 March 2026, 08:30 in Ho Chi Minh City, and makes the summary
// sender look at the accounts: the account that owns a unit there gets
// its summary of the week on its warning channels (fcm and apns; the log
// channels of dev mode), recorded in the audit under
// weekly_report/lan/2026-W10; the opted-out one gets none, and another
// look queues nothing more. The daemon is then stopped and started again
// on the same data (its embedded NATS store) and clock: it queues
// nothing. Deleting the account erases its claim.
//
// The trigger channel is unbuffered: a send returns once the sender's
// loop took it, so after the next send the look before it is complete
// and what it queued is counted.
func TestWeeklySummaryOnceAcrossRestart(t *testing.T) {
	c := testConfig(t, t.TempDir())
	c.Report.Weekly = true
	c.NATS.Listen = freeAddr(t) // the test reads the claims
	monday := time.Date(2026, 3, 9, 1, 30, 0, 0, time.UTC)
	in, trigger := startOnMonday(t, c, monday)
	if _, ready := in.readiness(); ready["weekly summary"] == "" {
		t.Fatalf("readiness %v, want the weekly summary in it", ready)
	}
	in.register("123456789012")
	for _, acct := range []map[string]any{
		{"id": "lan", "name": "Lan", "language": "vi", "time_zone": "Asia/Ho_Chi_Minh", "units": []string{"123456789012"},
			"contacts": map[string]any{"fcm_tokens": []string{"fcm-token-lan"}}},
		{"id": "minh", "name": "Minh", "language": "en", "time_zone": "Asia/Ho_Chi_Minh", "units": []string{"123456789012"},
			"contacts": map[string]any{"fcm_tokens": []string{"fcm-token-minh"}}, "preferences": map[string]any{"weekly_report_off": true}},
	} {
		if code, body := in.do("POST", "/v1/accounts", acct, nil); code != http.StatusCreated {
			t.Fatalf("create account: %d %s", code, body)
		}
	}
	looks := func(in *instance, trigger chan<- time.Time, want map[string]float64) {
		t.Helper()
		trigger <- monday
		trigger <- monday // the first look is done
		trigger <- monday // and the second
		for ch, n := range want {
			if got := in.metric(`upswatch_notify_queued_total{channel="` + ch + `"}`); got != n {
				t.Errorf("%s: %v queued, want %v", ch, got, n)
			}
		}
	}
	looks(in, trigger, map[string]float64{"fcm": 1, "apns": 1, "sms": 0})
	if n := in.metric(`upswatch_weekly_summaries_total{result="queued"}`); n != 1 {
		t.Errorf("weekly summaries queued: %v, want 1", n)
	}
	type deliveries struct {
		Deliveries []struct {
			Recipient, Channel, Outcome, Kind string
		} `json:"deliveries"`
	}
	var got deliveries
	wait.Within(t, 20*time.Second, "lan's summary delivered on fcm and apns", func() bool {
		got = deliveries{}
		code, _ := in.do("GET", "/v1/alerts/"+url.PathEscape("weekly_report/lan/2026-W10")+"/deliveries", nil, &got)
		return code == http.StatusOK && len(got.Deliveries) == 2
	})
	for _, d := range got.Deliveries {
		if d.Recipient != "lan" || d.Outcome != "delivered" || d.Kind != "weekly_report" {
			t.Errorf("delivery %+v", d)
		}
	}
	in.stop()

	again, trigger := startOnMonday(t, c, monday)
	looks(again, trigger, map[string]float64{"fcm": 0, "apns": 0, "sms": 0})

	// Erasing the account erases its claim: the key names it.
	_, js := bustest.Dial(t, "nats://"+c.NATS.Listen)
	kv, err := js.KeyValue(t.Context(), weekly.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), "lan.2026-W10"); err != nil {
		t.Fatalf("lan's claim: %v", err)
	}
	if code, body := again.do("DELETE", "/v1/accounts/lan", nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete lan: %d %s", code, body)
	}
	if _, err := kv.Get(t.Context(), "lan.2026-W10"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lan's claim after the erasure: %v", err)
	}
}

// startOnMonday starts the daemon of c with the clock of its notifier
// and summary sender stopped at now, the sender looking when told.
func startOnMonday(t *testing.T, c config.Config, now time.Time) (*instance, chan time.Time) {
	t.Helper()
	a := newApp(t, c)
	trigger := make(chan time.Time)
	a.now, a.weeklyTrigger = func() time.Time { return now }, trigger
	in := run(t, c, a, servetest.Options{})
	in.waitReady()
	return in, trigger
}
