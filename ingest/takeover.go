package ingest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
)

// Session takeover.
//
// With a shared subscription, Mosquitto (2.0) assigns each message to one
// session of the group and, while that persistent session is offline,
// queues it there: a dead instance's share waits until it returns. So each
// instance holds a lease on its MQTT client id in the bucket LeaseBucket,
// renewed every LeaseRenew. When a lease has expired, another instance
// claims it (compare-and-set), connects with that client id (taking the
// session over, queue included), runs what arrives through its own ingest
// (acked only once on the bus), unsubscribes the session from the group so
// the broker assigns it nothing more, disconnects and marks the lease
// drained. If the owner comes back first, its connection takes the session
// back (the broker closes the survivor's) and its lease is live again.

// LeaseBucket holds one lease per ingest client id.
const LeaseBucket = bus.IngestLeasesBucket

// lease is the value of a client id's key.
type lease struct {
	// Owner is the client id whose session this is.
	Owner string `json:"owner"`
	// Holder is the instance connected with it: the owner, a survivor
	// draining it, or "" when nobody is (stopped cleanly, or drained).
	Holder string `json:"holder,omitempty"`
	// Expires: past it, the holder is presumed dead.
	Expires time.Time `json:"expires"`
	// Unsubscribed: the session left the shared group (a clean stop, or a
	// completed drain); the broker queues nothing for it.
	Unsubscribed bool `json:"unsubscribed,omitempty"`
}

func leaseKey(clientID string) string {
	return "session." + base64.RawURLEncoding.EncodeToString([]byte(clientID))
}

// Takeover configures session takeover (Config.Takeover).
type Takeover struct {
	// Leases is the lease bucket (EnsureLeases).
	Leases jetstream.KeyValue
	// LeaseTTL: a lease not renewed for this long has expired (default
	// 15s); LeaseRenew: how often leases are renewed and others checked
	// (default LeaseTTL/3).
	LeaseTTL   time.Duration
	LeaseRenew time.Duration
	// Idle: a taken-over session is drained once no message came for this
	// long (default 2s).
	Idle time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// EnsureLeases creates (or opens) the lease bucket.
func EnsureLeases(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: LeaseBucket,
		Description: "leases of the ingest instances on their MQTT sessions", History: 1,
		Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", LeaseBucket, err)
	}
	return kv, nil
}

func (t *Takeover) withDefaults() {
	if t.LeaseTTL <= 0 {
		t.LeaseTTL = 15 * time.Second
	}
	if t.LeaseRenew <= 0 {
		t.LeaseRenew = t.LeaseTTL / 3
	}
	if t.Idle <= 0 {
		t.Idle = 2 * time.Second
	}
	if t.Now == nil {
		t.Now = time.Now
	}
}

// leases runs the lease loop until ctx is done: renew ours, take over
// expired ones. It returns after every drain it started has ended; then
// it records that this instance stopped cleanly when clean is set by the
// caller (see release).
func (in *Ingest) leases(ctx context.Context) {
	tk := in.cfg.Takeover
	var drains sync.WaitGroup
	draining := map[string]bool{}
	var mu sync.Mutex
	defer drains.Wait()
	for {
		if err := in.renew(ctx); err != nil && ctx.Err() == nil {
			in.log.Warn("renewing the session lease failed", "err", err)
		}
		for _, l := range in.expired(ctx) {
			mu.Lock()
			busy := draining[l.owner]
			mu.Unlock()
			if busy {
				continue
			}
			if !in.claim(ctx, l) {
				continue
			}
			mu.Lock()
			draining[l.owner] = true
			mu.Unlock()
			drains.Go(func() {
				defer func() { mu.Lock(); delete(draining, l.owner); mu.Unlock() }()
				in.drain(ctx, l)
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(tk.LeaseRenew):
		}
	}
}

// renew writes our own lease.
func (in *Ingest) renew(ctx context.Context) error {
	tk := in.cfg.Takeover
	b, err := json.Marshal(lease{Owner: in.cfg.ClientID, Holder: in.cfg.ClientID, Expires: tk.Now().Add(tk.LeaseTTL)})
	if err != nil {
		return fmt.Errorf("encode lease: %w", err)
	}
	if _, err := tk.Leases.Put(ctx, leaseKey(in.cfg.ClientID), b); err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	return nil
}

// release records, on a clean stop, that our session left the group.
func (in *Ingest) release(ctx context.Context) {
	tk := in.cfg.Takeover
	b, err := json.Marshal(lease{Owner: in.cfg.ClientID, Expires: tk.Now(), Unsubscribed: true})
	if err == nil {
		_, err = tk.Leases.Put(ctx, leaseKey(in.cfg.ClientID), b)
	}
	if err != nil {
		in.log.Warn("recording the clean stop in the session lease failed; another instance will check the session", "err", err)
	}
}

// othersLive tells whether another instance holds a live lease (its own
// or one it is draining): then a clean stop leaves the group, and the
// broker gives those instances this one's share. When the leases cannot
// be read it answers false: staying subscribed only delays this share
// (it is drained once the lease expires), leaving with no one left would
// lose it.
func (in *Ingest) othersLive(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ls, err := in.readLeases(ctx)
	if err != nil {
		in.log.Warn("listing session leases at stop failed; staying subscribed", "err", err)
		return false
	}
	now := in.cfg.Takeover.Now()
	for _, l := range ls {
		if l.Holder != "" && l.Holder != in.cfg.ClientID && !l.Unsubscribed && now.Before(l.Expires) {
			return true
		}
	}
	return false
}

// storedLease is a lease as read, with its key and revision.
type storedLease struct {
	lease
	key string
	rev uint64
}

// readLeases reads every session lease. One deleted meanwhile, or not
// readable now (the bus away), is left for the next round; one that does
// not decode is logged and skipped.
func (in *Ingest) readLeases(ctx context.Context) ([]storedLease, error) {
	kv := in.cfg.Takeover.Leases
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = keys.Stop() }()
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	var out []storedLease
	for _, k := range names {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var l lease
		if err := json.Unmarshal(e.Value(), &l); err != nil {
			in.log.Warn("session lease unreadable; ignored", "key", k, "err", err)
			continue
		}
		out = append(out, storedLease{lease: l, key: k, rev: e.Revision()})
	}
	return out, nil
}

// expiredLease is a lease found expired, with its revision.
type expiredLease struct {
	key, owner string
	rev        uint64
	expired    time.Time
}

// expired lists the other instances' sessions whose lease has expired
// while still subscribed.
func (in *Ingest) expired(ctx context.Context) []expiredLease {
	ls, err := in.readLeases(ctx)
	if err != nil {
		if ctx.Err() == nil {
			in.log.Warn("listing session leases failed", "err", err)
		}
		return nil
	}
	var out []expiredLease
	now := in.cfg.Takeover.Now()
	for _, l := range ls {
		if l.key == leaseKey(in.cfg.ClientID) || l.Unsubscribed || now.Before(l.Expires) || l.Owner == "" {
			continue
		}
		out = append(out, expiredLease{key: l.key, owner: l.Owner, rev: l.rev, expired: l.Expires})
	}
	return out
}

// claim makes us the holder of an expired lease, unless someone changed
// it meanwhile.
func (in *Ingest) claim(ctx context.Context, l expiredLease) bool {
	tk := in.cfg.Takeover
	b, err := json.Marshal(lease{Owner: l.owner, Holder: in.cfg.ClientID, Expires: tk.Now().Add(tk.LeaseTTL)})
	if err != nil {
		return false
	}
	// Fails when another instance claimed it, or its owner renewed it.
	_, err = tk.Leases.Update(ctx, l.key, b, l.rev)
	return err == nil
}

// errTakenBack: the session's owner (or another claimant) took it back.
var errTakenBack = errors.New("session taken back")

// drain connects with the dead instance's client id, runs its queued
// messages through this ingest, unsubscribes it from the group and marks
// the lease.
func (in *Ingest) drain(ctx context.Context, l expiredLease) {
	tk := in.cfg.Takeover
	log := in.log.With("session", l.owner)
	claimed := tk.Now()
	var last atomic.Int64 // unix nanos of the last message
	var received, pending atomic.Int64
	lost := make(chan error, 1)
	opts := paho.NewClientOptions().AddBroker(in.cfg.BrokerURL).SetClientID(l.owner).
		SetUsername(in.cfg.Username).SetPassword(in.cfg.Password).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).SetAutoAckDisabled(true).SetOrderMatters(true).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) {
			received.Add(1)
			in.m.drained.Inc()
			last.Store(time.Now().UnixNano())
			in.gate.RLock()
			defer in.gate.RUnlock()
			if in.closed {
				return
			}
			pending.Add(1)
			in.accept(msg.Topic(), msg.Payload(), func(stored bool) {
				if stored {
					msg.Ack()
				}
				pending.Add(-1)
			})
		})
	if bufferable(in.cfg.BrokerURL) {
		opts.SetCustomOpenConnectionFn(openBuffered)
	}
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		log.Warn("session takeover: connect failed; retried after the claim expires", "err", tok.Error())
		return
	}
	connected := time.Now()
	last.Store(connected.UnixNano())
	in.m.takeovers.Inc()
	log.Info("session taken over", "lease_expired", l.expired, "after_expiry", claimed.Sub(l.expired).Round(time.Millisecond).String())
	defer c.Disconnect(250)

	// idle waits until no message came for Idle and every one received is
	// settled, renewing the claim meanwhile.
	idle := func() error {
		renew := time.Now()
		for {
			quiet := time.Since(time.Unix(0, last.Load()))
			if quiet >= tk.Idle && pending.Load() == 0 {
				return nil
			}
			if time.Since(renew) >= tk.LeaseRenew {
				if !in.extend(ctx, l) {
					return errTakenBack
				}
				renew = time.Now()
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-lost:
				return fmt.Errorf("%w: %v", errTakenBack, err)
			case <-time.After(min(tk.Idle/10, 100*time.Millisecond)):
			}
		}
	}
	if err := idle(); err != nil {
		log.Info("session takeover ended before the drain", "err", err, "messages", received.Load())
		return
	}
	if tok := c.Unsubscribe(in.filters()...); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		log.Warn("session takeover: unsubscribe failed; retried after the claim expires", "err", tok.Error())
		return
	}
	// What the broker had queued before the unsubscribe still comes.
	last.Store(time.Now().UnixNano())
	if err := idle(); err != nil {
		log.Info("session takeover ended after the unsubscribe", "err", err, "messages", received.Load())
		return
	}
	b, err := json.Marshal(lease{Owner: l.owner, Expires: tk.Now(), Unsubscribed: true})
	if err == nil {
		_, err = tk.Leases.Put(ctx, l.key, b)
	}
	if err != nil {
		log.Warn("session drained but not recorded; it is checked again", "err", err)
	}
	log.Info("session drained and unsubscribed", "messages", received.Load(),
		"drain", time.Since(connected).Round(time.Millisecond).String(),
		"since_lease_expiry", tk.Now().Sub(l.expired).Round(time.Millisecond).String())
}

// extend renews our claim on a lease being drained; false when someone
// else holds it now.
func (in *Ingest) extend(ctx context.Context, l expiredLease) bool {
	tk := in.cfg.Takeover
	e, err := tk.Leases.Get(ctx, l.key)
	if err != nil {
		return false
	}
	var cur lease
	if err := json.Unmarshal(e.Value(), &cur); err != nil || cur.Holder != in.cfg.ClientID {
		return false
	}
	cur.Expires = tk.Now().Add(tk.LeaseTTL)
	b, err := json.Marshal(cur)
	if err != nil {
		return false
	}
	_, err = tk.Leases.Update(ctx, l.key, b, e.Revision())
	return err == nil
}
