package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/ups"
)

// RevocationsBucket is the KV bucket of revoked device certificates,
// keyed by serial.
const RevocationsBucket = bus.RevocationsBucket

// Revocations lists revoked device certificates: for a serial, every
// certificate valid from (NotBefore) at or before the revocation time.
// A certificate issued afterwards (a replacement) is good again. Every
// instance keeps a live view through a KV watch, so a revocation reaches
// every broker at once, and OnRevoke lets the broker end sessions.
type Revocations struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu       sync.RWMutex
	at       map[ups.Serial]time.Time
	onRevoke func(ups.Serial, time.Time)

	ready     chan struct{}
	readyOnce sync.Once
}

type revocation struct {
	RevokedAt time.Time `json:"revoked_at"`
}

// OpenRevocations creates the bucket if needed; Run keeps the view.
func OpenRevocations(ctx context.Context, js jetstream.JetStream, o Options) (*Revocations, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      RevocationsBucket,
		Description: "revoked device certificates",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("revocations bucket %s: %w", RevocationsBucket, err)
	}
	return &Revocations{kv: kv, log: o.Logger, at: map[ups.Serial]time.Time{}, ready: make(chan struct{})}, nil
}

// OnRevoke sets fn, called (not under a lock) when a serial's revocation
// time moves forward in the view.
func (r *Revocations) OnRevoke(fn func(serial ups.Serial, at time.Time)) {
	r.mu.Lock()
	r.onRevoke = fn
	r.mu.Unlock()
}

// Run watches the bucket until ctx is done.
func (r *Revocations) Run(ctx context.Context) error {
	return bus.WatchKV(ctx, r.kv, r.log, r.apply, func() { r.readyOnce.Do(func() { close(r.ready) }) })
}

// Ready is closed when the view has caught up with the bucket.
func (r *Revocations) Ready() <-chan struct{} { return r.ready }

func (r *Revocations) apply(key string, value []byte, deleted bool) {
	serial := ups.Serial(key)
	if deleted {
		r.mu.Lock()
		delete(r.at, serial)
		r.mu.Unlock()
		return
	}
	var v revocation
	if err := json.Unmarshal(value, &v); err != nil {
		r.log.Error("revocation entry unreadable; ignored", "serial", serial, "err", err)
		return
	}
	r.set(serial, v.RevokedAt)
}

func (r *Revocations) set(serial ups.Serial, at time.Time) {
	r.mu.Lock()
	prev, had := r.at[serial]
	changed := !had || at.After(prev)
	if changed {
		r.at[serial] = at
	}
	fn := r.onRevoke
	r.mu.Unlock()
	if changed && fn != nil {
		fn(serial, at)
	}
}

// RevokedAt returns the revocation time of serial's certificates.
func (r *Revocations) RevokedAt(serial ups.Serial) (time.Time, bool) {
	r.mu.RLock()
	at, ok := r.at[serial]
	r.mu.RUnlock()
	return at, ok
}

// Revoke revokes every certificate of serial issued up to now (to the
// second: certificates carry whole seconds) and returns that time.
func (r *Revocations) Revoke(ctx context.Context, serial ups.Serial) (time.Time, error) {
	if _, err := ups.ParseSerial(string(serial)); err != nil {
		return time.Time{}, err
	}
	at := time.Now().UTC().Truncate(time.Second)
	data, err := json.Marshal(revocation{RevokedAt: at})
	if err != nil {
		return time.Time{}, fmt.Errorf("encode revocation: %w", err)
	}
	if _, err := r.kv.Put(ctx, string(serial), data); err != nil {
		return time.Time{}, fmt.Errorf("store revocation of %s: %w", serial, err)
	}
	// In force here at once; the watch brings it to the other instances.
	r.set(serial, at)
	return at, nil
}
