package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/recipients"
)

// TestResult is the outcome of a test notification on one address.
type TestResult struct {
	Channel string `json:"channel"`
	// Contact is masked.
	Contact  string `json:"contact"`
	Outcome  string `json:"outcome"`
	Response string `json:"provider_response,omitempty"`
	Error    string `json:"error,omitempty"`
}

// SendTest sends a test notification, in the account's language, to every
// address of every channel the account has, now (not through the outbox),
// and returns one result per address. Dead addresses are dropped as in
// normal delivery, and every attempt is recorded under the alert id
// "test/<account>/<unix ms>". It is what `upswatch notify test` and
// POST /v1/accounts/{id}/test-notification call; Run need not be running.
func (p *Pipeline) SendTest(ctx context.Context, accountID string) ([]TestResult, error) {
	r, ok := p.cfg.Recipients.Lookup(accountID)
	if !ok {
		return nil, fmt.Errorf("%w: %s", recipients.ErrNotFound, accountID)
	}
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	text, err := p.cfg.Templates.Test(r.Language)
	if err != nil {
		return nil, err
	}
	now := p.cfg.Now()
	alertID := fmt.Sprintf("test/%s/%d", accountID, now.UnixMilli())
	out := []TestResult{}
	for _, name := range recipients.Channels {
		c := p.channels[name]
		to := r.Contacts.Addresses(name)
		if c == nil || len(to) == 0 {
			continue
		}
		m := notify.Message{Title: text.Title, Body: text.Body, CollapseKey: "test", Expires: now.Add(10 * time.Minute),
			Data: map[string]string{"kind": "test", "alert_id": alertID}}
		if name == recipients.SMS {
			m.Title, m.Body = "", text.SMS
		}
		pd := &pending{ob: Pending{AlertID: alertID, EventID: alertID, Kind: "test", Rule: "test", Recipient: accountID, Channel: name}, attempt: 1}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		results := c.pick(accountID).Send(sctx, m, to)
		cancel()
		for _, res := range results {
			p.recordAttempt(ctx, pd, res, p.cfg.Now())
			if res.Outcome == notify.TokenGone {
				if err := p.cfg.Recipients.DropToken(ctx, accountID, name, res.To, res.ProviderResponse); err != nil {
					p.log.Warn("dropping a dead address failed", "account", accountID, "channel", name, "err", err)
				}
			}
			tr := TestResult{Channel: name, Contact: recipients.Mask(name, res.To), Outcome: res.Outcome.String(), Response: res.ProviderResponse}
			if res.Err != nil {
				tr.Error = res.Err.Error()
			}
			out = append(out, tr)
		}
	}
	return out, nil
}
