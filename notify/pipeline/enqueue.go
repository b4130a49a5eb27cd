package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/templates"
)

// Direct is a notification that is not an alert (the weekly summary): one
// account, a text already rendered in its language, the channels it goes
// to. It skips routing, preferences and silences, which are about a
// unit's alerts (the caller applies the account's own choices), and
// takes the rest of the way an alert's notice takes: the log, the outbox,
// retries with backoff, dead addresses dropped, the audit.
type Direct struct {
	Recipient string
	// Kind names what it is ("weekly_report"): the audit's kind and rule,
	// the app's collapse key.
	Kind string
	// ID tells this message from the account's others of the Kind, for
	// good ("2026-W10"): the notification log key and outbox msg id are
	// (Recipient, channel, Kind/ID), so the same Direct enqueued again, by
	// a restart or by another instance, is not sent twice.
	ID       string
	Text     templates.Text
	Channels []string
	// At is when it was due; Expires when it stops being worth sending
	// (zero: At + Config.ExpireAfter).
	At      time.Time
	Expires time.Time
	// Data is added to the app's payload.
	Data map[string]string
}

// direct reports whether the outbox message is Enqueue's, about no unit.
func (pd Pending) direct() bool { return pd.Serial == "" }

// AlertID is the id the Direct's attempts are recorded under in the audit
// (Deliveries): kind/recipient/id.
func (d Direct) AlertID() string { return d.Kind + "/" + d.Recipient + "/" + d.ID }

// Enqueue puts d in the outbox on each of its channels the pipeline has,
// unless the notification log already holds it there, and returns how
// many it queued. Run need not be running in this process: the senders
// of any instance deliver it.
func (p *Pipeline) Enqueue(ctx context.Context, d Direct) (int, error) {
	for _, part := range []string{d.Recipient, d.Kind, d.ID} {
		if part == "" || strings.ContainsAny(part, "./*> \t\r\n") {
			return 0, fmt.Errorf("enqueue: recipient, kind and id must be set, without '.', '/', '*', '>' or spaces")
		}
	}
	if err := p.ensure(ctx); err != nil {
		return 0, fmt.Errorf("enqueue: %w", err)
	}
	now := p.cfg.Now()
	if d.At.IsZero() {
		d.At = now
	}
	if d.Expires.IsZero() {
		// The sender retries only until the message expires.
		d.Expires = d.At.Add(p.cfg.ExpireAfter)
	}
	eventID := d.Kind + "/" + d.ID
	n := 0
	for _, ch := range recipients.Channels { // in the usual order, each once
		if !slices.Contains(d.Channels, ch) || p.channels[ch] == nil {
			continue
		}
		key := LogKey(d.Recipient, ch, eventID)
		if _, ok, err := p.readLog(ctx, key); err != nil {
			return n, fmt.Errorf("enqueue: %w", err)
		} else if ok {
			continue
		}
		m := notify.Message{Title: d.Text.Title, Body: d.Text.Body, CollapseKey: d.Kind, Expires: d.Expires,
			Data: map[string]string{"kind": d.Kind, "alert_id": d.AlertID()}}
		for k, v := range d.Data {
			m.Data[k] = v
		}
		if ch == recipients.SMS {
			m.Title, m.Body = "", d.Text.SMS
		}
		if err := p.put(ctx, Pending{Key: key, AlertID: d.AlertID(), EventID: eventID, Kind: d.Kind, Rule: d.Kind,
			Recipient: d.Recipient, Channel: ch, Message: m, EventAt: d.At, QueuedAt: now.UTC()}); err != nil {
			return n, fmt.Errorf("enqueue %s: %w", ch, err)
		}
		n++
	}
	return n, nil
}
