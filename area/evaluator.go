// Package area turns a blackout into one message: it groups units into
// areas (a site, or an area a site tags its units with in the rules
// file's areas section) and raises site_outage when many units of an area
// go on battery together, site_unreachable when many go silent without
// going on battery first.
//
// An area spans the rule engine's partitions, so it is evaluated apart:
//
//	ALERTS (on_battery, comm_lost, low_battery of units)
//	  -> Evaluator   one instance at a time (pinned consumer "areas"),
//	                 state per area in the KV bucket upswatch_areas
//	  -> ALERTS      site_outage / site_unreachable events, serial = the
//	                 area's anchor unit (its first), Event.Area set, and
//	                 the active-alerts bucket like any alert
//	  -> verdicts    per unit alert in upswatch_areas (unit.<serial>.<rule>):
//	                 send, hold or fold
//
// The notify pipeline asks Folds before notifying a unit's on_battery or
// comm_lost (and their Resolved), and folds for the managers of the unit's
// site (who get the area alert) only; owners always get their own units'
// notices at once. For the managers, the first unit of an area is sent at
// once; a unit following it within the window is held until the area
// alert fires (then folded into it) or the window ends (then sent); once
// the area alert fires, its units' own notices are folded. low_battery,
// overload and every other rule are never folded.
package area

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/ready"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/ups"
)

// Names on the bus.
const (
	// Bucket holds area states (area.<id>) and verdicts
	// (unit.<serial>.<rule>).
	Bucket = bus.AreasBucket
	// Consumer is the evaluator's durable consumer of ALERTS.
	Consumer      = "areas"
	PriorityGroup = "areas"
)

// Units is what the area package needs of the registry.
type Units interface {
	Lookup(serial ups.Serial) (registry.Unit, bool)
	List() []registry.Unit
}

// EvaluatorConfig configures an Evaluator.
type EvaluatorConfig struct {
	Areas    Config
	Units    Units
	Replicas int
	Logger   *slog.Logger
	// TickEvery: how often holds, updates and resolutions are checked
	// (default 1s).
	TickEvery time.Duration
	// PinnedTTL: how long a silent owner keeps the areas before another
	// instance takes over (default 30s).
	PinnedTTL time.Duration
	Now       func() time.Time
}

// Evaluator keeps the areas' state and raises the area alerts. Several
// instances may run; one at a time evaluates.
type Evaluator struct {
	js    jetstream.JetStream
	cfg   EvaluatorConfig
	log   *slog.Logger
	ready ready.Signal

	// Only the Run goroutine touches these.
	kv      jetstream.KeyValue
	active  jetstream.KeyValue
	cons    jetstream.Consumer
	pin     string
	states  map[string]*State
	counts  map[string]int
	counted time.Time
}

// NewEvaluator validates cfg. It starts nothing.
func NewEvaluator(js jetstream.JetStream, cfg EvaluatorConfig) (*Evaluator, error) {
	if js == nil || cfg.Units == nil {
		return nil, errors.New("area evaluator: js and Units are required")
	}
	if cfg.Areas.MinUnits == 0 {
		cfg.Areas = DefaultConfig()
	}
	if err := cfg.Areas.validate(); err != nil {
		return nil, err
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.TickEvery <= 0 {
		cfg.TickEvery = time.Second
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
	return &Evaluator{js: js, cfg: cfg, log: cfg.Logger.With("component", "areas")}, nil
}

// Ready is closed while Run has its consumer.
func (e *Evaluator) Ready() <-chan struct{} { return e.ready.C() }

// EnsureBucket creates (or finds) the areas bucket.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "area states and the verdicts on unit alerts (send, hold, fold)",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// Run evaluates until ctx is done and returns after its goroutine ends.
func (e *Evaluator) Run(ctx context.Context) error {
	kv, err := EnsureBucket(ctx, e.js, e.cfg.Replicas)
	if err != nil {
		return fmt.Errorf("area evaluator: %w", err)
	}
	active, err := e.js.KeyValue(ctx, engine.ActiveBucket)
	if err != nil {
		return fmt.Errorf("area evaluator: bucket %s: %w", engine.ActiveBucket, err)
	}
	cons, err := e.js.CreateOrUpdateConsumer(ctx, engine.AlertsStream, jetstream.ConsumerConfig{
		Durable:     Consumer,
		Description: "area alerts (site_outage, site_unreachable) from unit alerts",
		FilterSubjects: []string{engine.AlertsSubjectPrefix + "*." + onBattery,
			engine.AlertsSubjectPrefix + "*." + commLost, engine.AlertsSubjectPrefix + "*." + lowBattery},
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        30 * time.Second,
		MaxAckPending:  256,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		PriorityGroups: []string{PriorityGroup},
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PinnedTTL:      e.cfg.PinnedTTL,
	})
	if err != nil {
		return fmt.Errorf("area evaluator: consumer %s: %w", Consumer, err)
	}
	it, err := cons.Messages(jetstream.PullPriorityGroup(PriorityGroup), jetstream.PullMaxMessages(64),
		jetstream.PullExpiry(min(e.cfg.PinnedTTL/2, 30*time.Second)))
	if err != nil {
		return fmt.Errorf("area evaluator: pull: %w", err)
	}
	e.kv, e.active, e.cons = kv, active, cons
	e.ready.Up()
	defer e.ready.Down()
	e.log.Info("area evaluator started")

	var wg sync.WaitGroup
	wg.Go(func() { e.loop(ctx, it) })
	<-ctx.Done()
	it.Drain()
	wg.Wait()
	return nil
}

// maxBatch bounds how many events are applied before the states they
// touched are saved and the events acked. It is MaxAckPending: every
// event the consumer lets out may sit in one batch.
const maxBatch = 256

func (e *Evaluator) loop(ctx context.Context, it jetstream.MessagesContext) {
	defer func() {
		if e.pin != "" {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if s, err := e.js.Stream(uctx, engine.AlertsStream); err == nil {
				_ = s.UnpinConsumer(uctx, Consumer, PriorityGroup)
			}
			e.release()
		}
	}()
	// The iterator is read on its own goroutine, so that the loop can
	// take, after the event it waited for, every one already delivered
	// without waiting for more: in a storm (a site's network dropping,
	// thousands of comm_lost at once) each state is saved once per batch
	// instead of once per event, and a lone event is not delayed.
	msgs := make(chan jetstream.Msg, maxBatch)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		defer close(msgs)
		for {
			msg, err := it.Next()
			switch {
			case errors.Is(err, jetstream.ErrMsgIteratorClosed):
				return
			case err != nil:
				// A missed heartbeat, or the consumer gone: the iterator
				// goes on (or is closed at stop); not in a busy loop.
				e.log.Debug("area events: next failed", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				_ = msg.Nak()
			}
		}
	})
	tick := time.NewTimer(e.cfg.TickEvery)
	defer tick.Stop()
	var b batch
	for {
		select {
		case <-tick.C:
			e.tick(ctx)
			tick.Reset(e.cfg.TickEvery)
			continue
		case msg, ok := <-msgs:
			if !ok {
				return
			}
			if ctx.Err() != nil {
				_ = msg.Nak()
				continue
			}
			b.add(msg)
		}
	more:
		for len(b.msgs) < maxBatch {
			select {
			case msg, ok := <-msgs:
				if !ok {
					break more
				}
				b.add(msg)
			default:
				break more
			}
		}
		e.handle(ctx, &b)
		b.reset()
	}
}

// batch is the events taken together: applied one by one, their verdicts
// and area alerts committed at once, the states they changed saved once
// at the end, then acked.
type batch struct {
	msgs  []jetstream.Msg
	dirty map[string]*State
}

func (b *batch) add(msg jetstream.Msg) { b.msgs = append(b.msgs, msg) }

func (b *batch) reset() {
	clear(b.msgs)
	b.msgs = b.msgs[:0]
	clear(b.dirty)
}

// own records that the server delivered us a message under pin; a new
// pin means what we hold may be stale.
func (e *Evaluator) own(ctx context.Context, pin string) error {
	if pin == e.pin && e.states != nil {
		return nil
	}
	e.release()
	states := map[string]*State{}
	keys, err := e.kv.ListKeysFiltered(ctx, "area.>")
	if err != nil {
		return fmt.Errorf("list area states: %w", err)
	}
	defer func() { _ = keys.Stop() }()
	for k := range keys.Keys() {
		st, err := e.load(ctx, k)
		if err != nil {
			return err
		}
		if st != nil {
			states[st.Area] = st
		}
	}
	e.pin, e.states = pin, states
	e.log.Info("areas taken", "pin", pin, "areas_active", len(states))
	return nil
}

func (e *Evaluator) release() {
	e.pin, e.states = "", nil
}

func (e *Evaluator) load(ctx context.Context, key string) (*State, error) {
	ent, err := e.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	st, err := decodeState(ent.Value())
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", key, err)
	}
	return st, nil
}

// handle applies a batch of events in order. Each event's verdicts and
// area alerts are committed as soon as it is applied (the notifier waits
// on the verdicts); the states are saved once the batch is through, and
// only then are the events acked. On a failure every event not acked
// goes back for redelivery, onto the states last saved: verdicts are
// rewritten the same and area events carry dedup ids.
func (e *Evaluator) handle(ctx context.Context, b *batch) {
	if b.dirty == nil {
		b.dirty = map[string]*State{}
	}
	done := 0 // msgs[:done] are acked or settled for good
	fail := func(what string, err error, attrs ...any) {
		if ctx.Err() == nil {
			e.log.Warn(what, append(attrs, "err", err, "events_redelivered", len(b.msgs)-done)...)
		}
		e.release() // reload from the bucket: the states in memory ran ahead
		for _, m := range b.msgs[done:] {
			_ = m.NakWithDelay(time.Second)
		}
	}
	var applied []jetstream.Msg // applied, to ack once their states are saved
	for i, msg := range b.msgs {
		if pin := msg.Headers().Get("Nats-Pin-Id"); pin != e.pin || e.states == nil {
			// Taken (again): what was applied so far is saved under the
			// pin it came with before the states are read anew.
			if err := e.save(ctx, b, applied); err != nil {
				fail("area states not saved; events left for redelivery", err)
				return
			}
			applied, done = applied[:0], i
			if err := e.own(ctx, pin); err != nil {
				fail("area states unavailable; events left for redelivery", err)
				return
			}
		}
		var ev rules.Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil || ev.Serial == "" {
			e.log.Error("alert event unreadable; skipped", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			continue
		}
		u, _ := e.cfg.Units.Lookup(ev.Serial)
		id := e.cfg.Areas.Of(ev.Serial, u.Site)
		if id == "" || ev.Area != "" {
			applied = append(applied, msg)
			continue
		}
		st := e.states[id]
		if st == nil {
			st = NewState(id)
			e.states[id] = st
		}
		now := e.cfg.Now()
		out, verdicts := st.Apply(&e.cfg.Areas, &ev, e.count(id, now), now)
		if err := e.publish(ctx, out, verdicts); err != nil {
			fail("area alert not committed; events left for redelivery", err, "area", id)
			return
		}
		b.dirty[id] = st
		applied = append(applied, msg)
	}
	if err := e.save(ctx, b, applied); err != nil {
		fail("area states not saved; events left for redelivery", err)
	}
}

// save stores the states a batch changed, then acks the events applied
// to them.
func (e *Evaluator) save(ctx context.Context, b *batch, applied []jetstream.Msg) error {
	for id, st := range b.dirty {
		if err := e.saveState(ctx, st); err != nil {
			return err
		}
		if st.Idle() {
			delete(e.states, id)
		}
		delete(b.dirty, id)
	}
	for _, m := range applied {
		if err := m.Ack(); err != nil && ctx.Err() == nil {
			e.log.Warn("area event ack failed", "err", err)
		}
	}
	return nil
}

// count is how many registered units an area has (recounted at most
// every second).
func (e *Evaluator) count(area string, now time.Time) int {
	if e.counts == nil || now.Sub(e.counted) > time.Second || now.Before(e.counted) {
		e.counts = map[string]int{}
		for _, u := range e.cfg.Units.List() {
			if id := e.cfg.Areas.Of(u.Serial, u.Site); id != "" {
				e.counts[id]++
			}
		}
		e.counted = now
	}
	return e.counts[area]
}

// commit stores the verdicts, publishes the area events (and marks them
// in the active-alerts bucket), then saves the state.
func (e *Evaluator) commit(ctx context.Context, st *State, out []rules.Event, verdicts []Verdict) error {
	if err := e.publish(ctx, out, verdicts); err != nil {
		return err
	}
	return e.saveState(ctx, st)
}

// publish stores the verdicts and publishes the area events, marking
// them in the active-alerts bucket.
func (e *Evaluator) publish(ctx context.Context, out []rules.Event, verdicts []Verdict) error {
	for _, v := range verdicts {
		b, _ := json.Marshal(v)
		if _, err := e.kv.Put(ctx, VerdictKey(v.Serial, v.Rule), b); err != nil {
			return fmt.Errorf("store verdict on %s/%s: %w", v.Serial, v.Rule, err)
		}
	}
	for i := range out {
		ev := &out[i]
		body, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode area event: %w", err)
		}
		if _, err := e.js.Publish(ctx, engine.AlertSubject(ev.Serial, ev.Rule), body, jetstream.WithMsgID(ev.DedupID())); err != nil {
			return fmt.Errorf("publish %s %s of area %s: %w", ev.Rule, ev.Kind, ev.Area, err)
		}
		key := string(ev.Serial) + "." + ev.Rule
		if ev.Kind == rules.Resolved {
			if err := e.active.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("clear active %s: %w", key, err)
			}
		} else if _, err := e.active.Put(ctx, key, body); err != nil {
			return fmt.Errorf("mark %s active: %w", key, err)
		}
		e.log.Info("area alert", "area", ev.Area, "rule", ev.Rule, "kind", ev.Kind.String(),
			"severity", ev.Severity.String(), "units", len(ev.Units))
	}
	return nil
}

// saveState stores an area's state, or removes it once idle.
func (e *Evaluator) saveState(ctx context.Context, st *State) error {
	key := stateKey(st.Area)
	if st.Idle() {
		if err := e.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("clear area state %s: %w", st.Area, err)
		}
		return nil
	}
	b, err := encodeState(st)
	if err != nil {
		return fmt.Errorf("encode area state %s: %w", st.Area, err)
	}
	if _, err := e.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("save area state %s (%d bytes): %w", st.Area, len(b), err)
	}
	return nil
}

// tick runs the areas' timers while this instance owns them.
func (e *Evaluator) tick(ctx context.Context) {
	if e.pin == "" {
		return
	}
	info, err := e.cons.Info(ctx)
	if err != nil {
		return
	}
	pinned := ""
	for _, g := range info.PriorityGroups {
		if g.Group == PriorityGroup {
			pinned = g.PinnedClientID
		}
	}
	if pinned != e.pin {
		e.log.Info("areas released", "pinned", pinned)
		e.release()
		return
	}
	if info.NumPending != 0 {
		// Caught up first: a resolution must count the units whose
		// return is still in the stream.
		return
	}
	now := e.cfg.Now()
	for id, st := range e.states {
		out, verdicts := st.Tick(&e.cfg.Areas, now)
		if len(out) == 0 && len(verdicts) == 0 {
			continue
		}
		if err := e.commit(ctx, st, out, verdicts); err != nil {
			if ctx.Err() == nil {
				e.log.Warn("area tick not committed; retried", "area", id, "err", err)
			}
			e.release()
			return
		}
		if st.Idle() {
			delete(e.states, id)
		}
	}
}

// VerdictKey is the bucket key of the verdict on a unit's alert of rule.
func VerdictKey(serial ups.Serial, rule string) string {
	return "unit." + string(serial) + "." + rule
}

func stateKey(area string) string {
	return "area." + base64.RawURLEncoding.EncodeToString([]byte(area))
}
