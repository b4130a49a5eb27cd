// Package recorder is the history consumer: it reads reading batches from
// the bus and writes them to the history store, acking each bus message
// only after the store has the readings. While the store is down, batches
// wait in the stream (bounded by its limits) and are written when it
// returns; nothing is acked before it is stored.
//
// Several upswatch instances share one durable consumer, so they split the
// writing; the store is idempotent on (serial, time), so a batch that is
// redelivered after a crash is harmless.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/ready"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// Durable is the name of the shared history consumer.
const Durable = "history"

// DefaultLinger is long enough that a store write carries some
// thousands of readings at fleet rates: each write costs InfluxDB a WAL
// sync and SQLite a commit whatever its size, and at 20 ms the writes
// of a few hundred readings cost InfluxDB more CPU per reading than
// upswatch spent in all. Nothing waits on the history this fast: alerts
// and the live view read the bus.
const DefaultLinger = 200 * time.Millisecond

// Config of the recorder.
type Config struct {
	// MaxReadings per store write; several bus batches are merged up to it.
	MaxReadings int
	// Linger: after the first batch arrives, wait at most this long for
	// more before writing.
	Linger     time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Recorder moves readings from the bus into a store.History.
type Recorder struct {
	js    jetstream.JetStream
	store store.History
	cfg   Config
	log   *slog.Logger
	m     metrics
	ready ready.Signal
}

// New validates and builds a recorder; Run starts it.
func New(js jetstream.JetStream, h store.History, cfg Config) (*Recorder, error) {
	if js == nil || h == nil {
		return nil, errors.New("recorder: js and store are required")
	}
	if cfg.MaxReadings <= 0 {
		cfg.MaxReadings = 5000
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{js: js, store: h, cfg: cfg, log: cfg.Logger.With("component", "history")}
	if err := r.m.register(cfg.Registerer); err != nil {
		return nil, err
	}
	return r, nil
}

// Ready is closed once the consumer exists and reading has begun. A Run that returns
// lowers it again (a new channel), so a component run again after a
// failure is ready only once the new run has set up.
func (r *Recorder) Ready() <-chan struct{} { return r.ready.C() }

// Run consumes until ctx is done, then finishes the write in progress.
func (r *Recorder) Run(ctx context.Context) error {
	cons, err := r.js.CreateOrUpdateConsumer(ctx, bus.ReadingsStream, jetstream.ConsumerConfig{
		Durable:       Durable,
		Description:   "writes readings to the history store",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 4096,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("history consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return fmt.Errorf("history consumer: %w", err)
	}
	r.ready.Up()
	defer r.ready.Down()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		it.Stop()
	}()
	defer close(stopped)
	go r.watchPending(ctx, cons)

	var held []jetstream.Msg
	var readings []ups.Reading
	// One decoder for the life of the loop: its arenas and interned
	// serials are reused batch after batch (see ups.BatchDecoder).
	dec := ups.NewBatchDecoder()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			r.log.Warn("history consumer: next failed", "err", err)
			continue
		}
		dec.Reset() // the last write is done with its readings
		held, readings = r.take(dec, msg, held[:0], readings[:0])
		deadline := time.Now().Add(r.cfg.Linger)
		for len(readings) < r.cfg.MaxReadings {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			msg, err := it.Next(jetstream.NextMaxWait(wait))
			if err != nil {
				break // timeout, or stopping: write what we have
			}
			held, readings = r.take(dec, msg, held, readings)
		}
		// Write with a context that outlives shutdown's cancellation: a
		// write that started should finish, so its batches get acked.
		r.write(context.WithoutCancel(ctx), ctx, held, readings)
		clear(readings)
	}
}

// take decodes one bus message into readings; a message that cannot be
// decoded will never decode, so it is terminated (and counted) rather than
// redelivered forever.
func (r *Recorder) take(dec *ups.BatchDecoder, msg jetstream.Msg, held []jetstream.Msg, readings []ups.Reading) ([]jetstream.Msg, []ups.Reading) {
	readings, err := dec.Append(readings, msg.Data())
	if err != nil {
		r.m.poison.Inc()
		r.log.Error("undecodable bus message terminated", "subject", msg.Subject(), "bytes", len(msg.Data()), "err", err)
		_ = msg.TermWithReason("undecodable reading batch")
		return held, readings
	}
	return append(held, msg), readings
}

// write stores readings, retrying with backoff while the store fails; the
// bus messages are kept in progress meanwhile so they are not redelivered
// elsewhere. It gives up only when stop is done (shutdown), leaving them
// unacked for redelivery.
func (r *Recorder) write(ctx, stop context.Context, held []jetstream.Msg, readings []ups.Reading) {
	if len(held) == 0 {
		return
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := r.store.WriteReadings(ctx, readings)
		if err == nil {
			r.m.writeSeconds.Observe(time.Since(start).Seconds())
			break
		}
		r.m.writeErrors.Inc()
		if attempt == 1 || attempt%10 == 0 {
			r.log.Warn("history write failed; readings stay on the bus and are retried",
				"readings", len(readings), "attempt", attempt, "err", err)
		}
		for _, m := range held {
			_ = m.InProgress()
		}
		select {
		case <-stop.Done():
			r.log.Warn("stopping with an unwritten batch; it stays on the bus for redelivery", "readings", len(readings))
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	for _, m := range held {
		if err := m.Ack(); err != nil {
			// The readings are stored; a lost ack means a harmless
			// redelivery (the store is idempotent).
			r.log.Warn("history ack failed", "err", err)
		}
	}
	r.m.written.Add(float64(len(readings)))
}

// watchPending publishes how far the history lags behind the bus.
func (r *Recorder) watchPending(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		info, err := cons.Info(ctx)
		if err == nil {
			r.m.pending.Set(float64(info.NumPending + uint64(info.NumAckPending)))
		} else if !errors.Is(err, context.Canceled) && !errors.Is(err, nats.ErrConnectionClosed) {
			r.log.Debug("history consumer info failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type metrics struct {
	written      prometheus.Counter
	writeErrors  prometheus.Counter
	poison       prometheus.Counter
	writeSeconds prometheus.Histogram
	pending      prometheus.Gauge
}

func (m *metrics) register(reg prometheus.Registerer) error {
	m.written = prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_history_readings_written_total",
		Help: "Readings written to the history store."})
	m.writeErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_history_write_errors_total",
		Help: "Failed history writes (each retried; nothing is acked before it is stored)."})
	m.poison = prometheus.NewCounter(prometheus.CounterOpts{Name: "upswatch_history_undecodable_total",
		Help: "Bus messages that could not be decoded and were terminated."})
	m.writeSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "upswatch_history_write_seconds",
		Help: "Latency of one history store write.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	m.pending = prometheus.NewGauge(prometheus.GaugeOpts{Name: "upswatch_history_pending_batches",
		Help: "Bus batches not yet written to the history store (bus lag)."})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.written, m.writeErrors, m.poison, m.writeSeconds, m.pending} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("history metrics: %w", err)
		}
	}
	return nil
}
