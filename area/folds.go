package area

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/rules"
)

// Folds answers the notify pipeline: is a unit alert's notice folded into
// an area alert, to be sent, or to wait for the evaluator's verdict? It
// reads the verdicts the Evaluator stores; any instance can answer.
type Folds struct {
	js    jetstream.JetStream
	cfg   Config
	units Units
	log   *slog.Logger
	now   func() time.Time

	// MaxWait: how long an event waits for its verdict (asking every
	// Poll) before it is notified anyway, the evaluator being down.
	MaxWait time.Duration
	Poll    time.Duration
	// HoldPoll: how often a held event is asked about again.
	HoldPoll time.Duration
	// Grace: how long past its end a hold waits for the evaluator to
	// release it before the pipeline sends it anyway.
	Grace time.Duration

	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewFolds builds the pipeline's side.
func NewFolds(js jetstream.JetStream, cfg Config, units Units, log *slog.Logger) (*Folds, error) {
	if js == nil || units == nil {
		return nil, errors.New("area folds: js and units are required")
	}
	if cfg.MinUnits == 0 {
		cfg = DefaultConfig()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Folds{js: js, cfg: cfg, units: units, log: log.With("component", "areas"), now: time.Now,
		MaxWait: 30 * time.Second, Poll: 5 * time.Millisecond, HoldPoll: time.Second, Grace: 30 * time.Second}, nil
}

func (f *Folds) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kv != nil {
		return f.kv, nil
	}
	kv, err := f.js.KeyValue(ctx, Bucket)
	if err != nil {
		return nil, err
	}
	f.kv = kv
	return kv, nil
}

// Fold says what to do with the notifications of ev, in the stream for
// waited: fold (the site's managers get the area alert instead),
// wait that long and ask again (no verdict yet), both (a hold: managers
// wait, owners do not), or neither (notify as usual).
func (f *Folds) Fold(ctx context.Context, ev *rules.Event, waited time.Duration) (fold bool, wait time.Duration, err error) {
	if ev.Area != "" || ev.Historical || ev.Silent || (ev.Rule != onBattery && ev.Rule != commLost) {
		return false, 0, nil
	}
	u, _ := f.units.Lookup(ev.Serial)
	if f.cfg.Of(ev.Serial, u.Site) == "" {
		return false, 0, nil
	}
	kv, err := f.bucket(ctx)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return false, 0, nil // no evaluator ever ran
	}
	if err != nil {
		return false, 0, fmt.Errorf("areas bucket: %w", err)
	}
	var v Verdict
	ent, err := kv.Get(ctx, VerdictKey(ev.Serial, ev.Rule))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
	case err != nil:
		return false, 0, fmt.Errorf("read verdict: %w", err)
	default:
		if err := json.Unmarshal(ent.Value(), &v); err != nil {
			return false, 0, fmt.Errorf("decode verdict: %w", err)
		}
	}
	known := v.Fingerprint == ev.Fingerprint
	switch ev.Kind {
	case rules.Reminder, rules.Updated:
		return known && v.Firing == Fold, 0, nil
	case rules.Resolved:
		if known && v.Resolved != "" {
			return v.Resolved == Fold, 0, nil
		}
		return f.await(ev, waited)
	}
	if !known {
		return f.await(ev, waited)
	}
	switch v.Firing {
	case Fold:
		return true, 0, nil
	case Hold:
		now := f.now()
		if now.Before(v.Until.Add(f.Grace)) {
			// Managers wait; owners are notified now.
			// Asked again every HoldPoll: the area alert may fire (and
			// fold it) long before the hold ends.
			return true, max(f.Poll, min(v.Until.Sub(now)+f.Poll, f.HoldPoll)), nil
		}
		f.log.Warn("hold past its end and not released; sent", "serial", ev.Serial, "rule", ev.Rule)
	}
	return false, 0, nil
}

// await asks the pipeline to come back while the evaluator has not yet
// judged ev, and lets it through once that took too long.
func (f *Folds) await(ev *rules.Event, waited time.Duration) (bool, time.Duration, error) {
	if waited < f.MaxWait {
		// Backing off: the verdict takes milliseconds when the
		// evaluator keeps up, and polling must not slow it further
		// when it does not.
		return false, min(max(f.Poll, waited/2), time.Second), nil
	}
	f.log.Warn("no area verdict in time; notified as usual", "serial", ev.Serial, "rule", ev.Rule, "kind", ev.Kind.String())
	return false, 0, nil
}
