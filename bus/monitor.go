package bus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// StreamMonitor publishes how full a stream is and logs as it fills, so an
// operator sees a history store outage eating into the readings stream's
// limits long before new readings are refused.
type StreamMonitor struct {
	js       jetstream.JetStream
	stream   string
	log      *slog.Logger
	every    time.Duration
	bytes    prometheus.Gauge
	msgs     prometheus.Gauge
	fill     prometheus.Gauge
	lastStep int
}

// fillSteps are the fill ratios (percent) at which a crossing is logged.
var fillSteps = []int{50, 80, 95}

// NewStreamMonitor registers the stream's gauges.
func NewStreamMonitor(js jetstream.JetStream, stream string, every time.Duration, log *slog.Logger, reg prometheus.Registerer) (*StreamMonitor, error) {
	labels := prometheus.Labels{"stream": stream}
	m := &StreamMonitor{
		js: js, stream: stream, log: log, every: every,
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "upswatch_bus_stream_bytes", ConstLabels: labels,
			Help: "Bytes held by the stream."}),
		msgs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "upswatch_bus_stream_messages", ConstLabels: labels,
			Help: "Messages held by the stream."}),
		fill: prometheus.NewGauge(prometheus.GaugeOpts{Name: "upswatch_bus_stream_fill_ratio", ConstLabels: labels,
			Help: "Bytes held over the stream's max_bytes (1 = full: new readings are refused)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.bytes, m.msgs, m.fill} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("stream monitor metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Run samples the stream until ctx is done.
func (m *StreamMonitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		if err := m.sample(ctx); err != nil && ctx.Err() == nil {
			m.log.Debug("stream info failed", "stream", m.stream, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *StreamMonitor) sample(ctx context.Context) error {
	s, err := m.js.Stream(ctx, m.stream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	m.bytes.Set(float64(info.State.Bytes))
	m.msgs.Set(float64(info.State.Msgs))
	if info.Config.MaxBytes <= 0 {
		return nil
	}
	ratio := float64(info.State.Bytes) / float64(info.Config.MaxBytes)
	m.fill.Set(ratio)
	step := 0
	for _, p := range fillSteps {
		if ratio*100 >= float64(p) {
			step = p
		}
	}
	switch {
	case step > m.lastStep:
		m.log.Warn("readings stream filling up: is the history store down?", "stream", m.stream,
			"percent_full", int(ratio*100), "bytes", info.State.Bytes, "max_bytes", info.Config.MaxBytes)
	case step < m.lastStep && step == 0:
		m.log.Info("readings stream drained", "stream", m.stream, "percent_full", int(ratio*100))
	}
	m.lastStep = step
	return nil
}

// FillGauge exposes the fill ratio gauge (for tests).
func (m *StreamMonitor) FillGauge() prometheus.Gauge { return m.fill }
