package sqlite

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons: points refused as bad data are dropped and counted, not
// returned as errors (see store.History.WriteReadings).
const (
	dropBadSerial = "bad_serial"   // whole reading: serial not 12/16 digits
	dropNonFinite = "non_finite"   // one metric: NaN or ±Inf
	dropBadName   = "empty_name"   // one metric or text with an empty name
	dropPresence  = "bad_presence" // whole reading: unknown presence value
)

type metrics struct {
	writeSeconds prometheus.Histogram
	written      prometheus.Counter
	presence     prometheus.Counter
	writeErrors  prometheus.Counter
	dropped      *prometheus.CounterVec
	querySeconds prometheus.Histogram
	pruned       prometheus.Counter
	pruneErrors  prometheus.Counter
}

// backendLabel tells this backend's series apart from store/influx's,
// which share the metric names.
var backendLabel = prometheus.Labels{"backend": "sqlite"}

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
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   "upswatch",
			Subsystem:   "store",
			Name:        "dropped_total",
			Help:        "Readings or single values the history store refused as bad data, by reason.",
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
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   "upswatch",
			Subsystem:   "store",
			Name:        "pruned_total",
			Help:        "Rows deleted from the history store by retention.",
			ConstLabels: backendLabel,
		}),
		pruneErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   "upswatch",
			Subsystem:   "store",
			Name:        "prune_errors_total",
			Help:        "Retention runs of the history store that failed.",
			ConstLabels: backendLabel,
		}),
	}
	for _, r := range []string{dropBadSerial, dropNonFinite, dropBadName, dropPresence} {
		m.dropped.WithLabelValues(r) // export zeros, so rate() works from the start
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	m.writeSeconds = register(reg, m.writeSeconds, &errs)
	m.written = register(reg, m.written, &errs)
	m.presence = register(reg, m.presence, &errs)
	m.writeErrors = register(reg, m.writeErrors, &errs)
	m.dropped = register(reg, m.dropped, &errs)
	m.querySeconds = register(reg, m.querySeconds, &errs)
	m.pruned = register(reg, m.pruned, &errs)
	m.pruneErrors = register(reg, m.pruneErrors, &errs)
	return m, errors.Join(errs...)
}

// register registers c, or returns the collector already registered under
// the same description (a second Store opened on the same registry, as
// tests and a reopen after failure do), so both feed the same series. Any
// other failure is a wiring bug (a name clash with different labels or
// help) and is appended to errs.
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
