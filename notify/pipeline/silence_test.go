package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/upswatch/upswatch/actions"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/rules"
)

// TestSilenceSkipsSends silences a unit's low_battery (critical) through
// the real actions store: its firing reaches no provider and is audited
// as "silenced" for the recipient, a redelivery is not audited twice,
// another rule of the unit still pages, and once the silence is lifted
// the "resolved" of the silenced alert is not sent either (nobody heard
// of its firing). Each check waits for a later event of the same unit,
// which the intake handles after the earlier ones, in order.
func TestSilenceSkipsSends(t *testing.T) {
	e := newEnv(t, recipients.FCM)
	ctx := context.Background()
	st, err := actions.Open(ctx, e.js, actions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.silences = st
	r := e.owner(t, "en", allChannels(), recipients.Contacts{FCMTokens: []string{fcmTok}})
	p, _ := e.start(t)

	t0 := time.Now().Add(-time.Minute)
	low := event(rules.Firing, "low_battery", rules.Critical, serial, t0)
	id, err := actions.ParseAlertID(low.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Silence(ctx, id, actions.Actor{Admin: true}, time.Hour, "generator test"); err != nil {
		t.Fatal(err)
	}
	publish(t, e.js, low, low.DedupID())
	publish(t, e.js, low, "") // a redelivery: the log holds it as silenced
	marker := event(rules.Firing, "on_battery", rules.Warning, serial, t0)
	publish(t, e.js, marker, marker.DedupID())
	reqs, err := e.fcm.WaitRequests(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || reqs[0].Data["alert_id"] != marker.Fingerprint {
		t.Fatalf("requests = %+v, want only the unsilenced on_battery", reqs)
	}
	ds, err := p.Deliveries(ctx, low.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Outcome != "silenced" || ds[0].Recipient != r.ID || ds[0].Channel != recipients.FCM ||
		ds[0].Kind != "firing" || ds[0].Response == "" {
		t.Fatalf("deliveries of the silenced alert = %+v, want one silenced record", ds)
	}

	if err := st.Unsilence(ctx, id, actions.Actor{Admin: true}, "done"); err != nil {
		t.Fatal(err)
	}
	publish(t, e.js, event(rules.Resolved, "low_battery", rules.Critical, serial, t0), "")
	marker2 := event(rules.Resolved, "on_battery", rules.Warning, serial, t0)
	publish(t, e.js, marker2, marker2.DedupID())
	reqs, err = e.fcm.WaitRequests(2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 || reqs[1].Data["alert_id"] != marker.Fingerprint || reqs[1].Data["kind"] != "resolved" {
		t.Fatalf("requests = %+v, want the on_battery firing and resolved only", reqs)
	}
}

// TestSilenceHoldsQueued: a notification already in the outbox when the
// silence is set (its provider down, a retry waiting) is not sent once the
// provider is back; it ends recorded as silenced.
func TestSilenceHoldsQueued(t *testing.T) {
	e := newEnv(t, recipients.SMS)
	ctx := context.Background()
	st, err := actions.Open(ctx, e.js, actions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.silences = st
	e.owner(t, "en", allChannels(), recipients.Contacts{Phones: []string{phone}})
	e.sms.SetDown("1")
	p, _ := e.start(t)
	ev := event(rules.Firing, "on_battery", rules.Warning, serial, time.Now())
	publish(t, e.js, ev, ev.DedupID())
	outcomes := func() []string {
		ds, err := p.Deliveries(ctx, ev.Fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			out = append(out, d.Outcome)
		}
		return out
	}
	waitFor := func(what string, cond func([]string) bool) []string {
		t.Helper()
		var o []string
		if !wait.Poll(wait.Timeout, func() bool { o = outcomes(); return cond(o) }) {
			t.Fatalf("no %s within %v: %v", what, wait.Timeout, outcomes())
		}
		return o
	}
	waitFor("failed attempt", func(o []string) bool { return len(o) > 0 && o[0] == "retry" })
	id, _ := actions.ParseAlertID(ev.Fingerprint)
	if _, err := st.Silence(ctx, id, actions.Actor{Account: "lan"}, time.Hour, "storm"); err != nil {
		t.Fatal(err)
	}
	e.sms.SetUp()
	o := waitFor("silenced record", func(o []string) bool { return len(o) > 0 && o[len(o)-1] == "silenced" })
	for _, r := range e.sms.Requests() {
		if r.Status == 201 {
			t.Fatalf("an SMS was sent after the silence: outcomes %v", o)
		}
	}
}
