package battery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/ups"
)

// Store is the query side of the battery states, for the API: any
// instance can answer from the bucket, tracking or not. What it shows is
// as of the tracker's last save (a few minutes at most).
type Store struct {
	js  jetstream.JetStream
	now func() time.Time
}

// NewStore builds a Store; now is its clock (nil: time.Now).
func NewStore(js jetstream.JetStream, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{js: js, now: now}
}

func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	return EnsureBucket(ctx, s.js, 0)
}

func (s *Store) load(ctx context.Context, kv jetstream.KeyValue, serial ups.Serial) (Unit, uint64, error) {
	u := Unit{Serial: serial}
	e, err := kv.Get(ctx, string(serial))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return u, 0, nil
	}
	if err != nil {
		return u, 0, fmt.Errorf("battery state of %s: %w", serial, err)
	}
	if err := u.UnmarshalBinary(e.Value()); err != nil {
		return u, 0, fmt.Errorf("battery state of %s: %w", serial, err)
	}
	return u, e.Revision(), nil
}

// Report returns the battery report of serial (an empty one for a unit
// never seen).
func (s *Store) Report(ctx context.Context, serial ups.Serial) (Report, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return Report{}, err
	}
	u, _, err := s.load(ctx, kv, serial)
	if err != nil {
		return Report{}, err
	}
	return u.Report(s.now()), nil
}

// SetInstallDate sends the install date the owner entered (the zero
// time clears it) to the tracker, in order with the unit's readings on
// its partition, and returns the report as it will be once applied. The
// tracker publishes the events it causes (a later date is a new battery:
// battery_replaced, and the age alert resolves).
func (s *Store) SetInstallDate(ctx context.Context, serial ups.Serial, d time.Time) (Report, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return Report{}, err
	}
	u, _, err := s.load(ctx, kv, serial)
	if err != nil {
		return Report{}, err
	}
	partitions, err := bus.PartitionsOf(ctx, s.js)
	if err != nil {
		return Report{}, fmt.Errorf("install date of %s: %w", serial, err)
	}
	msg := nats.NewMsg(bus.ReadingsSubject(ups.Partition(serial, partitions)))
	msg.Header.Set(CommandHeader, CommandInstallDate)
	msg.Header.Set(engine.SerialHeader, string(serial))
	if !d.IsZero() {
		msg.Header.Set(InstallDateHeader, d.UTC().Format(time.DateOnly))
	}
	msg.Data = ups.AppendBatch(nil, nil) // an empty batch to whoever knows no commands
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return Report{}, fmt.Errorf("send the install date of %s: %w", serial, err)
	}
	now := s.now()
	u.SetOwnerDate(d, now)
	return u.Report(now), nil
}

// Due is a battery to replace soon.
type Due struct {
	Serial           ups.Serial `json:"serial"`
	At               time.Time  `json:"at"`
	Reason           string     `json:"reason"`
	SoH              float64    `json:"soh,omitempty"` // 0: not known
	EffectiveAgeDays float64    `json:"effective_age_days"`
}

// Due lists the batteries, among the units keep accepts, whose forecast
// falls within the next within (or already passed), soonest first. It
// reads the whole bucket in one pass.
func (s *Store) Due(ctx context.Context, within time.Duration, keep func(ups.Serial) bool) ([]Due, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("battery states: %w", err)
	}
	defer func() { _ = w.Stop() }()
	now := s.now()
	out := []Due{}
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e == nil {
			break // the current values are all read
		}
		serial := ups.Serial(e.Key())
		if !keep(serial) {
			continue
		}
		u := Unit{Serial: serial}
		if err := u.UnmarshalBinary(e.Value()); err != nil {
			continue // unreadable: the tracker starts it afresh
		}
		f := u.ForecastAt(now)
		if f.At.IsZero() || f.At.After(now.Add(within)) {
			continue
		}
		d := Due{Serial: serial, At: f.At, Reason: f.Reason, EffectiveAgeDays: u.EffectiveAge(now).Hours() / 24}
		if h := u.HealthAt(now); h.Known {
			d.SoH = h.SoH
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Due) int { return a.At.Compare(b.At) })
	return out, nil
}
