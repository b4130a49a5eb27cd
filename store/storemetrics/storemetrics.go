// Package storemetrics holds the Prometheus metrics every history store
// backend exports, under the same names with a backend label, so a
// dashboard works whichever backend runs.
package storemetrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the shared store metrics.
type Metrics struct {
	WriteSeconds prometheus.Histogram
	Written      prometheus.Counter
	Presence     prometheus.Counter
	WriteErrors  prometheus.Counter
	// Dropped counts readings or single values refused as bad data and
	// dropped (not returned as errors, so one bad point cannot wedge the
	// stream), by reason.
	Dropped      *prometheus.CounterVec
	QuerySeconds prometheus.Histogram
}

// New builds and registers (reg may be nil) the metrics of one backend;
// reasons are exported at zero so rate() works from the start.
func New(backend string, reasons []string, reg prometheus.Registerer) (*Metrics, error) {
	labels := prometheus.Labels{"backend": backend}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "upswatch", Subsystem: "store", Name: name, Help: help, ConstLabels: labels}
	}
	hist := func(name, help string) prometheus.Histogram {
		o := opts(name, help)
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: o.Namespace, Subsystem: o.Subsystem,
			Name: o.Name, Help: o.Help, ConstLabels: o.ConstLabels,
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}) // 1ms .. 8s
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts(opts(name, help)))
	}
	m := &Metrics{
		WriteSeconds: hist("write_seconds", "Time to write one batch of readings to the history store, commit included."),
		Written:      counter("readings_written_total", "Telemetry readings committed to the history store."),
		Presence:     counter("presence_written_total", "Presence (online/offline) readings committed to the history store."),
		WriteErrors:  counter("write_errors_total", "Batches the history store failed to write (the caller retries them)."),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts(opts("dropped_total",
			"Readings or single values the history store refused as bad data and dropped, by reason.")), []string{"reason"}),
		QuerySeconds: hist("query_seconds", "Time to answer one history query."),
	}
	for _, r := range reasons {
		m.Dropped.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	m.WriteSeconds = Register(reg, m.WriteSeconds, &errs)
	m.Written = Register(reg, m.Written, &errs)
	m.Presence = Register(reg, m.Presence, &errs)
	m.WriteErrors = Register(reg, m.WriteErrors, &errs)
	m.Dropped = Register(reg, m.Dropped, &errs)
	m.QuerySeconds = Register(reg, m.QuerySeconds, &errs)
	return m, errors.Join(errs...)
}

// Register registers c, or returns the collector already registered under
// the same description (a second store opened on the same registry, as
// tests and a reopen after failure do), so both feed the same series. Any
// other failure is a wiring bug (a name clash with other labels or help)
// and is appended to errs.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C, errs *[]error) C {
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
