package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/templates"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
)

// Notification is one (event, recipient, channel) travelling through the
// intake's steps.
type Notification struct {
	Event     *rules.Event
	Unit      registry.Unit
	Recipient recipients.Recipient
	Channel   string
	// Key is the notification log key (set by Route).
	Key string
}

// runIntake consumes ALERTS: workers by unit, each event through
// processEvent, then acked.
func (p *Pipeline) runIntake(ctx context.Context, cons jetstream.Consumer) error {
	queues := make([]chan jetstream.Msg, p.cfg.Workers)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan jetstream.Msg, 64)
		wg.Go(func() {
			for msg := range queues[i] {
				p.handleEvent(ctx, msg)
			}
		})
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	// Deferred last, so it runs first: stop pulling before the workers
	// nak what they hold.
	msgs, stop, err := pump(ctx, cons, 1024)
	if err != nil {
		return fmt.Errorf("notify intake: %w", err)
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-msgs:
			if !ok {
				return nil
			}
			// The subject is upswatch.alerts.<serial>.<rule>: one unit's
			// events stay in order on one worker.
			h := fnv.New32a()
			h.Write([]byte(subjectSerial(msg.Subject())))
			select {
			case queues[h.Sum32()%uint32(len(queues))] <- msg:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func subjectSerial(subject string) string { return bus.AlertSubjectSerial(subject) }

// A Resolved waits for its Firing to have been processed (asking every
// firingPoll), but not for longer than firingWait: a Firing processed
// before the marks existed, or one that was unreadable, has none.
const (
	firingPoll = 50 * time.Millisecond
	firingWait = 30 * time.Second
)

// firingSeenKey is the notification log key marking that the intake
// processed an alert's Firing (whoever it notified, if anyone). Its value
// is firingDone once every recipient's part is through, firingOwnersOnly
// while the part of the unit's site managers still waits on the area
// evaluator (no verdict yet, or a hold).
func firingSeenKey(fingerprint string) string {
	return LogKey("_intake", "seen", fingerprint+"/"+rules.Firing.String())
}

// Values of the firing mark. "1" is also what marks written before the
// managers' part could wait say: done.
const (
	firingDone       = "1"
	firingOwnersOnly = "owners"
)

func (p *Pipeline) markFiring(ctx context.Context, fingerprint, state string) error {
	if _, err := p.logKV.Put(ctx, firingSeenKey(fingerprint), []byte(state)); err != nil {
		return fmt.Errorf("notification log: mark firing processed: %w", err)
	}
	return nil
}

// firingState reads an alert's firing mark: "" when its Firing was not
// processed yet.
func (p *Pipeline) firingState(ctx context.Context, fingerprint string) (string, error) {
	e, err := p.logKV.Get(ctx, firingSeenKey(fingerprint))
	switch {
	case err == nil:
		if st := string(e.Value()); st == firingOwnersOnly {
			return st, nil
		}
		return firingDone, nil
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		return "", nil
	}
	return "", fmt.Errorf("notification log: %w", err)
}

func (p *Pipeline) handleEvent(ctx context.Context, msg jetstream.Msg) {
	var ev rules.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil || ev.Serial == "" || ev.Fingerprint == "" {
		p.log.Error("alert event unreadable; dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	var waited time.Duration
	if md, err := msg.Metadata(); err == nil {
		waited = max(p.cfg.Now().Sub(md.Timestamp), 0)
	}
	// managersLater: the site managers' part of a Resolved waits for
	// their part of the Firing.
	managersLater := false
	if ev.Kind == rules.Resolved && !ev.Historical && !ev.Silent {
		// Its Firing may have been sent away to wait (an area verdict
		// not stored yet) and not be processed yet: a Resolved taken
		// first would find no notice of the Firing to follow and be
		// dropped, and the Firing would then go out alone. The same
		// holds, for the site's managers alone, while the Firing's
		// managers' part waits.
		state, err := p.firingState(ctx, ev.Fingerprint)
		if err != nil || (state == "" && waited < firingWait) {
			_ = msg.NakWithDelay(firingPoll)
			return
		}
		managersLater = state == firingOwnersOnly && waited < firingWait
	}
	// fold is the area verdict's answer for the managers of the unit's
	// site; it is read alongside the event's other lookups.
	fold := func(ctx context.Context) (bool, time.Duration, error) {
		folded, later := false, time.Duration(0)
		if p.cfg.Folds != nil {
			var err error
			if folded, later, err = p.cfg.Folds.Fold(ctx, &ev, waited); err != nil {
				return false, 0, err
			}
			if later > 0 && !folded {
				// No verdict yet. Only the site's managers' notices can be
				// folded into an area alert: the unit's owners are
				// notified now, the managers once the verdict is in.
				folded = true
			}
		}
		if managersLater {
			folded, later = true, max(later, firingPoll)
		}
		return folded, later, nil
	}
	n, folded, later, err := p.processEvent(ctx, &ev, fold)
	if errors.Is(err, errVerdict) {
		if ctx.Err() == nil {
			p.log.Warn("area verdict unavailable; will retry", "alert", ev.Fingerprint, "err", err)
		}
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err == nil && ev.Kind == rules.Firing {
		state := firingDone
		if later > 0 {
			state = firingOwnersOnly
		}
		err = p.markFiring(ctx, ev.Fingerprint, state)
	}
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("alert event not processed; will retry", "alert", ev.Fingerprint, "kind", ev.Kind.String(), "err", err)
		}
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if later > 0 {
		// Held, or no verdict yet, for the site's managers: their part
		// comes back (what was queued now is in the log and not queued
		// twice).
		_ = msg.NakWithDelay(later)
		return
	}
	outcome := outcomeOf(n)
	if folded {
		p.log.Debug("unit alert folded into its area alert for the site's managers", "alert", ev.Fingerprint, "kind", ev.Kind.String())
		outcome = "folded"
	}
	p.m.events.WithLabelValues(outcome).Inc()
	if err := msg.Ack(); err != nil && ctx.Err() == nil {
		p.log.Warn("alert ack failed (the event will come again and find its log entries)", "err", err)
	}
}

func outcomeOf(n int) string {
	if n == 0 {
		return "none"
	}
	return "queued"
}

// process runs one event through the intake, not folded, and returns how
// many notifications it queued.
func (p *Pipeline) process(ctx context.Context, ev *rules.Event) (int, error) {
	n, _, _, err := p.processEvent(ctx, ev, nil)
	return n, err
}

// errVerdict marks a failure to read the area verdict (fold).
var errVerdict = errors.New("area verdict unavailable")

// processEvent routes ev, keeps what the recipients' preferences want,
// reads what the next steps need side by side (lookup), and queues what
// is neither logged already nor silenced. fold, when set, says whether
// the event is folded into an area alert for the managers of the unit's
// site (they are not notified of it; its owners still are), and when to
// come back for them (later).
func (p *Pipeline) processEvent(ctx context.Context, ev *rules.Event, fold foldFunc) (queued int, folded bool, later time.Duration, err error) {
	var ns []Notification
	if !ev.Historical && !ev.Silent {
		if p.cfg.Now().Sub(ev.At) > p.cfg.ExpireAfter {
			p.log.Info("alert event too old to notify", "alert", ev.Fingerprint, "kind", ev.Kind.String(), "at", ev.At)
		} else if ns, err = p.route(ctx, ev); err == nil {
			ns, err = p.preferences(ctx, ns)
		}
		if err != nil {
			return 0, false, 0, err
		}
	}
	lk, err := p.lookup(ctx, ev, ns, fold)
	if err != nil {
		return 0, false, 0, err
	}
	ns = dedup(ns, lk.logged)
	if lk.folded {
		ns = slices.DeleteFunc(ns, func(n Notification) bool { return slices.Contains(n.Recipient.Sites, n.Unit.Site) })
	}
	if len(ns) == 0 {
		return 0, lk.folded, lk.later, nil
	}
	if ns, err = p.silence(ctx, ns, lk); err != nil {
		return 0, false, 0, err
	}
	ns, err = p.enqueue(ctx, ns)
	return len(ns), lk.folded, lk.later, err
}

// foldFunc is the area verdict's answer for an event (see processEvent).
type foldFunc func(ctx context.Context) (folded bool, later time.Duration, err error)

// lookups is what an event's notifications need from the buckets before
// they are queued.
type lookups struct {
	folded   bool
	later    time.Duration
	silenced bool
	until    time.Time // of the silence
	logged   []bool    // by notification: the log holds it already
}

// lookup reads the area verdict (fold), the event's silence and each
// notification's log entry side by side: one round trip's wait, where
// one after another they were the better part of the intake's time (3.5
// ms at the median in the alert latency benchmark).
func (p *Pipeline) lookup(ctx context.Context, ev *rules.Event, ns []Notification, fold foldFunc) (lookups, error) {
	lk := lookups{logged: make([]bool, len(ns))}
	var foldErr error
	// Not WithContext: a failed read must not cancel the verdict's and be
	// reported as the verdict's failure.
	var g errgroup.Group
	g.SetLimit(roundTrips)
	if fold != nil {
		g.Go(func() error {
			lk.folded, lk.later, foldErr = fold(ctx)
			return foldErr
		})
	}
	if p.cfg.Silences != nil && len(ns) > 0 {
		g.Go(func() error {
			var err error
			if lk.until, lk.silenced, err = p.cfg.Silences.Silenced(ctx, ev.Serial, ev.Rule, p.cfg.Now()); err != nil {
				return fmt.Errorf("silences: %w", err)
			}
			return nil
		})
	}
	for i := range ns {
		g.Go(func() error {
			_, ok, err := p.readLog(ctx, ns[i].Key)
			lk.logged[i] = ok
			return err
		})
	}
	err := g.Wait()
	if foldErr != nil {
		return lookups{}, fmt.Errorf("%w: %w", errVerdict, foldErr)
	}
	return lk, err
}

// route makes one notification per recipient of the unit and channel the
// pipeline has, before preferences.
func (p *Pipeline) route(ctx context.Context, ev *rules.Event) ([]Notification, error) {
	unit, ok := p.cfg.Units.Lookup(ev.Serial)
	if !ok {
		unit = registry.Unit{Serial: ev.Serial}
	}
	rs, err := p.cfg.Recipients.For(ctx, ev.Serial, unit.Site)
	if err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	if ev.Area != "" {
		// An area alert goes to the managers of the site, not to the
		// owner of the unit that anchors it.
		rs = slices.DeleteFunc(rs, func(r recipients.Recipient) bool { return !slices.Contains(r.Sites, unit.Site) })
	}
	var ns []Notification
	for _, r := range rs {
		for _, ch := range recipients.Channels {
			if p.channels[ch] != nil {
				ns = append(ns, Notification{Event: ev, Unit: unit, Recipient: r, Channel: ch, Key: LogKey(r.ID, ch, ev.DedupID())})
			}
		}
	}
	return ns, nil
}

// preferences keeps the notifications the recipient wants now: the
// severity's channels, not muted, outside quiet hours unless critical;
// a Resolved only where its Firing was notified on that channel.
func (p *Pipeline) preferences(ctx context.Context, ns []Notification) ([]Notification, error) {
	out := ns[:0]
	for _, n := range ns {
		prefs := n.Recipient.Preferences
		ev := n.Event
		if prefs.IsMuted(ev.Serial) || !slices.Contains(prefs.ChannelsFor(ev.Severity), n.Channel) {
			continue
		}
		if ev.Kind == rules.Resolved {
			le, ok, err := p.readLog(ctx, LogKey(n.Recipient.ID, n.Channel, ev.Fingerprint+"/"+rules.Firing.String()))
			if err != nil {
				return nil, err
			}
			// Nor a "restored" for an outage the recipient never heard of
			// because it was silenced.
			if !ok || le.State == stateFailed || le.State == stateSilenced {
				continue
			}
		} else if ev.Severity < rules.Critical && prefs.Quiet(p.cfg.Now(), n.Recipient.Location()) {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// dedup drops the notifications the log already holds (a redelivered
// event, or one whose Resolved was queued before).
func dedup(ns []Notification, logged []bool) []Notification {
	out := ns[:0]
	for i, n := range ns {
		if !logged[i] {
			out = append(out, n)
		}
	}
	return out
}

// silence drops the notifications of a silenced event, recording each in
// the notification log (so a redelivered event is not audited twice, and
// its Resolved is not sent) and in the delivery audit as "silenced".
func (p *Pipeline) silence(ctx context.Context, ns []Notification, lk lookups) ([]Notification, error) {
	if !lk.silenced {
		return ns, nil
	}
	ev := ns[0].Event // the notifications of one event
	now, until := p.cfg.Now(), lk.until
	response := "silenced until " + until.UTC().Format(time.RFC3339)
	for _, n := range ns {
		d := Delivery{AlertID: ev.Fingerprint, EventID: ev.DedupID(), Kind: ev.Kind.String(), Rule: ev.Rule,
			Serial: string(ev.Serial), Recipient: n.Recipient.ID, Channel: n.Channel, Outcome: stateSilenced,
			Response: response, At: now.UTC()}
		if err := p.publishAuditID(ctx, d, n.Key+"/"+stateSilenced); err != nil {
			return nil, err
		}
		b, _ := json.Marshal(logEntry{State: stateSilenced, At: now.UTC(), Response: response})
		if _, err := p.logKV.Create(ctx, n.Key, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("notification log: %w", err)
		}
	}
	p.log.Info("alert silenced; notifications not sent", "alert", ev.Fingerprint, "kind", ev.Kind.String(),
		"notifications", len(ns), "until", until)
	return nil, nil
}

// roundTrips bounds the bucket and stream calls one event makes at once.
const roundTrips = 16

// enqueue renders each notification and puts it in the outbox (msg id =
// log key), then marks it queued in the log.
func (p *Pipeline) enqueue(ctx context.Context, ns []Notification) ([]Notification, error) {
	now := p.cfg.Now()
	outbox := make([]Pending, len(ns))
	for i, n := range ns {
		ev := n.Event
		site := n.Unit.Site
		if ev.Area != "" {
			site = ev.Area
		}
		text, err := p.cfg.Templates.Render(n.Recipient.Language,
			templates.NewData(ev, n.Unit.Name, site, n.Recipient.Location(), now))
		if err != nil {
			return nil, err
		}
		m := notify.Message{
			Title: text.Title, Body: text.Body,
			Critical:    ev.Severity == rules.Critical,
			CollapseKey: string(ev.Serial) + "/" + ev.Rule,
			Expires:     ev.At.Add(p.cfg.ExpireAfter),
			Data: map[string]string{"serial": string(ev.Serial), "rule": ev.Rule, "kind": ev.Kind.String(),
				"alert_id": ev.Fingerprint, "severity": ev.Severity.String()},
		}
		if n.Channel == recipients.SMS {
			m.Title, m.Body = "", text.SMS
		}
		outbox[i] = Pending{Key: n.Key, AlertID: ev.Fingerprint, EventID: ev.DedupID(), Kind: ev.Kind.String(),
			Rule: ev.Rule, Serial: string(ev.Serial), Recipient: n.Recipient.ID, Channel: n.Channel, Message: m,
			EventAt: ev.At, QueuedAt: now.UTC()}
	}
	// Each notification is two round trips (the outbox, then the log);
	// the notifications of one event make theirs side by side.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(roundTrips)
	for i := range outbox {
		g.Go(func() error { return p.put(gctx, outbox[i]) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return ns, nil
}

// put publishes one notification to the outbox (msg id = its log key, so
// a second put within the stream's duplicate window is dropped) and then
// marks it queued in the log (so a later one is not made at all).
func (p *Pipeline) put(ctx context.Context, pd Pending) error {
	b, err := json.Marshal(pd)
	if err != nil {
		return fmt.Errorf("encode outbox message: %w", err)
	}
	if _, err := p.js.PublishMsg(ctx, &nats.Msg{Subject: OutboxSubjectPrefix + pd.Channel, Data: b},
		jetstream.WithMsgID(pd.Key)); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	b, _ = json.Marshal(logEntry{State: stateQueued, At: pd.QueuedAt})
	if _, err := p.logKV.Create(ctx, pd.Key, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("notification log: %w", err)
	}
	p.m.queued.WithLabelValues(pd.Channel).Inc()
	return nil
}
