package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WatchKV keeps a live view of a KV bucket until ctx is done: apply runs
// for every entry (nil value and deleted=true for a delete or purge),
// first the stored ones, then every change; caughtUp runs after the stored
// ones (on every restart of the watch; make it idempotent). A watch that
// ends on its own (the connection dropped) is restarted after a second.
// Views built this way never wait on I/O when read.
func WatchKV(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger,
	apply func(key string, value []byte, deleted bool), caughtUp func()) error {
	return WatchKVEntries(ctx, kv, log, func(e jetstream.KeyValueEntry) {
		apply(e.Key(), e.Value(), e.Operation() != jetstream.KeyValuePut)
	}, caughtUp)
}

// WatchKVEntries is WatchKV handing over whole entries (with their
// revisions, for a view that also applies its own writes at once).
func WatchKVEntries(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger,
	apply func(jetstream.KeyValueEntry), caughtUp func()) error {
	for {
		err := watchOnce(ctx, kv, apply, caughtUp)
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("kv watch ended, restarting", "bucket", kv.Bucket(), "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func watchOnce(ctx context.Context, kv jetstream.KeyValue, apply func(jetstream.KeyValueEntry), caughtUp func()) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				caughtUp()
				continue
			}
			apply(e)
		}
	}
}
