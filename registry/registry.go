// Package registry holds the registered UPS units in a NATS KV bucket and
// keeps a live in-memory view of them through a KV watch, so validating a
// reading or authenticating a device never waits on I/O.
//
// Every instance of upswatch runs its own view; writes go to the bucket
// and reach all views through the watch within milliseconds.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/ups"
)

// Bucket is the KV bucket of units, keyed by serial.
const Bucket = bus.UnitsBucket

// Errors callers test with errors.Is.
var (
	ErrAlreadyRegistered = errors.New("unit already registered")
	ErrNotFound          = errors.New("unit not registered")
	ErrInvalidName       = errors.New("invalid unit name or site")
)

// Unit is a registered UPS. The device's MQTT password is never stored,
// only a salted hash of it.
type Unit struct {
	Serial    ups.Serial `json:"serial"`
	Name      string     `json:"name"`
	Site      string     `json:"site"`
	CreatedAt time.Time  `json:"created_at"`
	// PasswordSalt and PasswordHash verify the device's MQTT password
	// (SHA-256: the password is 128 random bits, so a slow KDF adds
	// nothing but CPU per connect).
	PasswordSalt []byte `json:"password_salt"`
	PasswordHash []byte `json:"password_hash"`
}

// Registry is the units bucket plus the live view.
type Registry struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu    sync.RWMutex
	units map[ups.Serial]*Unit
	// onChange hears of units whose credentials stopped being valid.
	onChange func(ups.Serial)

	ready     chan struct{}
	readyOnce sync.Once
}

// Options for Open.
type Options struct {
	Replicas int
	Logger   *slog.Logger
}

// Open creates the bucket if needed. It starts nothing: Run keeps the view.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Registry, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "registered UPS units",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("registry bucket %s: %w", Bucket, err)
	}
	return &Registry{kv: kv, log: o.Logger, units: map[ups.Serial]*Unit{}, ready: make(chan struct{})}, nil
}

// Run watches the bucket and keeps the view current until ctx is done.
// Ready is closed once the view holds every unit stored at start.
func (r *Registry) Run(ctx context.Context) error {
	return bus.WatchKV(ctx, r.kv, r.log, r.apply, func() { r.readyOnce.Do(func() { close(r.ready) }) })
}

func (r *Registry) apply(key string, value []byte, deleted bool) {
	serial := ups.Serial(key)
	if deleted {
		r.set(serial, nil)
		return
	}
	var u Unit
	if err := json.Unmarshal(value, &u); err != nil {
		r.log.Error("registry entry unreadable; unit ignored", "serial", serial, "err", err)
		return
	}
	r.set(serial, &u)
}

// set puts u in the view (nil: removes serial) and tells onChange when
// credentials the view accepted stop being valid: the unit is gone or its
// password changed.
func (r *Registry) set(serial ups.Serial, u *Unit) {
	r.mu.Lock()
	old := r.units[serial]
	if u == nil {
		delete(r.units, serial)
	} else {
		r.units[serial] = u
	}
	fn := r.onChange
	r.mu.Unlock()
	if fn != nil && old != nil && (u == nil || subtle.ConstantTimeCompare(old.PasswordHash, u.PasswordHash) != 1) {
		fn(serial)
	}
}

// OnCredentialsChange sets fn, called (not under a lock) when a unit
// leaves the view or its password changes, here or on another instance:
// the broker ends the device's sessions.
func (r *Registry) OnCredentialsChange(fn func(serial ups.Serial)) {
	r.mu.Lock()
	r.onChange = fn
	r.mu.Unlock()
}

// Ready is closed when the view has caught up with the bucket.
func (r *Registry) Ready() <-chan struct{} { return r.ready }

// Lookup returns a unit from the view.
func (r *Registry) Lookup(serial ups.Serial) (Unit, bool) {
	r.mu.RLock()
	u, ok := r.units[serial]
	r.mu.RUnlock()
	if !ok {
		return Unit{}, false
	}
	return *u, true
}

// SiteOf returns a unit's site: what the rule engine asks per reading,
// without copying the whole Unit as Lookup does.
func (r *Registry) SiteOf(serial ups.Serial) (string, bool) {
	r.mu.RLock()
	u, ok := r.units[serial]
	var site string
	if ok {
		site = u.Site
	}
	r.mu.RUnlock()
	return site, ok
}

// Registered reports whether serial is registered. It is the ingest's
// per-message check: a map read under a read lock.
func (r *Registry) Registered(serial ups.Serial) bool {
	r.mu.RLock()
	_, ok := r.units[serial]
	r.mu.RUnlock()
	return ok
}

// Authenticate checks a device's MQTT credentials.
func (r *Registry) Authenticate(serial ups.Serial, password string) bool {
	r.mu.RLock()
	u, ok := r.units[serial]
	r.mu.RUnlock()
	if !ok {
		return false
	}
	got := hashPassword(u.PasswordSalt, password)
	return subtle.ConstantTimeCompare(got, u.PasswordHash) == 1
}

// List returns the units in the view, sorted by serial.
func (r *Registry) List() []Unit {
	r.mu.RLock()
	out := make([]Unit, 0, len(r.units))
	for _, u := range r.units {
		out = append(out, *u)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Unit) int { return strings.Compare(string(a.Serial), string(b.Serial)) })
	return out
}

// Add registers a unit and returns it with the device's new MQTT password,
// which is shown this once and never stored.
func (r *Registry) Add(ctx context.Context, serial ups.Serial, name, site string) (Unit, string, error) {
	if _, err := ups.ParseSerial(string(serial)); err != nil {
		return Unit{}, "", err
	}
	if err := checkLabel("name", name); err != nil {
		return Unit{}, "", err
	}
	if err := checkLabel("site", site); err != nil {
		return Unit{}, "", err
	}
	password, salt := randomString(16), randomBytes(16)
	u := Unit{
		Serial:       serial,
		Name:         name,
		Site:         site,
		CreatedAt:    time.Now().UTC().Truncate(time.Second),
		PasswordSalt: salt,
		PasswordHash: hashPassword(salt, password),
	}
	data, err := json.Marshal(u)
	if err != nil {
		return Unit{}, "", fmt.Errorf("encode unit: %w", err)
	}
	if _, err := r.kv.Create(ctx, string(serial), data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Unit{}, "", fmt.Errorf("%w: %s", ErrAlreadyRegistered, serial)
		}
		return Unit{}, "", fmt.Errorf("store unit %s: %w", serial, err)
	}
	// Make the unit usable here at once; the watch confirms it.
	r.set(serial, &u)
	return u, password, nil
}

// RotatePassword gives the unit a new MQTT password, returned this once;
// the old one stops working at once on every instance (OnCredentialsChange).
func (r *Registry) RotatePassword(ctx context.Context, serial ups.Serial) (Unit, string, error) {
	e, err := r.kv.Get(ctx, string(serial))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Unit{}, "", fmt.Errorf("%w: %s", ErrNotFound, serial)
		}
		return Unit{}, "", fmt.Errorf("look up unit %s: %w", serial, err)
	}
	var u Unit
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		return Unit{}, "", fmt.Errorf("decode unit %s: %w", serial, err)
	}
	password, salt := randomString(16), randomBytes(16)
	u.PasswordSalt, u.PasswordHash = salt, hashPassword(salt, password)
	data, err := json.Marshal(u)
	if err != nil {
		return Unit{}, "", fmt.Errorf("encode unit: %w", err)
	}
	// Update at the revision read: a concurrent change or removal fails
	// this one rather than being overwritten.
	if _, err := r.kv.Update(ctx, string(serial), data, e.Revision()); err != nil {
		return Unit{}, "", fmt.Errorf("store new password of %s: %w", serial, err)
	}
	r.set(serial, &u)
	return u, password, nil
}

// Remove deregisters a unit (purging its key, so no history of it stays
// in the bucket).
func (r *Registry) Remove(ctx context.Context, serial ups.Serial) error {
	if _, err := r.kv.Get(ctx, string(serial)); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, serial)
		}
		return fmt.Errorf("look up unit %s: %w", serial, err)
	}
	if err := r.kv.Purge(ctx, string(serial)); err != nil {
		return fmt.Errorf("remove unit %s: %w", serial, err)
	}
	r.set(serial, nil)
	return nil
}

func checkLabel(field, s string) error {
	if len(s) > 200 {
		return fmt.Errorf("%w: %s longer than 200 bytes", ErrInvalidName, field)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s contains control characters", ErrInvalidName, field)
		}
	}
	return nil
}

func hashPassword(salt []byte, password string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(password))
	return h.Sum(nil)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

func randomString(n int) string { return base64.RawURLEncoding.EncodeToString(randomBytes(n)) }

// RandomSecret returns a URL-safe random secret of n random bytes, for
// tokens and service passwords.
func RandomSecret(n int) string { return randomString(n) }
