package battery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/ready"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/ups"
)

// Names on the bus.
const (
	// ConsumerPrefix + partition is the tracker's durable consumer of a
	// partition of the READINGS stream: its own, so battery tracking
	// costs the rule engine nothing and lags behind it harmlessly.
	ConsumerPrefix = "battery-"
	// PriorityGroup is the consumers' pinned priority group.
	PriorityGroup = "battery"
	// Bucket holds each unit's state (key: serial, value: the binary
	// form of Unit).
	Bucket = bus.BatteryBucket
	// CommandHeader = CommandInstallDate marks the command that sets the
	// owner's install date of the unit in engine.SerialHeader to the date
	// in InstallDateHeader (YYYY-MM-DD; empty clears it). It travels on
	// the unit's readings subject, so the tracker applies it in order
	// with the readings and stays the only writer of the state. Its body
	// is an empty batch and it has no engine.ControlHeader: the rule
	// engine and the recorder take it as no readings.
	CommandHeader      = "Upswatch-Battery-Command"
	CommandInstallDate = "install-date"
	InstallDateHeader  = "Upswatch-Install-Date"
)

// TrackerConfig configures a Tracker.
type TrackerConfig struct {
	// CheckpointEvery bounds how long a unit's state may go unsaved;
	// a state whose alerts changed is saved before its batch is acked.
	// A crash loses at most this much of the statistics, never an alert.
	CheckpointEvery time.Duration
	Replicas        int
	// PinnedTTL: how long a silent instance keeps its partitions before
	// another takes them over (default 30s).
	PinnedTTL time.Duration
	Logger    *slog.Logger
	// Now is the clock for checkpoints (tests inject one).
	Now func() time.Time
}

// Tracker runs Unit.Observe over the readings on the bus, publishes the
// battery events on the ALERTS stream like the rule engine's (same
// subjects, dedup ids and active-alerts bucket), and keeps the states in
// the Bucket, so they survive restarts.
//
// Each partition has its own durable consumer, pinned to one instance at
// a time, so a unit's readings meet one cached state. Each state write
// is compare-and-set on the KV revision; an instance that finds a unit
// changed elsewhere (after a takeover) reloads it. When a partition
// moves, the new owner starts from the states last saved: at most
// CheckpointEvery of statistics is lost, never an alert.
type Tracker struct {
	js    jetstream.JetStream
	cfg   TrackerConfig
	log   *slog.Logger
	ready ready.Signal

	// Owned by Run's goroutine.
	kv      jetstream.KeyValue
	active  jetstream.KeyValue
	units   map[ups.Serial]*entry
	touched []ups.Serial
	// dec decodes batch after batch into reused memory with interned
	// serials (see ups.BatchDecoder).
	dec *ups.BatchDecoder
	// deleted holds units deregistered within deletedGrace: readings of
	// theirs still on the bus (redelivered, or accepted just before the
	// deletion) must not bring the state back.
	deleted map[ups.Serial]time.Time
}

// deletedGrace is how long readings of a deleted unit are dropped.
const deletedGrace = time.Minute

type entry struct {
	u       Unit
	rev     uint64
	dirty   bool
	urgent  bool
	savedAt time.Time
}

// NewTracker validates the configuration; Run starts the tracker.
func NewTracker(js jetstream.JetStream, cfg TrackerConfig) (*Tracker, error) {
	if js == nil {
		return nil, errors.New("battery tracker: js is required")
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 5 * time.Minute
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.PinnedTTL <= 0 {
		cfg.PinnedTTL = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Tracker{js: js, cfg: cfg, log: cfg.Logger.With("component", "battery")}, nil
}

// Ready is closed once the consumer exists and reading has begun.
func (t *Tracker) Ready() <-chan struct{} { return t.ready.C() }

// EnsureBucket creates (or opens) the state bucket.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket,
		Description: "battery state per unit", Storage: jetstream.FileStorage, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// Run consumes until ctx is done, then saves what is unsaved. It needs
// the ALERTS stream and the active-alerts bucket of the rule engine and
// returns an error until they exist (the supervisor runs it again).
func (t *Tracker) Run(ctx context.Context) error {
	var err error
	if t.kv, err = EnsureBucket(ctx, t.js, t.cfg.Replicas); err != nil {
		return err
	}
	if _, err := t.js.Stream(ctx, engine.AlertsStream); err != nil {
		return fmt.Errorf("battery tracker: stream %s: %w", engine.AlertsStream, err)
	}
	if t.active, err = t.js.KeyValue(ctx, engine.ActiveBucket); err != nil {
		return fmt.Errorf("battery tracker: bucket %s: %w", engine.ActiveBucket, err)
	}
	partitions, err := bus.PartitionsOf(ctx, t.js)
	if err != nil {
		return fmt.Errorf("battery tracker: %w", err)
	}
	// One consumer per partition, pinned to one instance at a time (as
	// the rule engine's), so a unit's readings meet one cached state.
	conss := make([]jetstream.Consumer, partitions)
	iters := make([]jetstream.MessagesContext, 0, partitions)
	defer func() {
		for _, it := range iters {
			it.Stop()
		}
	}()
	for p := range partitions {
		conss[p], err = t.js.CreateOrUpdateConsumer(ctx, bus.ReadingsStream, jetstream.ConsumerConfig{
			Durable:        ConsumerPrefix + strconv.Itoa(p),
			Description:    "battery lifecycle of partition " + strconv.Itoa(p),
			FilterSubject:  bus.ReadingsSubject(p),
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        time.Minute,
			MaxAckPending:  64,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			PriorityGroups: []string{PriorityGroup},
			PriorityPolicy: jetstream.PriorityPolicyPinned,
			PinnedTTL:      t.cfg.PinnedTTL,
		})
		if err != nil {
			return fmt.Errorf("battery consumer %d: %w", p, err)
		}
		it, err := conss[p].Messages(jetstream.PullPriorityGroup(PriorityGroup), jetstream.PullMaxMessages(32),
			jetstream.PullExpiry(min(t.cfg.PinnedTTL/2, 30*time.Second)))
		if err != nil {
			return fmt.Errorf("battery consumer %d: %w", p, err)
		}
		iters = append(iters, it)
	}
	t.units = map[ups.Serial]*entry{}
	t.deleted = map[ups.Serial]time.Time{}

	// The partitions' messages meet in one loop: the states are the
	// loop's alone.
	msgs := make(chan jetstream.Msg)
	received := make([]atomic.Bool, partitions) // this instance was pinned
	var wg sync.WaitGroup
	for p, it := range iters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := it.Next()
				if err != nil {
					if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
						return
					}
					t.log.Warn("battery consumer: next failed", "partition", p, "err", err)
					continue
				}
				received[p].Store(true)
				select {
				case msgs <- msg:
				case <-ctx.Done():
					return // not acked: redelivered to the next owner
				}
			}
		}()
	}
	t.ready.Up()
	defer t.ready.Down()
	defer func() {
		for _, it := range iters {
			it.Stop()
		}
		wg.Wait()
		// Save what is unsaved with a context that outlives the stop,
		// then hand the partitions over at once rather than after
		// PinnedTTL.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := t.save(sctx, true); err != nil {
			t.log.Warn("battery states not saved at stop", "err", err)
		}
		st, err := t.js.Stream(sctx, bus.ReadingsStream)
		if err != nil {
			return
		}
		for p := range conss {
			if received[p].Load() {
				if err := st.UnpinConsumer(sctx, ConsumerPrefix+strconv.Itoa(p), PriorityGroup); err != nil {
					t.log.Debug("battery consumer not unpinned", "partition", p, "err", err)
				}
			}
		}
	}()

	var rs []ups.Reading
	var evs []rules.Event
	t.dec = ups.NewBatchDecoder()
	checkpoint := time.NewTicker(time.Minute)
	defer checkpoint.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-msgs:
			rs, evs = t.handle(ctx, msg, rs[:0], evs[:0])
			clear(rs)
		case <-checkpoint.C:
			if err := t.save(ctx, false); err != nil {
				t.log.Warn("battery checkpoint failed", "err", err)
			}
		}
	}
}

// handle applies one bus message. It acks the message once its events
// are published and the states whose alerts changed are saved; on a
// failure it leaves the message for redelivery (events carry dedup ids,
// and Observe skips readings it has already seen).
func (t *Tracker) handle(ctx context.Context, msg jetstream.Msg, rs []ups.Reading, evs []rules.Event) ([]ups.Reading, []rules.Event) {
	if msg.Headers().Get(CommandHeader) == CommandInstallDate {
		return rs, t.installDate(ctx, msg, evs)
	}
	switch msg.Headers().Get(engine.ControlHeader) {
	case "":
	case engine.ControlUnitDeleted:
		serial := ups.Serial(msg.Headers().Get(engine.SerialHeader))
		delete(t.units, serial)
		t.deleted[serial] = t.cfg.Now()
		if err := t.purge(ctx, serial); err != nil {
			t.log.Warn("battery state of a deleted unit not purged", "serial", serial, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return rs, evs
		}
		_ = msg.Ack()
		return rs, evs
	default:
		_ = msg.Ack() // another component's command
		return rs, evs
	}
	t.dec.Reset() // the previous batch's readings are done with
	rs, err := t.dec.Append(rs, msg.Data())
	if err != nil {
		t.log.Error("undecodable bus message terminated", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("undecodable reading batch")
		return rs[:0], evs
	}
	// Load every state first, so a failed load leaves no state changed
	// by half the batch.
	touched := t.touched[:0]
	for i := range rs {
		if rs[i].Serial == "" || t.isDeleted(rs[i].Serial) {
			continue
		}
		if _, err := t.entry(ctx, rs[i].Serial); err != nil {
			t.log.Warn("battery state not loaded; batch left for redelivery", "serial", rs[i].Serial, "err", err)
			_ = msg.NakWithDelay(5 * time.Second)
			return rs, evs
		}
	}
	for i := range rs {
		r := &rs[i]
		e := t.units[r.Serial]
		if e == nil {
			continue
		}
		n0 := len(evs)
		evs = e.u.Observe(r, evs)
		e.dirty = true
		if len(evs) > n0 && !e.urgent {
			e.urgent = true
			touched = append(touched, r.Serial)
		}
	}
	t.touched = touched
	t.finish(ctx, msg, evs, touched)
	return rs, evs
}

// installDate applies the owner's install date.
func (t *Tracker) installDate(ctx context.Context, msg jetstream.Msg, evs []rules.Event) []rules.Event {
	serial, err := ups.ParseSerial(msg.Headers().Get(engine.SerialHeader))
	var d time.Time
	if raw := msg.Headers().Get(InstallDateHeader); err == nil && raw != "" {
		d, err = time.Parse(time.DateOnly, raw)
	}
	if err != nil {
		t.log.Error("install date command terminated", "err", err)
		_ = msg.TermWithReason("invalid install date command")
		return evs
	}
	e, err := t.entry(ctx, serial)
	if err != nil {
		t.log.Warn("battery state not loaded; command left for redelivery", "serial", serial, "err", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return evs
	}
	evs = append(evs, e.u.SetOwnerDate(d, t.cfg.Now())...)
	e.dirty, e.urgent = true, true
	t.finish(ctx, msg, evs, []ups.Serial{serial})
	return evs
}

// finish publishes a message's events, saves the states whose alerts
// changed (urgent), and acks it. When the events cannot be published,
// the urgent states are dropped from memory, so the redelivered batch
// is applied again to their saved states and raises its events again
// (the stream drops the duplicates); the message is left for
// redelivery.
func (t *Tracker) finish(ctx context.Context, msg jetstream.Msg, evs []rules.Event, urgent []ups.Serial) {
	// A batch begun is finished even when the tracker is told to stop,
	// so a stop does not send it round again.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := t.publish(ctx, evs); err != nil {
		t.log.Warn("battery events not published; batch left for redelivery", "err", err)
		for _, s := range urgent {
			delete(t.units, s)
		}
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	if err := t.saveSome(ctx, urgent); err != nil {
		t.log.Warn("battery state not saved; batch left for redelivery", "err", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	_ = msg.Ack()
}

func (t *Tracker) isDeleted(serial ups.Serial) bool {
	at, ok := t.deleted[serial]
	if ok && t.cfg.Now().Sub(at) > deletedGrace {
		delete(t.deleted, serial)
		return false
	}
	return ok
}

// purge removes a unit's state from the bucket's stream, leaving no
// delete marker, so a unit registered again is saved as a new key.
func (t *Tracker) purge(ctx context.Context, serial ups.Serial) error {
	st, err := t.js.Stream(ctx, "KV_"+Bucket)
	if err != nil {
		return fmt.Errorf("battery state stream: %w", err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+Bucket+"."+string(serial))); err != nil {
		return fmt.Errorf("purge the battery state of %s: %w", serial, err)
	}
	return nil
}

// entry returns the cached state of serial, loading it from the bucket
// on a miss.
func (t *Tracker) entry(ctx context.Context, serial ups.Serial) (*entry, error) {
	if e := t.units[serial]; e != nil {
		return e, nil
	}
	e := &entry{u: Unit{Serial: serial}, savedAt: t.cfg.Now()}
	kve, err := t.kv.Get(ctx, string(serial))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("load battery state of %s: %w", serial, err)
	default:
		e.rev = kve.Revision()
		if err := e.u.UnmarshalBinary(kve.Value()); err != nil {
			// A state that cannot be read is started again rather than
			// blocking the unit forever.
			t.log.Error("battery state unreadable; starting afresh", "serial", serial, "err", err)
			e.u = Unit{Serial: serial}
		}
	}
	t.units[serial] = e
	return e, nil
}

// save writes, at a checkpoint, the states unsaved for CheckpointEvery
// (every unsaved one when force).
func (t *Tracker) save(ctx context.Context, force bool) error {
	now := t.cfg.Now()
	var due []ups.Serial
	for serial, e := range t.units {
		if e.dirty && (force || e.urgent || now.Sub(e.savedAt) >= t.cfg.CheckpointEvery) {
			due = append(due, serial)
		}
	}
	return t.saveSome(ctx, due)
}

// saveSome writes the given states: asynchronous publishes to the
// bucket's stream with the expected revision (the KV's compare-and-set),
// then their acks, so a checkpoint of many units is not one round trip
// each.
func (t *Tracker) saveSome(ctx context.Context, serials []ups.Serial) error {
	type pending struct {
		serial ups.Serial
		e      *entry
		ack    jetstream.PubAckFuture
	}
	var ps []pending
	var errs []error
	now := t.cfg.Now()
	for _, serial := range serials {
		e := t.units[serial]
		if e == nil || !e.dirty {
			continue
		}
		blob, err := e.u.MarshalBinary()
		if err != nil {
			errs = append(errs, fmt.Errorf("encode battery state of %s: %w", serial, err))
			continue
		}
		msg := nats.NewMsg("$KV." + Bucket + "." + string(serial))
		msg.Data = blob
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(e.rev, 10))
		ack, err := t.js.PublishMsgAsync(msg)
		if err != nil {
			errs = append(errs, fmt.Errorf("save battery state of %s: %w", serial, err))
			continue
		}
		ps = append(ps, pending{serial, e, ack})
	}
	for _, p := range ps {
		select {
		case pa := <-p.ack.Ok():
			p.e.rev, p.e.dirty, p.e.urgent, p.e.savedAt = pa.Sequence, false, false, now
		case err := <-p.ack.Err():
			if isWrongSequence(err) {
				// Changed by another instance: reload it next time.
				t.log.Info("battery state changed elsewhere; reloading", "serial", p.serial)
				delete(t.units, p.serial)
				continue
			}
			errs = append(errs, fmt.Errorf("save battery state of %s: %w", p.serial, err))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// publish puts events on the ALERTS stream, with the rule engine's
// subjects and dedup ids, and keeps the active-alerts bucket.
func (t *Tracker) publish(ctx context.Context, evs []rules.Event) error {
	return Publish(ctx, t.js, t.active, evs)
}

// Publish puts battery events on the ALERTS stream and updates the
// active-alerts bucket, as the rule engine does for its own.
func Publish(ctx context.Context, js jetstream.JetStream, active jetstream.KeyValue, evs []rules.Event) error {
	for i := range evs {
		ev := &evs[i]
		body, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		if _, err := js.Publish(ctx, engine.AlertSubject(ev.Serial, ev.Rule), body, jetstream.WithMsgID(ev.DedupID())); err != nil {
			return fmt.Errorf("publish %s event of %s/%s: %w", ev.Kind, ev.Serial, ev.Rule, err)
		}
		key := string(ev.Serial) + "." + ev.Rule
		switch ev.Kind {
		case rules.Firing, rules.Updated:
			if _, err := active.Put(ctx, key, body); err != nil {
				return fmt.Errorf("mark %s active: %w", key, err)
			}
		case rules.Resolved:
			if err := active.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("clear active %s: %w", key, err)
			}
		}
	}
	return nil
}
