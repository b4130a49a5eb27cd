package store

import (
	"context"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// Span is a stretch of time from Start to End; a zero End means it lasts
// past the range asked.
type Span struct {
	Start time.Time
	End   time.Time
}

// PowerHistory is implemented by backends that can tell from the stored
// ups.status when a unit ran on battery (store/sqlite does).
type PowerHistory interface {
	// OnBattery returns the spans of [from, to) in which the unit's
	// readings said OB (not while calibrating or testing), oldest first:
	// each from its first such reading to the next reading that did not.
	OnBattery(ctx context.Context, serial ups.Serial, from, to time.Time) ([]Span, error)
}
