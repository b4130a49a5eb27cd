package app

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/ups"
)

// deletingUnits is the registry as the API uses it: removing a unit also
// tells the rule engine, on whichever instance owns the unit's partition,
// to forget its state and active alerts.
type deletingUnits struct {
	*registry.Registry
	js         jetstream.JetStream
	partitions int
}

// Remove deregisters serial, then publishes its deletion to the rule
// engine. A unit already gone still gets the deletion published, so a
// DELETE retried after a failed publish completes it.
func (u deletingUnits) Remove(ctx context.Context, serial ups.Serial) error {
	err := u.Registry.Remove(ctx, serial)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return err
	}
	if perr := engine.PublishUnitDeleted(ctx, u.js, u.partitions, serial); perr != nil {
		return errors.Join(err, perr)
	}
	return err
}
