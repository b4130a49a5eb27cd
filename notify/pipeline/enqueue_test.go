package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/upswatch/upswatch/actions"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/templates"
)

// TestEnqueueDirect puts a notification that is no alert in the outbox:
// it reaches the channels asked for (the SMS text on SMS), with silences
// configured (they hold a unit's rule; a Direct has no unit), is
// recorded in the audit under its id, and enqueued again (a restart,
// another instance) it is not sent again.
func TestEnqueueDirect(t *testing.T) {
	e := newEnv(t, recipients.FCM, recipients.SMS)
	ctx := context.Background()
	st, err := actions.Open(ctx, e.js, actions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.silences = st
	r := e.owner(t, "en", allChannels(), recipients.Contacts{FCMTokens: []string{fcmTok}, Phones: []string{phone}})
	p, _ := e.start(t)
	d := Direct{Recipient: r.ID, Kind: "weekly_report", ID: "2026-W10",
		Text:     templates.Text{Title: "Weekly power summary", Body: "Last week: no outages.", SMS: "Weekly: no outages."},
		Channels: []string{recipients.FCM, recipients.SMS, recipients.APNS}, At: time.Now()}
	for _, tt := range []struct {
		name string
		want int
	}{{"first", 2}, {"again", 0}} {
		n, err := p.Enqueue(ctx, d)
		if err != nil || n != tt.want {
			t.Fatalf("%s Enqueue = %d, %v; want %d queued (APNS is not configured)", tt.name, n, err, tt.want)
		}
		e.settle(t)
	}
	if reqs := e.fcm.Requests(); len(reqs) != 1 || reqs[0].Title != "Weekly power summary" || reqs[0].Data["kind"] != "weekly_report" {
		t.Fatalf("fcm requests = %+v, want the summary once", reqs)
	}
	if reqs := e.sms.Requests(); len(reqs) != 1 || reqs[0].Body != "Weekly: no outages." {
		t.Fatalf("sms requests = %+v, want the SMS text once", reqs)
	}
	ds, err := p.Deliveries(ctx, d.AlertID())
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].Outcome != "delivered" || ds[1].Outcome != "delivered" || ds[0].Recipient != r.ID {
		t.Fatalf("deliveries = %+v, want one delivered per channel", ds)
	}
	// The alerts' latency histogram leaves out what is no alert.
	if n := testutil.CollectAndCount(p.m.latency); n != 0 {
		t.Errorf("alert latency has %d series after a summary, want none", n)
	}
	if _, err := p.Enqueue(ctx, Direct{Recipient: r.ID, Kind: "weekly_report", ID: "2026.W10"}); err == nil {
		t.Error("an id with a dot (a subject separator) was accepted")
	}
}
