package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/ups"
)

// Control messages travel on a partition's readings subject, in order with
// its readings, so the instance that owns the partition when they arrive
// (now or after a takeover) applies them exactly where they belong.
const (
	// ControlHeader marks a readings-subject message that is a command to
	// the rule engine rather than readings. Its body is an empty batch, so
	// a consumer that knows no commands (the recorder, an older engine)
	// takes it as nothing and acks it.
	ControlHeader = "Upswatch-Control"
	// ControlUnitDeleted: forget the unit named by SerialHeader.
	ControlUnitDeleted = "unit-deleted"
	// SerialHeader names the unit of a control message.
	SerialHeader = "Upswatch-Serial"
)

// deletedGrace is how long an owner drops the readings of a unit it was
// told is deleted while its registry view does not know the unit: readings
// that another instance's ingest accepted just before its view learned of
// the deletion.
const deletedGrace = time.Minute

// PublishUnitDeleted tells the rule engine that serial was deregistered:
// its owner drops the unit's rule state (pending timers and reminders with
// it) and its active alerts, on whichever instance owns the partition. The
// alert timeline (the ALERTS stream) is kept. Publish it after removing the
// unit from the registry, so a unit registered again later starts clean.
func PublishUnitDeleted(ctx context.Context, js jetstream.JetStream, partitions int, serial ups.Serial) error {
	if partitions <= 0 {
		return fmt.Errorf("unit deletion of %s: partitions must be positive, got %d", serial, partitions)
	}
	msg := nats.NewMsg(bus.ReadingsSubject(ups.Partition(serial, partitions)))
	msg.Header.Set(ControlHeader, ControlUnitDeleted)
	msg.Header.Set(SerialHeader, string(serial))
	msg.Data = ups.AppendBatch(nil, nil)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish the deletion of unit %s to the rule engine: %w", serial, err)
	}
	return nil
}

// control applies a control message; it reports false for a message that
// is a readings batch.
func (pt *partition) control(ctx context.Context, log *slog.Logger, msg jetstream.Msg) bool {
	kind := msg.Headers().Get(ControlHeader)
	if kind == "" {
		return false
	}
	if kind != ControlUnitDeleted {
		// A command of a newer version: not ours to block the partition on.
		log.Warn("unknown rule engine command ignored", "command", kind)
		_ = msg.Ack()
		return true
	}
	serial, err := ups.ParseSerial(msg.Headers().Get(SerialHeader))
	if err != nil {
		pt.e.m.poison.Inc()
		log.Error("unit deletion without a valid serial terminated", "err", err)
		_ = msg.TermWithReason("unit deletion without a valid serial")
		return true
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := pt.forget(cctx, serial); err != nil {
		log.Warn("forgetting a deleted unit failed; retried", "serial", serial, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return true
	}
	log.Info("deleted unit forgotten", "serial", serial)
	if err := msg.DoubleAck(cctx); err != nil {
		log.Warn("rules ack failed; the deletion is applied again", "err", err)
	}
	return true
}

// forget drops serial's state in memory and in the state bucket, and its
// active alerts.
func (pt *partition) forget(ctx context.Context, serial ups.Serial) error {
	delete(pt.units, serial)
	if pt.deleted == nil {
		pt.deleted = map[ups.Serial]time.Time{}
	}
	pt.deleted[serial] = time.Now()
	// Purging the subject from the bucket's stream leaves no delete marker,
	// so a later state of the same serial is written as a new key (its
	// compare-and-set expects no previous message).
	stateStream, err := pt.e.js.Stream(ctx, "KV_"+StateBucket)
	if err != nil {
		return fmt.Errorf("state bucket stream: %w", err)
	}
	if err := stateStream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+StateBucket+"."+string(serial))); err != nil {
		return fmt.Errorf("purge the rule state of %s: %w", serial, err)
	}
	keys, err := pt.active.ListKeysFiltered(ctx, string(serial)+".*")
	if err != nil {
		return fmt.Errorf("list the active alerts of %s: %w", serial, err)
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	for _, k := range names {
		if err := pt.active.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("clear active %s: %w", k, err)
		}
	}
	pt.e.m.forgotten.Inc()
	return nil
}

// deletedStraggler reports whether a reading of serial came after the
// unit's deletion while it is still not registered: it is dropped.
func (pt *partition) deletedStraggler(serial ups.Serial) bool {
	at, ok := pt.deleted[serial]
	if !ok {
		return false
	}
	if _, registered := pt.e.cfg.Units.Lookup(serial); registered || time.Since(at) > deletedGrace {
		delete(pt.deleted, serial)
		return false
	}
	return true
}
