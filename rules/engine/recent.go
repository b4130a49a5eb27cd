package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/rules"
)

// Recent returns the alert events of every unit published since since,
// newest first, at most limit of those keep accepts (nil: all). It reads
// the stream from that time on, so its cost is the events of the period,
// not of the whole history.
func (a *Alerts) Recent(ctx context.Context, since time.Time, limit int, keep func(rules.Event) bool) ([]rules.Event, error) {
	cons, err := a.js.OrderedConsumer(ctx, AlertsStream, jetstream.OrderedConsumerConfig{
		// A reader, done in moments: the server drops it soon after (the
		// default keeps each for 5 minutes, and a busy console or a polling
		// test would pile them up to the consumer limit).
		InactiveThreshold: 10 * time.Second,
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return []rules.Event{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("recent alerts: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("recent alerts: %w", err)
	}
	out := []rules.Event{}
	for left := info.NumPending; left > 0; {
		batch, err := cons.Fetch(int(min(left, 512)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("recent alerts: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var ev rules.Event
			if err := json.Unmarshal(msg.Data(), &ev); err != nil || (keep != nil && !keep(ev)) {
				continue
			}
			out = append(out, ev)
			if limit > 0 && len(out) > 2*limit {
				out = append(out[:0], out[len(out)-limit:]...)
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("recent alerts: %w", err)
		}
		if n == 0 {
			break
		}
		left -= uint64(n)
	}
	slices.SortStableFunc(out, func(x, y rules.Event) int { return y.At.Compare(x.At) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
