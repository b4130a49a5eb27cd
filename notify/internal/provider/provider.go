// Package provider holds what the provider integrations share: their
// Prometheus metrics and the Retry-After parser.
package provider

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/notify"
)

// Metrics counts provider requests by channel and outcome and times them.
// Every provider registers the same two collectors; the second registration
// reuses the first, so fcm, apns and sms can share one Registerer.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the provider metrics on reg; a nil reg keeps them
// unregistered (tests, embedding without metrics).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upswatch_notify_requests_total",
			Help: "Provider delivery attempts per recipient, by channel and outcome.",
		}, []string{"channel", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "upswatch_notify_request_duration_seconds",
			Help: "Latency of provider requests, by channel.",
			// Providers answer in tens of milliseconds; a slow or throttled
			// one in seconds.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"channel"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.latency, err = register(reg, m.latency); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// Observe records one recipient's outcome.
func (m *Metrics) Observe(channel string, o notify.Outcome) {
	m.requests.WithLabelValues(channel, o.String()).Inc()
}

// ObserveLatency records how long one provider request took.
func (m *Metrics) ObserveLatency(channel string, d time.Duration) {
	m.latency.WithLabelValues(channel).Observe(d.Seconds())
}

// RetryAfter parses a Retry-After header value: delay-seconds or an HTTP
// date (RFC 9110 10.2.3). It returns zero for an absent, malformed or past
// value.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
