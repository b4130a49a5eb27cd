package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/ups"
)

// sendTimeout bounds one provider call.
const sendTimeout = time.Minute

// ackWait of the consumers: after a crash, the messages it held come back
// this late at the latest. Long sends report progress.
const ackWait = 30 * time.Second

// runChannel consumes one channel's outbox: batches of up to c.batch
// messages, c.concurrency batches at a time.
func (p *Pipeline) runChannel(ctx context.Context, c *channel, cons jetstream.Consumer) error {
	sem := make(chan struct{}, c.concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	// Stop pulling before the batches in flight settle: a message they
	// nak must not be redelivered into this closing iterator.
	msgs, stop, err := pump(ctx, cons, 2*c.batch)
	if err != nil {
		return fmt.Errorf("notify %s: %w", c.name, err)
	}
	defer stop()
	for {
		// A free slot first, then the batch: while every slot is busy,
		// messages gather in the pump and the next batch takes all that
		// wait, so a storm is sent in full batches; an alert on a quiet
		// channel goes out at once instead of waiting for company.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		var batch []jetstream.Msg
		select {
		case <-ctx.Done():
			<-sem
			return nil
		case msg, ok := <-msgs:
			if !ok {
				<-sem
				return nil
			}
			batch = append(batch, msg)
		}
	fill:
		for len(batch) < c.batch {
			select {
			case msg, ok := <-msgs:
				if !ok {
					break fill
				}
				batch = append(batch, msg)
			default:
				break fill
			}
		}
		wg.Go(func() {
			defer func() { <-sem }()
			p.sendBatch(ctx, c, batch)
		})
	}
}

// pending is one outbox message being sent.
type pending struct {
	msg     jetstream.Msg
	ob      Pending
	attempt int
	sender  notify.Sender
	to      []string
	results []notify.Result
}

// group is the messages of a batch sent in one Send call: same sender,
// same rendered message.
type group struct {
	sender notify.Sender
	m      notify.Message
	items  []*pending
}

func (p *Pipeline) sendBatch(ctx context.Context, c *channel, batch []jetstream.Msg) {
	now := p.cfg.Now()
	groups := map[string]*group{}
	var order []string
	pds := make([]*pending, 0, len(batch))
	for _, msg := range batch {
		pd := &pending{msg: msg}
		if err := json.Unmarshal(msg.Data(), &pd.ob); err != nil {
			p.log.Error("outbox message unreadable; dropped", "channel", c.name, "err", err)
			_ = msg.Term()
			continue
		}
		if md, err := msg.Metadata(); err == nil {
			pd.attempt = int(md.NumDelivered)
		}
		pds = append(pds, pd)
	}
	logs, silences := p.lookUp(ctx, pds, now)
	for i, pd := range pds {
		msg := pd.msg
		lg := logs[i]
		if lg.err != nil {
			_ = msg.NakWithDelay(p.cfg.InitialBackoff)
			continue
		}
		if lg.ok && lg.entry.State != stateQueued {
			_ = msg.Ack() // already delivered or failed: a redelivery
			continue
		}
		// A silence set after the notification was queued (a provider
		// down, a retry waiting) holds it too.
		if st := silences[silenceKey(pd.ob)]; st.err != nil {
			_ = msg.NakWithDelay(p.cfg.InitialBackoff)
			continue
		} else if st.silenced {
			p.finishSilenced(ctx, pd, st.until, now)
			continue
		}
		if !pd.ob.Message.Expires.IsZero() && !now.Before(pd.ob.Message.Expires) {
			p.finish(ctx, pd, stateFailed, "expired before delivery")
			continue
		}
		r, ok := p.cfg.Recipients.Lookup(pd.ob.Recipient)
		if !ok {
			p.finish(ctx, pd, stateFailed, "recipient account gone")
			continue
		}
		pd.to = r.Contacts.Addresses(c.name)
		if c.name == recipients.APNS && p.cfg.APNSTopic != "" {
			pd.to = filterBundle(r.Contacts, pd.to, p.cfg.APNSTopic)
		}
		if len(pd.to) == 0 && p.devMode {
			// Dev mode only logs: show the text even for an account that
			// has no address on this channel yet.
			pd.to = []string{"(no address)"}
		}
		if len(pd.to) == 0 {
			p.finish(ctx, pd, stateFailed, "no "+c.name+" address")
			continue
		}
		pd.sender = c.pick(pd.ob.Recipient)
		m := pd.ob.Message
		gk := fmt.Sprintf("%p\x00%s\x00%s\x00%s\x00%t\x00%s", pd.sender, m.Title, m.Body, m.CollapseKey, m.Critical, pd.ob.EventID)
		g := groups[gk]
		if g == nil {
			g = &group{sender: pd.sender, m: m}
			groups[gk] = g
			order = append(order, gk)
		}
		g.items = append(g.items, pd)
	}
	var wg sync.WaitGroup
	for _, gk := range order {
		g := groups[gk]
		wg.Go(func() { p.sendGroup(ctx, c, g) })
	}
	wg.Wait()
}

type silenceState struct {
	silenced bool
	until    time.Time
	err      error
}

// logState is what the notification log holds for an outbox message.
type logState struct {
	entry logEntry
	ok    bool
	err   error
}

func silenceKey(ob Pending) string { return ob.Serial + "/" + ob.Rule }

// lookUp reads, side by side, the notification log entry of each message
// and the silence of each (serial, rule) of the batch (once each): every
// read is a round trip, and made one after another they would hold the
// batch's first message back by all of them.
func (p *Pipeline) lookUp(ctx context.Context, pds []*pending, now time.Time) ([]logState, map[string]silenceState) {
	logs := make([]logState, len(pds))
	var asks []*pending // the first message of each (serial, rule)
	silences := map[string]silenceState{}
	if p.cfg.Silences != nil {
		for _, pd := range pds {
			// Silences are set on a unit's rule: a notification about
			// no unit (Enqueue's) has none.
			if k := silenceKey(pd.ob); !pd.ob.direct() && !hasKey(silences, k) {
				silences[k] = silenceState{}
				asks = append(asks, pd)
			}
		}
	}
	answers := make([]silenceState, len(asks))
	var g errgroup.Group
	g.SetLimit(roundTrips)
	for i, pd := range pds {
		g.Go(func() error {
			logs[i].entry, logs[i].ok, logs[i].err = p.readLog(ctx, pd.ob.Key)
			return nil
		})
	}
	for i, pd := range asks {
		g.Go(func() error {
			until, silenced, err := p.cfg.Silences.Silenced(ctx, ups.Serial(pd.ob.Serial), pd.ob.Rule, now)
			if err != nil {
				p.log.Warn("silences unreadable; the notification waits", "alert", pd.ob.AlertID, "err", err)
			}
			answers[i] = silenceState{silenced, until, err}
			return nil
		})
	}
	_ = g.Wait() // each read's error is in its own slot
	for i, pd := range asks {
		silences[silenceKey(pd.ob)] = answers[i]
	}
	return logs, silences
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

// finishSilenced records a queued notification as silenced and settles
// it unsent.
func (p *Pipeline) finishSilenced(ctx context.Context, pd *pending, until, now time.Time) {
	response := "silenced until " + until.UTC().Format(time.RFC3339)
	d := Delivery{AlertID: pd.ob.AlertID, EventID: pd.ob.EventID, Kind: pd.ob.Kind, Rule: pd.ob.Rule, Serial: pd.ob.Serial,
		Recipient: pd.ob.Recipient, Channel: pd.ob.Channel, Outcome: stateSilenced, Response: response,
		Attempt: pd.attempt, At: now.UTC()}
	if err := p.publishAuditID(ctx, d, pd.ob.Key+"/"+stateSilenced); err != nil {
		p.log.Warn("silenced notification not recorded; will retry", "alert", pd.ob.AlertID, "err", err)
		_ = pd.msg.NakWithDelay(p.cfg.InitialBackoff)
		return
	}
	p.finish(ctx, pd, stateSilenced, response)
}

func filterBundle(c recipients.Contacts, tokens []string, topic string) []string {
	out := tokens[:0]
	for _, t := range tokens {
		if b := c.BundleOf(t); b == "" || b == topic {
			out = append(out, t)
		}
	}
	return out
}

// sendGroup sends one message to every address of the group's items in one
// Send call and settles each item.
func (p *Pipeline) sendGroup(ctx context.Context, c *channel, g *group) {
	var to []string
	for _, pd := range g.items {
		to = append(to, pd.to...)
	}
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	// Keep the outbox from redelivering while a slow provider (or SMS
	// pacing) holds the batch.
	go func() {
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				for _, pd := range g.items {
					_ = pd.msg.InProgress()
				}
			}
		}
	}()
	results := g.sender.Send(sctx, g.m, to)
	cancel()
	at := p.cfg.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	i := 0
	for _, pd := range g.items {
		pd.results = results[i : i+len(pd.to)]
		i += len(pd.to)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.settle(ctx, c, pd, at)
		})
	}
	wg.Wait()
}

// settle records the attempt, drops dead addresses, and marks and acks the
// item, or schedules its retry.
func (p *Pipeline) settle(ctx context.Context, c *channel, pd *pending, at time.Time) {
	var delivered, retry bool
	var retryAfter time.Duration
	var responses []string
	for _, r := range pd.results {
		p.m.results.WithLabelValues(c.name, r.Outcome.String()).Inc()
		p.recordAttempt(ctx, pd, r, at)
		responses = append(responses, r.ProviderResponse)
		switch r.Outcome {
		case notify.Delivered:
			delivered = true
			if !pd.ob.direct() { // the alerts' latency; a summary has no event
				p.m.latency.WithLabelValues(c.name).Observe(at.Sub(pd.ob.EventAt).Seconds())
			}
		case notify.Retry:
			retry = true
			retryAfter = max(retryAfter, r.RetryAfter)
		case notify.TokenGone:
			if err := p.cfg.Recipients.DropToken(ctx, pd.ob.Recipient, c.name, r.To, r.ProviderResponse); err != nil {
				p.log.Warn("dropping a dead address failed", "account", pd.ob.Recipient, "channel", c.name, "err", err)
			}
		}
	}
	response := strings.Join(responses, "; ")
	switch {
	case delivered:
		p.finish(ctx, pd, stateDelivered, response)
	case retry && ctx.Err() != nil:
		_ = pd.msg.Nak() // stopping: the next start sends it
	case retry && (p.cfg.MaxAttempts == 0 || pd.attempt < p.cfg.MaxAttempts) &&
		p.cfg.Now().Before(pd.ob.Message.Expires):
		delay := p.backoff(pd.attempt, retryAfter)
		p.log.Info("notification will be retried", "channel", c.name, "alert", pd.ob.AlertID,
			"account", pd.ob.Recipient, "attempt", pd.attempt, "delay", delay, "response", response)
		_ = pd.msg.NakWithDelay(delay)
	default:
		p.finish(ctx, pd, stateFailed, response)
	}
}

// backoff is the delay before attempt+1: exponential from InitialBackoff,
// capped at MaxBackoff, never shorter than the provider's Retry-After.
func (p *Pipeline) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := p.cfg.InitialBackoff
	for i := 1; i < attempt && d < p.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return max(min(d, p.cfg.MaxBackoff), retryAfter)
}

// finish marks the log entry and acks the outbox message; a failure to
// mark leaves the message for redelivery.
func (p *Pipeline) finish(ctx context.Context, pd *pending, state, response string) {
	if state == stateFailed {
		p.log.Warn("notification failed", "channel", pd.ob.Channel, "alert", pd.ob.AlertID, "account", pd.ob.Recipient,
			"response", response)
		if len(pd.results) == 0 {
			p.recordAttempt(ctx, pd, notify.Result{Outcome: notify.Failed, ProviderResponse: response}, p.cfg.Now())
		}
	}
	if err := p.writeLog(ctx, pd.ob.Key, state, response); err != nil {
		p.log.Warn("notification log not updated; will retry", "err", err)
		_ = pd.msg.NakWithDelay(p.cfg.InitialBackoff)
		return
	}
	if err := pd.msg.DoubleAck(ctx); err != nil && ctx.Err() == nil {
		p.log.Warn("outbox ack failed (the redelivery finds the log entry)", "err", err)
	}
}

// Delivery is one recorded attempt.
type Delivery struct {
	AlertID   string `json:"alert_id"`
	EventID   string `json:"event_id"`
	Kind      string `json:"kind"`
	Rule      string `json:"rule"`
	Serial    string `json:"serial"`
	Recipient string `json:"recipient"`
	Channel   string `json:"channel"`
	// Contact is masked (recipients.Mask).
	Contact  string    `json:"contact,omitempty"`
	Outcome  string    `json:"outcome"`
	Response string    `json:"provider_response,omitempty"`
	Error    string    `json:"error,omitempty"`
	Attempt  int       `json:"attempt"`
	At       time.Time `json:"at"`
}

// auditSubject is the audit subject of an alert id (serial/rule/start).
func auditSubject(alertID string) (string, error) {
	if alertID == "" || strings.ContainsAny(alertID, ".*> \t\r\n") {
		return "", fmt.Errorf("invalid alert id %q", alertID)
	}
	return AuditSubjectPrefix + strings.ReplaceAll(alertID, "/", "."), nil
}

func (p *Pipeline) recordAttempt(ctx context.Context, pd *pending, r notify.Result, at time.Time) {
	d := Delivery{AlertID: pd.ob.AlertID, EventID: pd.ob.EventID, Kind: pd.ob.Kind, Rule: pd.ob.Rule, Serial: pd.ob.Serial,
		Recipient: pd.ob.Recipient, Channel: pd.ob.Channel, Outcome: r.Outcome.String(), Response: r.ProviderResponse,
		Attempt: pd.attempt, At: at.UTC()}
	if r.To != "" {
		d.Contact = recipients.Mask(pd.ob.Channel, r.To)
	}
	if r.Err != nil {
		d.Error = r.Err.Error()
	}
	p.publishAudit(ctx, d)
}

// publishAuditID records d under a msg id (deduplicated by the stream).
func (p *Pipeline) publishAuditID(ctx context.Context, d Delivery, msgID string) error {
	subj, err := auditSubject(d.AlertID)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(d)
	if _, err := p.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: b}, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func (p *Pipeline) publishAudit(ctx context.Context, d Delivery) {
	subj, err := auditSubject(d.AlertID)
	if err != nil {
		p.log.Warn("attempt not recorded", "err", err)
		return
	}
	b, _ := json.Marshal(d)
	if _, err := p.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: b}); err != nil && ctx.Err() == nil {
		p.log.Warn("attempt not recorded", "alert", d.AlertID, "err", err)
	}
}

// Deliveries lists every recorded attempt of an alert (its fingerprint,
// serial/rule/start-ms), oldest first.
func (p *Pipeline) Deliveries(ctx context.Context, alertID string) ([]Delivery, error) {
	subj, err := auditSubject(alertID)
	if err != nil {
		return nil, err
	}
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	cons, err := p.js.CreateConsumer(ctx, AuditStream, jetstream.ConsumerConfig{
		FilterSubject:     subj,
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	defer func() { _ = p.js.DeleteConsumer(context.WithoutCancel(ctx), AuditStream, cons.CachedInfo().Name) }()
	want := int(cons.CachedInfo().NumPending)
	out := make([]Delivery, 0, want)
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("deliveries: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var d Delivery
			if err := json.Unmarshal(msg.Data(), &d); err == nil {
				out = append(out, d)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("deliveries: %w", err)
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

// LogSender is the dev-mode channel: it logs, at Info, what would be sent
// (title and body, never an address) and reports it delivered.
type LogSender struct {
	// Name is the channel it stands in for.
	Name   string
	Logger *slog.Logger
}

// Channel returns the channel name.
func (l *LogSender) Channel() string { return l.Name }

// MaxBatch is unbounded in practice.
func (l *LogSender) MaxBatch() int { return 1000 }

// Send logs m once for all recipients.
func (l *LogSender) Send(_ context.Context, m notify.Message, to []string) []notify.Result {
	l.Logger.Info("notification (log channel, not sent)", "channel", l.Name, "title", m.Title, "body", m.Body,
		"critical", m.Critical, "collapse_key", m.CollapseKey, "recipients", len(to))
	out := make([]notify.Result, len(to))
	for i, t := range to {
		out[i] = notify.Result{To: t, Outcome: notify.Delivered, ProviderResponse: "logged"}
	}
	return out
}
