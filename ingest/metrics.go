package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/ingest/payload"
)

type metrics struct {
	received       prometheus.Counter
	accepted       prometheus.Counter
	rejected       *prometheus.CounterVec
	batches        prometheus.Counter
	fastFlushes    prometheus.Counter
	publishErrors  prometheus.Counter
	publishSeconds prometheus.Histogram
	lag            prometheus.Histogram
	inflight       prometheus.Gauge
	takeovers      prometheus.Counter
	drained        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, dec *payload.Decoder) (*metrics, error) {
	// A value outside its variable's sane range (a driver bug such as a
	// temperature in kelvin) is dropped from its reading, which is kept.
	dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_ingest_values_dropped_total",
		Help: "Out-of-range values removed from otherwise good readings."},
		func() float64 { return float64(dec.Dropped()) })
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_ingest_messages_received_total",
			Help: "MQTT messages received by the ingest."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_ingest_readings_accepted_total",
			Help: "Readings stored on the bus (each acked to the broker after)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "upswatch_ingest_messages_rejected_total",
			Help: "MQTT messages rejected, by reason."}, []string{"reason"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_ingest_batches_published_total",
			Help: "Reading batches published to the bus."}),
		fastFlushes: prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_ingest_fast_flushes_total",
			Help: "Batches published at once, before flush_interval, because a unit's status changed."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_ingest_publish_errors_total",
			Help: "Failed bus publish attempts (each retried)."}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "upswatch_ingest_publish_seconds",
			Help: "Time to publish one batch and get the JetStream ack.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "upswatch_ingest_bus_lag_seconds",
			Help: "From MQTT receipt to the batch stored on the bus.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "upswatch_ingest_inflight_messages",
			Help: "MQTT messages accepted but not yet stored on the bus and acked."}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_ingest_session_takeovers_total",
			Help: "MQTT sessions of instances whose lease expired that this instance took over."}),
		drained: prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_ingest_session_drained_messages_total",
			Help: "Messages drained from taken-over sessions."}),
	}
	// Every reason shows up as 0 from the start, so alerts on rate() work.
	for _, r := range append(payload.Reasons(), ReasonUnregistered, ReasonBadTopic) {
		m.rejected.WithLabelValues(string(r))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.received, m.accepted, m.rejected, m.batches, m.fastFlushes, m.publishErrors, m.publishSeconds, m.lag, m.inflight, m.takeovers, m.drained, dropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ingest metrics: %w", err)
		}
	}
	return m, nil
}
