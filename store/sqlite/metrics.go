package sqlite

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/store/storemetrics"
)

// Drop reasons: points refused as bad data are dropped and counted, not
// returned as errors (see store.History.WriteReadings).
const (
	dropBadSerial = "bad_serial"   // whole reading: serial not 12/16 digits
	dropNonFinite = "non_finite"   // one metric: NaN or ±Inf
	dropBadName   = "empty_name"   // one metric or text with an empty name
	dropPresence  = "bad_presence" // whole reading: unknown presence value
)

// metrics are the shared store metrics plus retention's own.
type metrics struct {
	*storemetrics.Metrics
	pruned      prometheus.Counter
	pruneErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	shared, err := storemetrics.New("sqlite", []string{dropBadSerial, dropNonFinite, dropBadName, dropPresence}, reg)
	if err != nil {
		return nil, err
	}
	labels := prometheus.Labels{"backend": "sqlite"}
	m := &metrics{
		Metrics: shared,
		pruned: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "upswatch", Subsystem: "store",
			Name: "pruned_total", Help: "Rows deleted from the history store by retention.", ConstLabels: labels}),
		pruneErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "upswatch", Subsystem: "store",
			Name: "prune_errors_total", Help: "Retention runs of the history store that failed.", ConstLabels: labels}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	m.pruned = storemetrics.Register(reg, m.pruned, &errs)
	m.pruneErrors = storemetrics.Register(reg, m.pruneErrors, &errs)
	return m, errors.Join(errs...)
}
