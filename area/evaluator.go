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

	"github.com/nats-io/nats.go"
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
	nextTick := time.Now().Add(e.cfg.TickEvery)
	for {
		wait := time.Until(nextTick)
		if wait <= 0 {
			e.tick(ctx)
			nextTick = time.Now().Add(e.cfg.TickEvery)
			continue
		}
		msg, err := it.Next(jetstream.NextMaxWait(wait))
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return
		case ctx.Err() != nil:
			if err == nil {
				_ = msg.Nak()
			}
			if errors.Is(err, nats.ErrTimeout) {
				return
			}
			continue
		case err != nil:
			continue // timeout (tick due) or a missed heartbeat
		}
		e.handle(ctx, msg)
	}
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
	var st State
	if err := json.Unmarshal(ent.Value(), &st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", key, err)
	}
	st.fix()
	return &st, nil
}

func (e *Evaluator) handle(ctx context.Context, msg jetstream.Msg) {
	if err := e.own(ctx, msg.Headers().Get("Nats-Pin-Id")); err != nil {
		e.log.Warn("area states unavailable; event left for redelivery", "err", err)
		e.release()
		_ = msg.NakWithDelay(time.Second)
		return
	}
	var ev rules.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil || ev.Serial == "" {
		e.log.Error("alert event unreadable; skipped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	u, _ := e.cfg.Units.Lookup(ev.Serial)
	id := e.cfg.Areas.Of(ev.Serial, u.Site)
	if id == "" || ev.Area != "" {
		_ = msg.Ack()
		return
	}
	st := e.states[id]
	if st == nil {
		st = NewState(id)
	}
	now := e.cfg.Now()
	out, verdicts := st.Apply(&e.cfg.Areas, &ev, e.count(id, now), now)
	if err := e.commit(ctx, st, out, verdicts); err != nil {
		if ctx.Err() == nil {
			e.log.Warn("area alert not committed; event left for redelivery", "area", id, "err", err)
		}
		e.release() // reload from the bucket: the state in memory ran ahead
		_ = msg.NakWithDelay(time.Second)
		return
	}
	e.states[id] = st
	if err := msg.Ack(); err != nil && ctx.Err() == nil {
		e.log.Warn("area event ack failed", "err", err)
	}
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
	key := stateKey(st.Area)
	if st.Idle() {
		if err := e.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("clear area state %s: %w", st.Area, err)
		}
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode area state: %w", err)
	}
	if _, err := e.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("save area state %s: %w", st.Area, err)
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
