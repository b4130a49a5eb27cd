package influx

import (
	"context"
	"fmt"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

var _ store.PowerHistory = (*Store)(nil)

// OnBattery implements store.PowerHistory from the status changes, as the
// SQLite store does: a report on InfluxDB counts the short outages no
// on_battery alert covered (blips under its pending period) too.
func (s *Store) OnBattery(ctx context.Context, serial ups.Serial, from, to time.Time) ([]store.Span, error) {
	spans, err := store.OnBatteryOf(ctx, s, serial, from, to)
	if err != nil {
		return nil, fmt.Errorf("influx store: %w", err)
	}
	return spans, nil
}
