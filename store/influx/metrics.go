package influx

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a point is refused as bad data and dropped, for
// upswatch_store_rejected_points_total. Those from the server are parsed
// from its message; the others are caught before sending.
const (
	reasonTypeConflict = "type_conflict"    // a field's type differs from the stored one
	reasonRetention    = "beyond_retention" // older than the bucket's retention
	reasonParse        = "unparsable"       // the server could not parse the line
	reasonTooLarge     = "too_large"        // one point larger than the server accepts
	reasonOther        = "other"            // any other 4xx data error
	reasonBadSerial    = "bad_serial"       // reading: serial not 12/16 digits
	reasonBadTime      = "bad_time"         // reading: time outside InfluxDB's range
	reasonNonFinite    = "non_finite"       // one value: NaN or ±Inf
	reasonBadName      = "bad_name"         // one value: empty name, a newline or backslash in it
)

var allReasons = []string{reasonTypeConflict, reasonRetention, reasonParse, reasonTooLarge,
	reasonOther, reasonBadSerial, reasonBadTime, reasonNonFinite, reasonBadName}

type metrics struct {
	writeSeconds prometheus.Histogram
	written      prometheus.Counter
	presence     prometheus.Counter
	writeErrors  prometheus.Counter
	rejected     *prometheus.CounterVec
	querySeconds prometheus.Histogram
}

// The names and help texts are shared with store/sqlite (a registry
// refuses one name with two help texts); the backend label tells the
// backends apart.
var backendLabel = prometheus.Labels{"backend": "influx"}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace:   "upswatch",
			Subsystem:   "store",
			Name:        "write_seconds",
			Help:        "Time to write one batch of readings to the history store, commit included.",
			ConstLabels: backendLabel,
			Buckets:     prometheus.ExponentialBuckets(0.001, 2, 14), // 1ms .. 8s
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   "upswatch",
			Subsystem:   "store",
			Name:        "readings_written_total",
			Help:        "Telemetry readings committed to the history store.",
			ConstLabels: backendLabel,
		}),
		presence: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   "upswatch",
			Subsystem:   "store",
			Name:        "presence_written_total",
			Help:        "Presence (online/offline) readings committed to the history store.",
			ConstLabels: backendLabel,
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   "upswatch",
			Subsystem:   "store",
			Name:        "write_errors_total",
			Help:        "Batches the history store failed to write (the caller retries them).",
			ConstLabels: backendLabel,
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   "upswatch",
			Subsystem:   "store",
			Name:        "rejected_points_total",
			Help:        "Points or single values the history store refused as bad data and dropped, by reason.",
			ConstLabels: backendLabel,
		}, []string{"reason"}),
		querySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace:   "upswatch",
			Subsystem:   "store",
			Name:        "query_seconds",
			Help:        "Time to answer one history query.",
			ConstLabels: backendLabel,
			Buckets:     prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	for _, r := range allReasons {
		m.rejected.WithLabelValues(r) // export zeros, so rate() works from the start
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	m.writeSeconds = register(reg, m.writeSeconds, &errs)
	m.written = register(reg, m.written, &errs)
	m.presence = register(reg, m.presence, &errs)
	m.writeErrors = register(reg, m.writeErrors, &errs)
	m.rejected = register(reg, m.rejected, &errs)
	m.querySeconds = register(reg, m.querySeconds, &errs)
	return m, errors.Join(errs...)
}

// register registers c, or returns the collector already registered under
// the same description (a second Store on the same registry), so both
// feed the same series. Anything else is a wiring bug.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errs *[]error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	*errs = append(*errs, fmt.Errorf("register metric: %w", err))
	return c
}
