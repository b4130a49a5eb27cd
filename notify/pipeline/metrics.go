package pipeline

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events  *prometheus.CounterVec
	queued  *prometheus.CounterVec
	results *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "upswatch_notify_events_total",
			Help: "Alert events taken in, by result (queued: at least one notification; none; folded into an area alert)."}, []string{"result"}),
		queued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "upswatch_notify_queued_total",
			Help: "Notifications put in the outbox, by channel."}, []string{"channel"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "upswatch_notify_attempts_total",
			Help: "Delivery attempts per address, by channel and outcome."}, []string{"channel", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "upswatch_notify_alert_latency_seconds",
			Help:    "Alert event time to the provider accepting the notification.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800}}, []string{"channel"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.queued, m.results, m.latency} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return nil, err
		}
	}
	return m, nil
}
