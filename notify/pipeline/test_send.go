package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/apns"
	"github.com/upswatch/upswatch/notify/fcm"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/sms"
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

// Senders are the providers built from the configuration.
type Senders struct {
	FCM       notify.Sender
	APNS      notify.Sender
	APNSTopic string
	SMS       []notify.Sender
}

// NewSenders builds the providers configured in cfg (none: dev mode).
// It opens no connection.
func NewSenders(ctx context.Context, cfg config.Notify, log *slog.Logger, reg prometheus.Registerer) (Senders, error) {
	var s Senders
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.FCM.ProjectID != "" {
		f, err := fcm.New(ctx, fcm.Config{ProjectID: cfg.FCM.ProjectID, CredentialsFile: cfg.FCM.CredentialsFile,
			Endpoint: cfg.FCM.Endpoint, ParallelBatches: cfg.FCM.ParallelBatches},
			fcm.WithLogger(log), fcm.WithRegisterer(reg))
		if err != nil {
			return Senders{}, err
		}
		s.FCM = f
	}
	if cfg.APNS.KeyFile != "" {
		a, err := apns.New(apns.Config{KeyFile: cfg.APNS.KeyFile, KeyID: cfg.APNS.KeyID, TeamID: cfg.APNS.TeamID,
			Topic: cfg.APNS.Topic, Endpoint: cfg.APNS.Endpoint, CAFile: cfg.APNS.CAFile},
			apns.WithLogger(log), apns.WithRegisterer(reg))
		if err != nil {
			return Senders{}, err
		}
		s.APNS, s.APNSTopic = a, cfg.APNS.Topic
	}
	if cfg.SMS.AccountSID != "" {
		for _, from := range strings.Split(cfg.SMS.From, ",") {
			if from = strings.TrimSpace(from); from == "" {
				continue
			}
			snd, err := sms.New(sms.Config{Endpoint: cfg.SMS.Endpoint, AccountSID: cfg.SMS.AccountSID, AuthToken: cfg.SMS.AuthToken,
				From: from, SegmentsPerSecond: cfg.SMS.SegmentsPerSecond, Burst: cfg.SMS.Burst},
				sms.WithLogger(log), sms.WithRegisterer(reg))
			if err != nil {
				return Senders{}, err
			}
			s.SMS = append(s.SMS, snd)
		}
	}
	return s, nil
}
