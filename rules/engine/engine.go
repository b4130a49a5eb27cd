// Package engine runs the rules core (package rules) on the bus: it
// consumes the READINGS stream partition by partition, keeps each unit's
// rules.UnitState in memory and in the NATS KV bucket upswatch_rule_state,
// publishes alert events to the ALERTS stream and keeps the bucket
// upswatch_alerts_active of what is firing now.
//
// # Ownership
//
// Each partition p has one durable pull consumer, rules-<p>, filtered on
// upswatch.readings.<p>, with MaxAckPending 1 (a partition's batches are
// evaluated one at a time, in order) and a priority group with the pinned
// policy: every instance pulls every partition, but the server delivers a
// partition's messages to one pinned client only. When that client stops
// pulling (the instance died), the server unpins it after PinnedTTL and
// pins another instance's pull; an instance that stops cleanly unpins its
// partitions at once. No consensus of our own: NATS decides who owns.
//
// The instance learns that it owns p from the Nats-Pin-Id of the messages
// it receives, and checks it against the consumer's info before each
// Tick; when the pin moved, it forgets the partition's states (the new
// owner loads them from KV). State writes are compare-and-set on the KV
// revision, so an instance that lost its pin without noticing yet
// (a long pause) cannot overwrite the new owner's state: its write fails,
// it drops the partition and leaves the batch unacked.
//
// # Order of a batch
//
// Evaluate every reading of the batch, publish its events (each with its
// dedup id, so a batch redelivered after a crash publishes nothing
// twice), update the active-alerts bucket, persist the changed states,
// then ack. A restart or takeover resumes from the persisted states:
// nothing re-fires, nothing is forgotten, pending timers keep running.
//
// # Tick
//
// Every TickEvery, an owned partition whose consumer has caught up
// (NumPending 0) ticks its units (comm_lost and deadlines without new
// readings). A partition that is still replaying a backlog is not ticked,
// so a unit is not declared lost while its readings wait on the bus. On
// taking a partition over, the new owner loads every state of the
// partition from KV, so silent units keep their comm_lost timers.
// Limitation: ownership moves on delivery, so a partition that receives
// no batch at all after its owner died is not ticked until one arrives
// (the ingest's presence messages normally make that short).
//
// # Deleted units
//
// Deregistering a unit publishes a control message (PublishUnitDeleted)
// on its partition's readings subject. Whichever instance owns the
// partition when it arrives, in order after the unit's last readings,
// drops the unit's state in memory and in the state bucket (its pending
// timers and reminders go with it) and its active alerts; the alert
// timeline stays. A unit registered again later starts from a new state.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/ready"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// Names of the streams, buckets, subjects (defined in package bus) and
// consumers.
const (
	AlertsStream        = bus.AlertsStream
	AlertsSubjectPrefix = bus.AlertsSubjectPrefix
	StateBucket         = bus.RuleStateBucket
	ActiveBucket        = bus.ActiveAlertsBucket
	// ConsumerPrefix + partition is the durable consumer of a partition.
	ConsumerPrefix = "rules-"
	// PriorityGroup is the consumers' pinned priority group.
	PriorityGroup = "rules"
)

// AlertSubject is the subject of an event of (serial, rule).
func AlertSubject(serial ups.Serial, rule string) string {
	return bus.AlertSubject(string(serial), rule)
}

// Units is what the engine needs of the registry.
type Units interface {
	Lookup(serial ups.Serial) (registry.Unit, bool)
}

// siteOf is the cheap way to a unit's site, when Units has it: the
// engine asks once per reading, and Lookup copies a whole registry.Unit
// (salt and hash slices included) under the registry's lock to answer.
type siteOf interface {
	SiteOf(serial ups.Serial) (string, bool)
}

// site is the registered site of serial.
func (e *Engine) site(serial ups.Serial) (string, bool) {
	if so, ok := e.cfg.Units.(siteOf); ok {
		return so.SiteOf(serial)
	}
	u, ok := e.cfg.Units.Lookup(serial)
	return u.Site, ok
}

// Config of the engine.
type Config struct {
	Evaluator *rules.Evaluator
	// Partitions of the READINGS stream (bus.PartitionsOf).
	Partitions int
	Units      Units
	// TickEvery: how often owned, caught-up partitions tick their units
	// (default 5s).
	TickEvery time.Duration
	// PinnedTTL: how long a silent owner keeps its partitions before
	// another instance takes them over (default 30s).
	PinnedTTL time.Duration
	// AckWait of the partition consumers (default 1m).
	AckWait time.Duration
	// AlertsMaxAge: how long the ALERTS stream keeps events (default
	// 400 days).
	AlertsMaxAge time.Duration
	Replicas     int
	// Now is the clock (default time.Now).
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// InstanceID names this instance in logs.
	InstanceID string
}

// Engine consumes readings and produces alert events.
type Engine struct {
	js    jetstream.JetStream
	cfg   Config
	log   *slog.Logger
	m     metrics
	ready ready.Signal

	owned sync.Map // partition -> struct{}; for the gauge

	// evaluated, when set (tests), is called for each evaluated reading.
	evaluated func(p int, r *ups.Reading)
	// ticked, when set (tests), is called after each tick of an owned,
	// caught-up partition has committed, with the clock it ticked at.
	ticked func(p int, now time.Time)
}

// New validates the configuration; Run starts the engine.
func New(js jetstream.JetStream, cfg Config) (*Engine, error) {
	if js == nil || cfg.Evaluator == nil || cfg.Units == nil {
		return nil, errors.New("rules engine: js, Evaluator and Units are required")
	}
	if cfg.Partitions <= 0 {
		return nil, fmt.Errorf("rules engine: Partitions must be positive, got %d", cfg.Partitions)
	}
	if cfg.TickEvery <= 0 {
		cfg.TickEvery = 5 * time.Second
	}
	if cfg.PinnedTTL <= 0 {
		cfg.PinnedTTL = 30 * time.Second
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = time.Minute
	}
	if cfg.AlertsMaxAge <= 0 {
		cfg.AlertsMaxAge = 400 * 24 * time.Hour
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{js: js, cfg: cfg,
		log: cfg.Logger.With("component", "rules", "instance", cfg.InstanceID)}
	if err := e.m.register(cfg.Registerer); err != nil {
		return nil, err
	}
	return e, nil
}

// Ready is closed once the streams, buckets and consumers exist and
// pulling has begun. A Run that returns
// lowers it again (a new channel), so a component run again after a
// failure is ready only once the new run has set up.
func (e *Engine) Ready() <-chan struct{} { return e.ready.C() }

// EnsureAlerts creates (or updates) the ALERTS stream and the
// active-alerts and state buckets.
func EnsureAlerts(ctx context.Context, js jetstream.JetStream, maxAge time.Duration, replicas int) (jetstream.KeyValue, jetstream.KeyValue, error) {
	if _, err := bus.EnsureAlertsStream(ctx, js, maxAge, replicas); err != nil {
		return nil, nil, err
	}
	state, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: StateBucket,
		Description: "rule engine state per unit", Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s: %w", StateBucket, err)
	}
	active, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ActiveBucket,
		Description: "alerts firing now, by serial.rule", Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s: %w", ActiveBucket, err)
	}
	return state, active, nil
}

// Run consumes until ctx is done and returns after its goroutines end.
// On a clean stop it unpins its partitions so another instance takes
// them over at once.
func (e *Engine) Run(ctx context.Context) error {
	state, active, err := EnsureAlerts(ctx, e.js, e.cfg.AlertsMaxAge, e.cfg.Replicas)
	if err != nil {
		return fmt.Errorf("rules engine: %w", err)
	}
	stream, err := e.js.Stream(ctx, bus.ReadingsStream)
	if err != nil {
		return fmt.Errorf("rules engine: stream %s: %w", bus.ReadingsStream, err)
	}
	parts := make([]*partition, e.cfg.Partitions)
	for p := range parts {
		cons, err := e.js.CreateOrUpdateConsumer(ctx, bus.ReadingsStream, jetstream.ConsumerConfig{
			Durable:        ConsumerPrefix + strconv.Itoa(p),
			Description:    "rule evaluation of partition " + strconv.Itoa(p),
			FilterSubject:  bus.ReadingsSubject(p),
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        e.cfg.AckWait,
			MaxAckPending:  1,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			PriorityGroups: []string{PriorityGroup},
			PriorityPolicy: jetstream.PriorityPolicyPinned,
			PinnedTTL:      e.cfg.PinnedTTL,
		})
		if err != nil {
			return fmt.Errorf("rules engine: consumer of partition %d: %w", p, err)
		}
		parts[p] = &partition{e: e, p: p, cons: cons, stream: stream, state: state, active: active,
			units: map[ups.Serial]*unit{}, dec: ups.NewBatchDecoder()}
	}
	iters := make([]jetstream.MessagesContext, len(parts))
	for i, pt := range parts {
		it, err := pt.cons.Messages(jetstream.PullPriorityGroup(PriorityGroup), jetstream.PullMaxMessages(8),
			jetstream.PullExpiry(min(e.cfg.PinnedTTL/2, 30*time.Second)))
		if err != nil {
			for _, it := range iters[:i] {
				it.Stop()
			}
			return fmt.Errorf("rules engine: pull partition %d: %w", pt.p, err)
		}
		iters[i] = it
	}
	e.ready.Up()
	defer e.ready.Down()
	e.log.Info("rules engine started", "partitions", len(parts))

	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	for i, pt := range parts {
		wg.Go(func() { errs[i] = pt.run(ctx, iters[i]) })
	}
	<-ctx.Done()
	for _, it := range iters {
		// Drain: messages already pulled come out of Next and are nak'ed
		// (see run), so the next owner gets them at once rather than
		// after AckWait.
		it.Drain()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// unit is one unit's state with the KV revision it was read or written
// at and the bytes last written.
type unit struct {
	st    rules.UnitState
	rev   uint64 // 0 = no key yet
	saved []byte
	dirty bool
	// sig is the significant part of the saved state and savedAt when it
	// was saved: a change confined to the per-reading fields is saved at
	// most every CheckpointEvery (see rules.UnitState.AppendSignificant).
	sig     []byte
	savedAt time.Time
	lazy    bool // per-reading fields changed since the last save
}

// CheckpointEvery bounds how stale a persisted state's per-reading fields
// (last reading times, learned interval, load mean) may be. It stays below the shortest
// comm_lost threshold (3 x the 20 s minimum interval), so a restart never
// mistakes a checkpoint's age for silence.
const CheckpointEvery = 30 * time.Second

// partition is one partition's consumer loop and its units. Only its
// goroutine touches it.
type partition struct {
	e      *Engine
	p      int
	cons   jetstream.Consumer
	stream jetstream.Stream
	state  jetstream.KeyValue
	active jetstream.KeyValue

	pin   string // the pin id of the last delivered message; "" = not owned
	units map[ups.Serial]*unit
	dirty []ups.Serial // units changed since the last save (saves never scan all units)
	// deleted: units this owner was told are deleted, and when (see
	// deletedStraggler).
	deleted map[ups.Serial]time.Time

	dec      *ups.BatchDecoder // reused batch after batch
	readings []ups.Reading
	events   []rules.Event
	sigBuf   []byte // scratch for the significant-state comparison
	acks     []pendingPub
}

func (pt *partition) run(ctx context.Context, it jetstream.MessagesContext) error {
	log := pt.e.log.With("partition", pt.p)
	nextTick := time.Now().Add(pt.e.cfg.TickEvery)
	defer func() {
		if pt.pin != "" {
			// Hand the partition over now rather than after PinnedTTL,
			// with every lazily checkpointed state saved first.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := pt.saveDirty(uctx, true); err != nil {
				log.Warn("final state checkpoint failed", "err", err)
			}
			if err := pt.stream.UnpinConsumer(uctx, ConsumerPrefix+strconv.Itoa(pt.p), PriorityGroup); err != nil {
				log.Warn("unpin on stop failed; another instance takes over after the pinned TTL", "err", err)
			}
			pt.release()
		}
	}()
	for {
		wait := time.Until(nextTick)
		if wait <= 0 {
			pt.tick(ctx, log)
			nextTick = time.Now().Add(pt.e.cfg.TickEvery)
			continue
		}
		msg, err := it.Next(jetstream.NextMaxWait(wait))
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return nil
		case ctx.Err() != nil:
			if err == nil {
				// A message that arrives while stopping still says the
				// server pinned the partition to us: note it, so the stop
				// unpins it rather than leaving it to the pinned TTL.
				if pin := msg.Headers().Get("Nats-Pin-Id"); pin != "" {
					pt.pin = pin
				}
				_ = msg.Nak()
			}
			if errors.Is(err, nats.ErrTimeout) {
				return nil
			}
			continue
		case errors.Is(err, nats.ErrTimeout):
			continue
		case err != nil:
			log.Debug("rules consumer: next failed", "err", err)
			continue
		}
		pt.handle(ctx, log, msg)
	}
}

// own records that the server delivered us a message under pin.
func (pt *partition) own(ctx context.Context, log *slog.Logger, pin string) {
	if pin == pt.pin && pin != "" {
		return
	}
	was := pt.pin != ""
	if was {
		// A new pin id while we thought we owned the partition: we lost it
		// and got it back; what we hold may be stale.
		clear(pt.units)
	}
	pt.pin = pin
	if pin == "" {
		return
	}
	pt.e.owned.Store(pt.p, struct{}{})
	pt.e.m.owned.Set(float64(pt.e.ownedCount()))
	log.Info("partition taken", "pin", pin)
	pt.loadAll(ctx, log)
}

// release forgets the partition's states.
func (pt *partition) release() {
	pt.pin = ""
	clear(pt.units)
	pt.e.owned.Delete(pt.p)
	pt.e.m.owned.Set(float64(pt.e.ownedCount()))
}

// loadAll loads every persisted state of this partition, so that units
// that stay silent are still ticked by their new owner.
func (pt *partition) loadAll(ctx context.Context, log *slog.Logger) {
	keys, err := pt.state.ListKeys(ctx)
	if err != nil {
		log.Warn("listing rule states failed; states load on first reading", "err", err)
		return
	}
	defer func() { _ = keys.Stop() }()
	for k := range keys.Keys() {
		s := ups.Serial(k)
		if ups.Partition(s, pt.e.cfg.Partitions) != pt.p {
			continue
		}
		if _, err := pt.unit(ctx, s); err != nil {
			log.Warn("loading rule state failed", "serial", s, "err", err)
		}
	}
}

// unit returns the in-memory state of serial, loading it on first sight.
func (pt *partition) unit(ctx context.Context, s ups.Serial) (*unit, error) {
	if u, ok := pt.units[s]; ok {
		return u, nil
	}
	u := &unit{}
	ent, err := pt.state.Get(ctx, string(s))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("get state of %s: %w", s, err)
	default:
		u.rev = ent.Revision()
		if err := u.st.UnmarshalBinary(ent.Value()); err != nil {
			// A state that cannot be decoded is dropped: the unit starts
			// afresh rather than blocking its partition forever.
			pt.e.log.Error("undecodable rule state dropped", "serial", s, "err", err)
			u.st = rules.UnitState{}
		} else {
			u.saved = ent.Value()
		}
	}
	if site, ok := pt.e.site(s); ok {
		u.st.Site = site
	}
	pt.units[s] = u
	return u, nil
}

var errLostOwnership = errors.New("state was written by another instance")

func (pt *partition) handle(ctx context.Context, log *slog.Logger, msg jetstream.Msg) {
	pt.own(ctx, log, msg.Headers().Get("Nats-Pin-Id"))
	if pt.control(ctx, log, msg) {
		return
	}
	var err error
	clear(pt.readings)
	pt.dec.Reset()
	pt.readings, err = pt.dec.Append(pt.readings[:0], msg.Data())
	if err != nil {
		pt.e.m.poison.Inc()
		log.Error("undecodable bus message terminated", "subject", msg.Subject(), "bytes", len(msg.Data()), "err", err)
		_ = msg.TermWithReason("undecodable reading batch")
		return
	}
	now := pt.e.cfg.Now()
	events := pt.events[:0]
	for i := range pt.readings {
		r := &pt.readings[i]
		if pt.deletedStraggler(r.Serial) {
			pt.e.m.stragglers.Inc()
			continue
		}
		u, err := pt.unit(ctx, r.Serial)
		if err != nil {
			log.Warn("rule state unavailable; batch left for redelivery", "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if site, ok := pt.e.site(r.Serial); ok {
			u.st.Site = site
		}
		events = pt.e.cfg.Evaluator.Evaluate(&u.st, r, now, events)
		pt.markDirty(r.Serial, u)
		pt.e.m.evaluated.Inc()
		pt.e.m.lag.Observe(max(now.Sub(r.Time), 0).Seconds())
		if pt.e.evaluated != nil {
			pt.e.evaluated(pt.p, r)
		}
	}
	pt.events = events
	ctx, cancel := commitContext(ctx)
	defer cancel()
	if !pt.commitOrDrop(ctx, log, events, "batch left for redelivery") {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn("rules ack failed; the batch is redelivered and its events deduplicated", "err", err)
	}
}

// commitContext is the context of a commit: an evaluated batch or tick is
// committed even if shutdown began meanwhile, since half-committed
// (events out, state not saved) the next owner would evaluate it again.
func commitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// commitOrDrop commits; on failure it gives the partition up (another
// instance wrote its states) or forgets its states (reloaded from KV next
// time), logs why with what happens next (then), and returns false.
func (pt *partition) commitOrDrop(ctx context.Context, log *slog.Logger, events []rules.Event, then string) bool {
	err := pt.commit(ctx, events)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errLostOwnership):
		log.Warn("partition lost to another instance", "err", err)
		pt.release()
	default:
		log.Warn("publishing alert events or saving state failed; "+then, "err", err)
		clear(pt.units)
	}
	return false
}

// commit publishes events and updates the active bucket, then persists
// the changed states. The events and their active-bucket writes go out
// asynchronously and are awaited together (one round trip for the batch,
// not two per event); the states are written only after all of them are
// stored, so a crash in between re-evaluates the batch (the events'
// dedup ids absorb the repeat) rather than saving a state whose alert
// never went out.
func (pt *partition) commit(ctx context.Context, events []rules.Event) error {
	if err := pt.publishAll(ctx, events); err != nil {
		return err
	}
	return pt.saveDirty(ctx, false)
}

// markDirty notes that a unit's state changed in this batch.
func (pt *partition) markDirty(s ups.Serial, u *unit) {
	if !u.dirty {
		u.dirty = true
		pt.dirty = append(pt.dirty, s)
	}
}

// pendingSave is one state write in flight.
type pendingSave struct {
	serial ups.Serial
	u      *unit
	blob   []byte
	sig    []byte
	at     time.Time
	ack    jetstream.PubAckFuture
}

// saveDirty persists every changed state of the batch. The writes are the
// KV bucket's own compare-and-set (the expected last revision of the key)
// but published asynchronously and awaited together: one round trip per
// batch instead of one per unit, which was the engine's main cost.
func (pt *partition) saveDirty(ctx context.Context, force bool) error {
	var pending []pendingSave
	serials := pt.dirty
	if force {
		serials = serials[:0]
		for s := range pt.units {
			serials = append(serials, s)
		}
	}
	pt.dirty = pt.dirty[:0]
	for _, s := range serials {
		u := pt.units[s]
		if u == nil || (!u.dirty && !(force && u.lazy)) {
			continue
		}
		u.dirty = false
		// Encoded into a scratch buffer: most dirty units only moved
		// per-reading fields and are not saved, so their encoding is
		// thrown away; a unit that is saved gets its own copy.
		var err error
		pt.sigBuf, err = u.st.AppendSignificant(pt.sigBuf[:0])
		if err != nil {
			return fmt.Errorf("encode state of %s: %w", s, err)
		}
		now := time.Now()
		if !force && u.saved != nil && string(pt.sigBuf) == string(u.sig) && now.Sub(u.savedAt) < CheckpointEvery {
			u.lazy = true
			continue // only per-reading fields moved: the checkpoint can wait
		}
		sig := append([]byte(nil), pt.sigBuf...)
		blob, err := u.st.MarshalBinary()
		if err != nil {
			return fmt.Errorf("encode state of %s: %w", s, err)
		}
		msg := nats.NewMsg("$KV." + StateBucket + "." + string(s))
		msg.Data = blob
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(u.rev, 10))
		ack, err := pt.e.js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("save state of %s: %w", s, err)
		}
		pending = append(pending, pendingSave{s, u, blob, sig, now, ack})
	}
	var errs []error
	for _, ps := range pending {
		select {
		case pa := <-ps.ack.Ok():
			ps.u.rev, ps.u.saved, ps.u.sig, ps.u.savedAt, ps.u.lazy = pa.Sequence, ps.blob, ps.sig, ps.at, false
		case err := <-ps.ack.Err():
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				errs = append(errs, fmt.Errorf("%w: %s: %v", errLostOwnership, ps.serial, err))
			} else {
				errs = append(errs, fmt.Errorf("save state of %s: %w", ps.serial, err))
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// pendingPub is one event or active-bucket write in flight.
type pendingPub struct {
	what string // for the error
	ack  jetstream.PubAckFuture
}

// publishAll publishes every event (with its dedup id) and its
// active-bucket update without waiting in between, then awaits them all.
// Publications from one connection reach the server in order, so two
// events of one alert in a batch (firing, then resolved) and their
// active-bucket put and delete are stored in that order.
func (pt *partition) publishAll(ctx context.Context, events []rules.Event) error {
	if len(events) == 0 {
		return nil
	}
	acks := pt.acks[:0]
	defer func() { clear(acks); pt.acks = acks[:0] }()
	for i := range events {
		ev := &events[i]
		body, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		msg := nats.NewMsg(AlertSubject(ev.Serial, ev.Rule))
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, ev.DedupID())
		ack, err := pt.e.js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("publish %s event of %s/%s: %w", ev.Kind, ev.Serial, ev.Rule, err)
		}
		acks = append(acks, pendingPub{what: "publish " + ev.Kind.String() + " event of " + string(ev.Serial) + "/" + ev.Rule, ack: ack})
		key := string(ev.Serial) + "." + ev.Rule
		// The active bucket's own put and delete, as KeyValue.Put and
		// Delete write them, but not awaited one by one.
		kv := nats.NewMsg("$KV." + ActiveBucket + "." + key)
		switch ev.Kind {
		case rules.Firing, rules.Updated:
			if ev.Historical {
				continue
			}
			kv.Data = body
			ack, err = pt.e.js.PublishMsgAsync(kv)
			acks = append(acks, pendingPub{what: "mark " + key + " active", ack: ack})
		case rules.Resolved:
			// A delete marker is stored whether or not the key exists,
			// as KeyValue.Delete does: nothing to tell apart.
			kv.Header.Set(kvOperationHeader, kvOperationDelete)
			ack, err = pt.e.js.PublishMsgAsync(kv)
			acks = append(acks, pendingPub{what: "clear active " + key, ack: ack})
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", acks[len(acks)-1].what, err)
		}
	}
	var errs []error
	for _, p := range acks {
		select {
		case <-p.ack.Ok():
		case err := <-p.ack.Err():
			errs = append(errs, fmt.Errorf("%s: %w", p.what, err))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i := range events {
		pt.e.m.events.WithLabelValues(events[i].Rule, events[i].Kind.String()).Inc()
	}
	return nil
}

// The KV bucket's delete marker, as jetstream.KeyValue.Delete writes it.
const (
	kvOperationHeader = "KV-Operation"
	kvOperationDelete = "DEL"
)

// tick checks ownership against the server and, when owned and caught
// up, ticks the partition's units.
func (pt *partition) tick(ctx context.Context, log *slog.Logger) {
	if pt.pin == "" {
		return
	}
	for s, at := range pt.deleted {
		if time.Since(at) > deletedGrace {
			delete(pt.deleted, s)
		}
	}
	info, err := pt.cons.Info(ctx)
	if err != nil {
		log.Debug("rules consumer info failed", "err", err)
		return
	}
	pinned := ""
	for _, g := range info.PriorityGroups {
		if g.Group == PriorityGroup {
			pinned = g.PinnedClientID
		}
	}
	if pinned != pt.pin {
		log.Info("partition released", "pinned", pinned)
		pt.release()
		return
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		return
	}
	now := pt.e.cfg.Now()
	events := pt.events[:0]
	for s, u := range pt.units {
		events = pt.e.cfg.Evaluator.Tick(&u.st, now, events)
		pt.markDirty(s, u)
	}
	pt.events = events
	ctx, cancel := commitContext(ctx)
	defer cancel()
	if !pt.commitOrDrop(ctx, log, events, "tick retried next time") {
		return
	}
	if pt.e.ticked != nil {
		pt.e.ticked(pt.p, now)
	}
}

func (e *Engine) ownedCount() int {
	n := 0
	e.owned.Range(func(any, any) bool { n++; return true })
	return n
}

type metrics struct {
	evaluated prometheus.Counter
	events    *prometheus.CounterVec
	owned     prometheus.Gauge
	lag       prometheus.Histogram
	poison    prometheus.Counter
	// forgotten counts deleted units whose state and alerts were dropped;
	// stragglers the readings of deleted units dropped after that.
	forgotten  prometheus.Counter
	stragglers prometheus.Counter
}

func (m *metrics) register(reg prometheus.Registerer) error {
	m.evaluated = prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_rules_readings_evaluated_total",
		Help: "Readings evaluated by the rule engine."})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "upswatch_rules_events_total",
		Help: "Alert events published, by rule and kind."}, []string{"rule", "kind"})
	m.owned = prometheus.NewGauge(prometheus.GaugeOpts{Name: "upswatch_rules_owned_partitions",
		Help: "Readings partitions this instance evaluates (pinned to it)."})
	m.lag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "upswatch_rules_evaluation_lag_seconds",
		Help:    "Time from a reading's timestamp to its evaluation.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 20)})
	m.poison = prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_rules_undecodable_total",
		Help: "Bus messages the rule engine could not decode and terminated."})
	m.forgotten = prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_rules_units_forgotten_total",
		Help: "Deleted units whose rule state and active alerts the engine dropped."})
	m.stragglers = prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_rules_deleted_unit_readings_dropped_total",
		Help: "Readings of a just-deleted unit dropped because they arrived after its deletion."})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.evaluated, m.events, m.owned, m.lag, m.poison, m.forgotten, m.stragglers} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("rules metrics: %w", err)
		}
	}
	return nil
}
