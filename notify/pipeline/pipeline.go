// Package pipeline turns alert events into notifications, in the shape of
// Alertmanager's stages:
//
//	ALERTS stream (rules.Event JSON, consumer "notify")
//	  -> route        the unit's owners and its site's managers
//	  -> preferences  Historical/Silent skipped; channels per severity,
//	                  quiet hours (critical passes), muted units; a
//	                  Resolved only where its Firing was notified
//	  -> lookup       side by side: the area verdict (the site's managers'
//	                  notices folded into an area alert), the silence,
//	                  and each notification's log entry
//	  -> dedup        against the notification log (KV upswatch_notify_log,
//	                  key <recipient>.<channel>.<event dedup id>)
//	  -> silence      a silenced (unit, rule) is logged and audited as
//	                  "silenced", and goes no further (the send step asks
//	                  again, for what was queued before the silence)
//	  -> outbox       NOTIFY_OUTBOX, one message per (event, recipient,
//	                  channel), msg id = the log key; ALERTS acked after
//	  -> send         one consumer per channel: FCM batches up to 500
//	                  tokens per SendEach, retry with backoff honouring
//	                  Retry-After, TokenGone drops the address
//	  -> record       every attempt in NOTIFY_AUDIT (Deliveries), the log
//	                  entry marked delivered or failed, then the outbox ack.
//
// Exactly once, as far as a provider allows: a redelivered alert finds its
// log entry (or the outbox drops the duplicate msg id), a redelivered
// outbox message finds its entry delivered and is acked unsent. The one
// window left is a crash after the provider accepted and before the log
// was marked: that notification is sent again.
//
// The outbox carries the rendered text and the recipient id, never an
// address: tokens and numbers are looked up when sending, so a token
// dropped meanwhile is not used and nothing personal sits in the stream.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/ready"
	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/templates"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// Names of the streams, subjects, buckets (defined in package bus) and
// consumers.
const (
	// AlertsStream and AlertsSubjects are the rule engine's (rules/engine);
	// the pipeline creates the stream (bus.FindAlertsStream) when it
	// starts first.
	AlertsStream   = bus.AlertsStream
	AlertsSubjects = bus.AlertsSubjectPrefix + ">"
	// IntakeConsumer is the durable consumer of ALERTS.
	IntakeConsumer = "notify"

	OutboxStream        = bus.NotifyOutboxStream
	OutboxSubjectPrefix = bus.NotifyOutboxSubjectPrefix
	AuditStream         = bus.NotifyAuditStream
	AuditSubjectPrefix  = bus.NotifyAuditSubjectPrefix
	LogBucket           = bus.NotifyLogBucket
	// SenderConsumerPrefix + channel is the durable consumer of a channel.
	SenderConsumerPrefix = "notify-"
)

// Units is what the pipeline needs of the registry.
type Units interface {
	Lookup(serial ups.Serial) (registry.Unit, bool)
}

// Recipients is what the pipeline needs of notify/recipients.
type Recipients interface {
	For(ctx context.Context, serial ups.Serial, site string) ([]recipients.Recipient, error)
	Lookup(id string) (recipients.Recipient, bool)
	DropToken(ctx context.Context, accountID, channel, address, reason string) error
}

// Config of the pipeline.
type Config struct {
	Units      Units
	Recipients Recipients
	Templates  *templates.Set
	// FCM, APNS and SMS are the providers; nil (empty) turns a channel
	// off. With none at all the pipeline runs in dev mode: every channel
	// is a log channel that prints what it would send.
	FCM  notify.Sender
	APNS notify.Sender
	// APNSTopic is the bundle id the APNS sender serves; a token
	// registered for another bundle fails. Empty: any.
	APNSTopic string
	// SMS holds one sender per From number; a recipient always gets the
	// same one.
	SMS []notify.Sender
	// ExpireAfter: a notification undelivered this long after its event
	// is recorded as failed, not shown late (default 1h). Events older
	// than this when the pipeline first sees them are not notified.
	ExpireAfter time.Duration
	// InitialBackoff and MaxBackoff bound the retry delays (default 1s,
	// 5m); MaxAttempts 0 retries until ExpireAfter.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	MaxAttempts    int
	// Workers of the intake (default 16); events of one unit always go to
	// the same worker, in order.
	Workers    int
	Replicas   int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	// Silences, when set, holds the silences people set on alerts
	// (package actions): a silenced event is recorded as "silenced" in
	// the log and the audit for each notification it would have made,
	// and sent to nobody, critical or not.
	Silences Silences
	// Folds, when set, tells whether a unit alert's notice is folded into
	// an area alert (package area). Folded, the managers of the unit's
	// site (who get the area alert) are not notified of it, its owners
	// are. With a wait and no fold, the event comes back after the wait;
	// with both, it is notified to the owners now and comes back after
	// the wait for the managers (a hold).
	Folds Folds
}

// Folds decides the folding of unit alerts into area alerts.
type Folds interface {
	// Fold is asked each time the event is delivered; waited is how long
	// it has been in the stream.
	Fold(ctx context.Context, ev *rules.Event, waited time.Duration) (fold bool, wait time.Duration, err error)
}

// Silences tells whether the notifications of a unit's rule are silenced
// at a time, and until when.
type Silences interface {
	Silenced(ctx context.Context, serial ups.Serial, rule string, at time.Time) (until time.Time, silenced bool, err error)
}

// Pipeline is the notifier.
type Pipeline struct {
	js       jetstream.JetStream
	cfg      Config
	log      *slog.Logger
	m        *metrics
	channels map[string]*channel
	devMode  bool

	// Set by Run (ensure), read by Deliveries too.
	setup sync.Mutex
	logKV jetstream.KeyValue
	audit jetstream.Stream
	ready ready.Signal
}

// New validates cfg. It starts nothing.
func New(js jetstream.JetStream, cfg Config) (*Pipeline, error) {
	if js == nil || cfg.Units == nil || cfg.Recipients == nil || cfg.Templates == nil {
		return nil, errors.New("notify pipeline: js, Units, Recipients and Templates are required")
	}
	if cfg.ExpireAfter <= 0 {
		cfg.ExpireAfter = time.Hour
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.InitialBackoff {
		cfg.MaxBackoff = max(5*time.Minute, cfg.InitialBackoff)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Pipeline{js: js, cfg: cfg, log: cfg.Logger.With("component", "notify"), channels: map[string]*channel{}}
	var err error
	if p.m, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	add := func(name string, batch, concurrency int, senders ...notify.Sender) {
		p.channels[name] = &channel{name: name, senders: senders, batch: batch, concurrency: concurrency}
	}
	if cfg.FCM != nil {
		add(recipients.FCM, min(cfg.FCM.MaxBatch(), 500), 8, cfg.FCM)
	}
	if cfg.APNS != nil {
		add(recipients.APNS, 200, 4, cfg.APNS)
	}
	if len(cfg.SMS) > 0 {
		add(recipients.SMS, 20, 2*len(cfg.SMS), cfg.SMS...)
	}
	if len(p.channels) == 0 {
		p.devMode = true
		for _, name := range recipients.Channels {
			add(name, 500, 1, &LogSender{Name: name, Logger: p.log})
		}
	}
	return p, nil
}

// Ready is closed once the streams and consumers exist. A Run that returns
// lowers it again (a new channel), so a component run again after a
// failure is ready only once the new run has set up.
func (p *Pipeline) Ready() <-chan struct{} { return p.ready.C() }

// DevMode reports whether every channel is a log channel.
func (p *Pipeline) DevMode() bool { return p.devMode }

// channel is one provider channel and its senders.
type channel struct {
	name        string
	senders     []notify.Sender
	batch       int
	concurrency int
}

// pick returns the sender of a recipient: with several SMS From numbers,
// always the same one for a recipient.
func (c *channel) pick(recipient string) notify.Sender {
	if len(c.senders) == 1 {
		return c.senders[0]
	}
	h := fnv.New32a()
	h.Write([]byte(recipient))
	return c.senders[h.Sum32()%uint32(len(c.senders))]
}

// ensure creates (or finds) the streams, the log bucket and the consumers.
func (p *Pipeline) ensure(ctx context.Context) error {
	p.setup.Lock()
	defer p.setup.Unlock()
	if p.logKV != nil {
		return nil
	}
	// The rule engine owns ALERTS and may update its limits.
	if _, err := bus.FindAlertsStream(ctx, p.js, p.cfg.Replicas); err != nil {
		return err
	}
	if _, err := p.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        OutboxStream,
		Description: "notifications accepted and not yet delivered or failed, per channel",
		Subjects:    []string{OutboxSubjectPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Duplicates:  10 * time.Minute,
		Replicas:    p.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("stream %s: %w", OutboxStream, err)
	}
	audit, err := p.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        AuditStream,
		Description: "every notification attempt, by alert",
		Subjects:    []string{AuditSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      400 * 24 * time.Hour,
		Replicas:    p.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", AuditStream, err)
	}
	kv, err := p.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LogBucket,
		Description: "notification log: (recipient, channel, event) -> queued, delivered or failed",
		Storage:     jetstream.FileStorage,
		// Long enough for a Resolved to find its Firing and for any
		// redelivery; the audit keeps the history.
		TTL:      30 * 24 * time.Hour,
		Replicas: p.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("bucket %s: %w", LogBucket, err)
	}
	p.audit, p.logKV = audit, kv
	return nil
}

// Run consumes alert events and delivers notifications until ctx is done,
// and returns after its goroutines end.
func (p *Pipeline) Run(ctx context.Context) error {
	if err := p.ensure(ctx); err != nil {
		return fmt.Errorf("notify pipeline: %w", err)
	}
	intake, err := p.js.CreateOrUpdateConsumer(ctx, AlertsStream, jetstream.ConsumerConfig{
		Durable:       IntakeConsumer,
		Description:   "notification pipeline intake",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: 4096,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("notify pipeline: consumer %s: %w", IntakeConsumer, err)
	}
	senders := make([]jetstream.Consumer, 0, len(p.channels))
	names := make([]string, 0, len(p.channels))
	for _, name := range recipients.Channels {
		c := p.channels[name]
		if c == nil {
			continue
		}
		cons, err := p.js.CreateOrUpdateConsumer(ctx, OutboxStream, jetstream.ConsumerConfig{
			Durable:       SenderConsumerPrefix + name,
			Description:   "notification sender of channel " + name,
			FilterSubject: OutboxSubjectPrefix + name,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxAckPending: 20000,
			MaxDeliver:    -1,
		})
		if err != nil {
			return fmt.Errorf("notify pipeline: consumer of %s: %w", name, err)
		}
		senders = append(senders, cons)
		names = append(names, name)
	}
	if p.devMode {
		p.log.Info("no notification provider configured: notifications are logged, not sent")
	}
	p.ready.Up()
	defer p.ready.Down()
	p.log.Info("notify pipeline started", "channels", strings.Join(names, ","))

	var wg sync.WaitGroup
	errs := make([]error, len(senders)+1)
	wg.Go(func() { errs[0] = p.runIntake(ctx, intake) })
	for i, cons := range senders {
		wg.Go(func() { errs[i+1] = p.runChannel(ctx, p.channels[names[i]], cons) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pump feeds a consumer's messages into a channel until ctx is done. The
// channel holds up to maxMessages, so a reader finds at once everything
// already pulled (a sender's batch takes what waits, without lingering).
// stop ends the pulling and naks what was pulled but not read, so it
// comes again at once rather than after the ack wait.
func pump(ctx context.Context, cons jetstream.Consumer, maxMessages int) (<-chan jetstream.Msg, func(), error) {
	it, err := cons.Messages(jetstream.PullMaxMessages(maxMessages))
	if err != nil {
		return nil, nil, err
	}
	out := make(chan jetstream.Msg, maxMessages)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		for {
			msg, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				continue // heartbeat missed and similar: the iterator recovers
			}
			select {
			case out <- msg:
			case <-ctx.Done():
				_ = msg.Nak()
				return
			}
		}
	}()
	stop := func() {
		it.Stop()
		<-done
		for msg := range out {
			_ = msg.Nak()
		}
	}
	return out, stop, nil
}

// logEntry is the value of a notification log key.
type logEntry struct {
	State    string    `json:"state"` // queued, delivered, failed
	At       time.Time `json:"at"`
	Response string    `json:"response,omitempty"`
}

const (
	stateQueued    = "queued"
	stateDelivered = "delivered"
	stateFailed    = "failed"
	// stateSilenced: not sent, the alert was silenced.
	stateSilenced = "silenced"
)

// LogKey is the notification log key and outbox msg id of (recipient,
// channel, event dedup id).
func LogKey(recipient, channel, eventID string) string {
	return recipient + "." + channel + "." + eventID
}

func (p *Pipeline) readLog(ctx context.Context, key string) (logEntry, bool, error) {
	e, err := p.logKV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return logEntry{}, false, nil
	}
	if err != nil {
		return logEntry{}, false, fmt.Errorf("read notification log: %w", err)
	}
	var le logEntry
	if err := json.Unmarshal(e.Value(), &le); err != nil {
		return logEntry{}, false, fmt.Errorf("decode notification log entry: %w", err)
	}
	return le, true, nil
}

func (p *Pipeline) writeLog(ctx context.Context, key, state, response string) error {
	b, _ := json.Marshal(logEntry{State: state, At: p.cfg.Now().UTC(), Response: response})
	if _, err := p.logKV.Put(ctx, key, b); err != nil {
		return fmt.Errorf("write notification log: %w", err)
	}
	return nil
}
