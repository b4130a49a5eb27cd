package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// Alerts answers queries on the alert timeline (the ALERTS stream) and on
// what is firing now (the upswatch_alerts_active bucket). It needs no
// engine: any instance can answer, owning partitions or not.
type Alerts struct {
	js    jetstream.JetStream
	units Units
}

// NewAlerts builds the query side.
func NewAlerts(js jetstream.JetStream, units Units) *Alerts {
	return &Alerts{js: js, units: units}
}

// Timeline returns the events of serial whose time (Event.At) is in
// [from, to), oldest first; with more than limit, the latest limit
// (limit <= 0: no limit). A unit without events, or a server without
// the ALERTS stream yet, gives an empty list.
func (a *Alerts) Timeline(ctx context.Context, serial ups.Serial, from, to time.Time, limit int) ([]rules.Event, error) {
	cons, err := a.js.OrderedConsumer(ctx, AlertsStream, jetstream.OrderedConsumerConfig{
		// A reader, done in moments: the server drops it soon after (the
		// default keeps each for 5 minutes, and a busy console or a polling
		// test would pile them up to the consumer limit).
		InactiveThreshold: 10 * time.Second,
		FilterSubjects:    []string{AlertsSubjectPrefix + string(serial) + ".>"},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return []rules.Event{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("alert timeline of %s: %w", serial, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("alert timeline of %s: %w", serial, err)
	}
	out := []rules.Event{}
	left := info.NumPending
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("alert timeline of %s: %w", serial, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var ev rules.Event
			if err := json.Unmarshal(msg.Data(), &ev); err != nil {
				continue // not ours to fail the whole timeline on
			}
			if ev.At.Before(from) || !ev.At.Before(to) {
				continue
			}
			out = append(out, ev)
			if limit > 0 && len(out) > 2*limit {
				out = append(out[:0], out[len(out)-limit:]...)
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("alert timeline of %s: %w", serial, err)
		}
		if n == 0 {
			break
		}
		left -= uint64(n)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	// The stream's order is publication order; a replayed backlog may
	// publish out of event time.
	slices.SortStableFunc(out, func(x, y rules.Event) int { return x.At.Compare(y.At) })
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// Active returns the alerts firing now (their latest Firing or Updated
// event), of units of site ("" = all sites), ordered by serial and rule.
func (a *Alerts) Active(ctx context.Context, site string) ([]rules.Event, error) {
	kv, err := a.js.KeyValue(ctx, ActiveBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return []rules.Event{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("active alerts: %w", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("active alerts: %w", err)
	}
	defer func() { _ = w.Stop() }()
	out := []rules.Event{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ent := <-w.Updates():
			if ent == nil { // initial values done
				slices.SortFunc(out, func(x, y rules.Event) int {
					if x.Serial != y.Serial {
						return strings.Compare(string(x.Serial), string(y.Serial))
					}
					return strings.Compare(x.Rule, y.Rule)
				})
				return out, nil
			}
			var ev rules.Event
			if err := json.Unmarshal(ent.Value(), &ev); err != nil {
				continue
			}
			if site != "" {
				u, ok := a.units.Lookup(ev.Serial)
				if !ok || u.Site != site {
					continue
				}
			}
			out = append(out, ev)
		}
	}
}
