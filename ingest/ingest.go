// Package ingest takes device messages from MQTT and stores them on the
// bus: subscribe (in OnConnect, so a reconnect resubscribes), decode and
// validate each payload, batch readings per partition, publish each batch
// to JetStream and only then ack the MQTT messages it holds. A message is
// therefore acked to the broker only once its readings are durable on the
// bus (at-least-once); a redelivered message produces the same readings,
// which the stores deduplicate on (serial, time).
//
// Rejected messages (unregistered serial, malformed, NaN/Inf, out of
// range, oversized...) are counted by reason and acked at once: they can
// never become good, and holding them would block the unit's good ones.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/ingest/payload"
	"github.com/upswatch/upswatch/ups"
)

// Extra rejection reasons beyond the decoder's.
const (
	ReasonUnregistered payload.Reason = "unregistered"
	ReasonBadTopic     payload.Reason = "bad_topic"
)

// ShutdownGrace bounds how long Run waits, after its context ends, for
// held batches to reach the bus.
const ShutdownGrace = 10 * time.Second

// Units tells whether a serial is registered (the registry's view).
type Units interface {
	Registered(ups.Serial) bool
}

// Config of the ingest.
type Config struct {
	BrokerURL   string
	Username    string
	Password    string
	ClientID    string
	TopicPrefix string
	// SharedGroup, when set, subscribes via $share/<group>/ so several
	// instances split the load.
	SharedGroup   string
	Partitions    int
	BatchSize     int
	FlushInterval time.Duration
	MaxInflight   int
	Limits        payload.Limits
	// Takeover, when set, holds a lease on ClientID's session and drains
	// the sessions of instances whose lease expired (see takeover.go). It
	// needs SharedGroup.
	Takeover   *Takeover
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Ingest is the MQTT -> JetStream pipeline.
type Ingest struct {
	cfg   Config
	units Units
	js    jetstream.JetStream
	dec   *payload.Decoder
	log   *slog.Logger
	m     *metrics
	slots chan struct{} // in-flight MQTT messages
	// room carries one token per slot freed while someone may wait in
	// WaitRoom: a freed slot wakes one waiter, not all of them. queued
	// counts the messages waiting in accept for a slot: a slot freed goes
	// to them first (they are the channel's blocked senders), so WaitRoom
	// lets no one through while there are any.
	room   chan struct{}
	queued atomic.Int64
	parts  []*partition
	idBase string
	client paho.Client
	ready  atomic.Bool
	// stopping is closed when shutdown begins: a handler blocked on
	// backpressure gives up its message (unacked) instead of waiting.
	stopping chan struct{}
	// gate: handlers hold it shared; shutdown takes it exclusively to know
	// no handler is still adding items, then sets closed.
	gate   sync.RWMutex
	closed bool

	rejectLogMu sync.Mutex
	rejectLog   map[ups.Serial]time.Time
}

// New validates the configuration. It connects nothing: Run does.
func New(cfg Config, units Units, js jetstream.JetStream) (*Ingest, error) {
	switch {
	case cfg.BrokerURL == "":
		return nil, errors.New("ingest: BrokerURL is required")
	case cfg.TopicPrefix == "":
		return nil, errors.New("ingest: TopicPrefix is required")
	case cfg.Partitions < 1:
		return nil, errors.New("ingest: Partitions must be at least 1")
	case cfg.BatchSize < 1 || cfg.MaxInflight < 1 || cfg.FlushInterval <= 0:
		return nil, errors.New("ingest: BatchSize, MaxInflight and FlushInterval must be positive")
	case units == nil || js == nil:
		return nil, errors.New("ingest: units and js are required")
	}
	if cfg.ClientID == "" {
		return nil, errors.New("ingest: ClientID is required (it names the persistent session)")
	}
	if cfg.Takeover != nil {
		if cfg.SharedGroup == "" || cfg.Takeover.Leases == nil {
			return nil, errors.New("ingest: Takeover needs SharedGroup and Takeover.Leases")
		}
		tk := *cfg.Takeover
		tk.withDefaults()
		cfg.Takeover = &tk
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dec := payload.New(cfg.Limits)
	m, err := newMetrics(cfg.Registerer, dec)
	if err != nil {
		return nil, err
	}
	in := &Ingest{
		cfg:       cfg,
		units:     units,
		js:        js,
		dec:       dec,
		log:       cfg.Logger.With("component", "ingest"),
		m:         m,
		slots:     make(chan struct{}, cfg.MaxInflight),
		room:      make(chan struct{}, roomTokens),
		idBase:    cfg.ClientID + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		rejectLog: map[ups.Serial]time.Time{},
		stopping:  make(chan struct{}),
	}
	for p := range cfg.Partitions {
		in.parts = append(in.parts, &partition{
			in:      in,
			id:      p,
			subject: bus.ReadingsSubject(p),
			items:   make(chan item, 256),
			status:  map[ups.Serial]ups.Flag{},
		})
	}
	return in, nil
}

// Ready reports whether the ingest is connected and subscribed.
func (in *Ingest) Ready() bool { return in.ready.Load() }

// Run connects to the broker and moves messages to the bus until ctx is
// done; then it stops taking messages, publishes what it holds, acks it,
// and disconnects. Messages it did not get to store stay unacked, and the
// broker redelivers them (persistent session).
func (in *Ingest) Run(ctx context.Context) error {
	opts := paho.NewClientOptions().
		AddBroker(in.cfg.BrokerURL).
		SetClientID(in.cfg.ClientID).
		SetUsername(in.cfg.Username).
		SetPassword(in.cfg.Password).
		// A persistent session: while upswatch restarts, the broker keeps
		// the subscription and queues QoS 1 messages for it.
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		// Ack only once the batch holding the message is on the bus.
		SetAutoAckDisabled(true).
		// In order: a unit's readings reach its partition in the order
		// the broker delivered them.
		SetOrderMatters(true).
		SetOnConnectHandler(in.onConnect).
		// A resumed session's queue arrives right after CONNACK, while
		// onConnect runs in its own goroutine: a message dispatched
		// before its subscription has set the route in paho finds no
		// handler, and paho drops it unacked; it then stays stuck in the
		// session until the next reconnect. The default handler takes it.
		SetDefaultPublishHandler(in.handle).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			in.ready.Store(false)
			in.log.Warn("mqtt connection lost; reconnecting", "err", err)
		}).
		SetReconnectingHandler(func(paho.Client, *paho.ClientOptions) {
			in.log.Info("mqtt reconnecting", "broker", in.cfg.BrokerURL)
		})
	if bufferable(in.cfg.BrokerURL) {
		opts.SetCustomOpenConnectionFn(openBuffered)
	}
	in.client = paho.NewClient(opts)

	flushCtx, stopFlush := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFlush()
	var flushers sync.WaitGroup
	for _, p := range in.parts {
		flushers.Add(1)
		go func() { defer flushers.Done(); p.run(flushCtx) }()
	}

	tok := in.client.Connect() // retries in the background until connected
	go func() {
		if tok.Wait() && tok.Error() != nil {
			in.log.Error("mqtt connect failed", "err", tok.Error())
		}
	}()
	leasesDone := make(chan struct{})
	if in.cfg.Takeover != nil {
		go func() { defer close(leasesDone); in.leases(ctx) }()
	} else {
		close(leasesDone)
	}

	<-ctx.Done()
	in.log.Info("ingest stopping: no new messages, flushing what is held")
	in.ready.Store(false)
	<-leasesDone // sessions being drained are let go (their claims expire)
	close(in.stopping)
	// The ingest leaves a shared group at a clean stop, so the broker
	// gives its share to the others. Alone, or the last of its group, it
	// stays subscribed: its persistent session keeps queueing what devices
	// publish until an instance is back (a restart, an upgrade), where an
	// unsubscribed session would have the broker ack those messages and
	// drop them.
	unsubscribed := false
	leave := in.cfg.SharedGroup != ""
	if leave && in.cfg.Takeover != nil && !in.othersLive(context.WithoutCancel(ctx)) {
		leave = false
		in.log.Info("last instance of the shared group: staying subscribed, so the broker queues what devices send until one is back")
	}
	if leave && in.client.IsConnectionOpen() {
		tok := in.client.Unsubscribe(in.filters()...)
		unsubscribed = tok.WaitTimeout(2*time.Second) && tok.Error() == nil
	}
	if in.cfg.Takeover != nil && unsubscribed {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		in.release(rctx)
		cancel()
	}
	in.gate.Lock() // waits for running handlers
	in.closed = true
	in.gate.Unlock()
	for _, p := range in.parts {
		close(p.items)
	}
	// Every held batch is published and acked, unless the bus stays down
	// past the grace period; then it is left unacked for redelivery.
	flushed := make(chan struct{})
	go func() { flushers.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(ShutdownGrace):
		stopFlush()
		<-flushed
	}
	in.client.Disconnect(500)
	in.log.Info("ingest stopped")
	return nil
}

func (in *Ingest) filters() []string {
	base := []string{in.cfg.TopicPrefix + "/+/telemetry", in.cfg.TopicPrefix + "/+/status"}
	if in.cfg.SharedGroup == "" {
		return base
	}
	for i := range base {
		base[i] = "$share/" + in.cfg.SharedGroup + "/" + base[i]
	}
	return base
}

// onConnect subscribes on every (re)connection: with a clean session the
// broker forgets subscriptions, and with a persistent one resubscribing is
// harmless.
func (in *Ingest) onConnect(c paho.Client) {
	subs := map[string]byte{}
	for _, f := range in.filters() {
		subs[f] = 1
	}
	tok := c.SubscribeMultiple(subs, in.handle)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		in.log.Error("mqtt subscribe failed; reconnecting", "err", tok.Error(), "filters", in.filters())
		// Drop the connection so auto-reconnect tries again.
		go c.Disconnect(0)
		return
	}
	in.ready.Store(true)
	in.log.Info("mqtt subscribed", "broker", in.cfg.BrokerURL, "filters", in.filters())
}

// handle runs for every message from the MQTT subscription, in delivery
// order. The message is acked to the broker once stored on the bus.
func (in *Ingest) handle(_ paho.Client, msg paho.Message) {
	in.gate.RLock()
	defer in.gate.RUnlock()
	if in.closed {
		return // not acked: the broker redelivers it after restart
	}
	in.accept(msg.Topic(), msg.Payload(), func(stored bool) {
		if stored {
			msg.Ack()
		}
	})
}

// ErrStopping is returned by Offer once shutdown has begun.
var ErrStopping = errors.New("ingest is stopping")

// OfferTimeout bounds how long Offer waits for the bus.
const OfferTimeout = 10 * time.Second

// Offer ingests one message received by an in-process broker and returns
// only once it is settled: nil when its readings are stored on the bus, or
// when it was rejected (counted; it can never become good, so the device
// may drop it); an error when it could not be stored in time, and then
// the broker must not ack it, so the device keeps and resends it.
//
// This is how the embedded broker acks a device only after the bus has its
// readings: a broker acks a publisher before routing the message to
// subscribers, so on the subscription path alone a kill -9 between the two
// would lose a reading the device was told was received.
func (in *Ingest) Offer(ctx context.Context, topic string, body []byte) error {
	in.gate.RLock()
	if in.closed {
		in.gate.RUnlock()
		return ErrStopping
	}
	settled := make(chan bool, 1)
	in.accept(topic, body, func(stored bool) { settled <- stored })
	in.gate.RUnlock()
	timer := time.NewTimer(OfferTimeout)
	defer timer.Stop()
	select {
	case stored := <-settled:
		if !stored {
			return ErrStopping
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("bus did not store the message within %s", OfferTimeout)
	}
}

// OfferAsync is Offer without waiting, for a broker that acks the device
// itself once done runs (exactly once, from the partition's goroutine or
// this one): with nil when the readings are stored on the bus or the
// message was rejected for good, ErrStopping when shutdown came first.
// While the ingest holds MaxInflight messages it blocks, which pushes back
// on the device's connection. There is no timeout: while the bus is down
// the message is held (and retried) until it is stored or the ingest
// stops, and the device's PUBACK waits with it.
func (in *Ingest) OfferAsync(topic string, body []byte, done func(error)) {
	in.gate.RLock()
	defer in.gate.RUnlock()
	if in.closed {
		done(ErrStopping)
		return
	}
	in.accept(topic, body, func(stored bool) {
		if stored {
			done(nil)
		} else {
			done(ErrStopping)
		}
	})
}

// roomTokens bounds the wake-ups WaitRoom has pending: a token left over
// lets one caller through early, who then waits in accept as before.
const roomTokens = 64

// WaitRoom returns when the ingest can take a message without waiting, or
// at shutdown. The embedded broker calls it in a device connection's read
// that brought a PUBLISH, before the broker handles it: a connection
// goroutine that waits here has a shallow stack the GC can shrink, where
// one blocked in accept (MaxInflight reached) sits deep in the broker's
// packet handling, and 10,000 of those held 32 KiB stacks each. Without
// a time limit: the message would wait in accept as long.
//
// A slot freed while messages wait in accept goes to one of them, so
// WaitRoom waits until none do: otherwise each freed slot would wake a
// waiter here only to send it down to accept, behind them, and (in the
// embedded bench run) 9,219 of 10,000 connections ended up there.
func (in *Ingest) WaitRoom() {
	for len(in.slots) == cap(in.slots) || in.queued.Load() > 0 {
		select {
		case <-in.room:
		case <-in.stopping:
			return
		}
	}
}

// accept validates one message and hands its readings to their
// partition; done(true) runs once they are stored on the bus (or at once
// for a rejected message), done(false) if they never will be (shutdown).
func (in *Ingest) accept(topic string, body []byte, done func(stored bool)) {
	received := time.Now()
	in.m.received.Inc()
	serial, kind, ok := in.parseTopic(topic)
	if !ok {
		in.reject(body, "", &payload.Error{Reason: ReasonBadTopic, Index: -1, Msg: "topic is not {prefix}/{serial}/telemetry or /status"})
		done(true)
		return
	}
	if !in.units.Registered(serial) {
		in.reject(body, serial, &payload.Error{Reason: ReasonUnregistered, Index: -1, Msg: "serial is not registered"})
		done(true)
		return
	}
	var readings []ups.Reading
	var err error
	if kind == "status" {
		readings, err = presence(serial, body, received)
	} else {
		readings, err = in.dec.Decode(serial, body, received, nil)
	}
	if err != nil {
		in.reject(body, serial, err)
		done(true)
		return
	}
	// Bound what is held unsettled. Blocking here pushes back on the
	// broker when the bus is slow or down.
	select {
	case in.slots <- struct{}{}:
	default:
		in.queued.Add(1)
		select {
		case in.slots <- struct{}{}:
		case <-in.stopping:
			in.queued.Add(-1)
			done(false)
			return
		}
		in.queued.Add(-1)
	}
	in.m.inflight.Inc()
	select {
	case in.parts[ups.Partition(serial, len(in.parts))].items <- item{readings: readings, done: done, received: received}:
	case <-in.stopping:
		<-in.slots
		in.m.inflight.Dec()
		done(false)
	}
}

func (in *Ingest) parseTopic(topic string) (ups.Serial, string, bool) {
	rest, ok := strings.CutPrefix(topic, in.cfg.TopicPrefix+"/")
	if !ok {
		return "", "", false
	}
	serial, kind, ok := strings.Cut(rest, "/")
	if !ok || (kind != "telemetry" && kind != "status") || !ups.ValidSerial(serial) {
		return "", "", false
	}
	return ups.Serial(serial), kind, true
}

// ownSerial copies a serial that is to outlive its message. A serial
// comes from the message's topic, and the embedded broker's topic is a
// view into the packet's buffer (mochi decodes without copying): kept as
// a map key, it would keep the whole packet alive, one per unit (in the
// embedded bench run, 10,000 packets).
func ownSerial(s ups.Serial) ups.Serial { return ups.Serial(strings.Clone(string(s))) }

func presence(serial ups.Serial, body []byte, received time.Time) ([]ups.Reading, error) {
	var p ups.Presence
	switch strings.ToLower(strings.TrimSpace(string(body))) {
	case "online":
		p = ups.PresenceOnline
	case "offline":
		p = ups.PresenceOffline
	default:
		return nil, &payload.Error{Reason: payload.ReasonMalformed, Index: -1, Msg: "status payload must be online or offline"}
	}
	return []ups.Reading{{Serial: serial, Time: received.UTC(), Presence: p}}, nil
}

// reject counts a bad message and logs it (at most once a minute per unit,
// so a flood cannot flood the log). The caller acks it: it can never
// become good, and holding it would block the unit's good messages.
func (in *Ingest) reject(body []byte, serial ups.Serial, err error) {
	reason := payload.ReasonMalformed
	var pe *payload.Error
	if errors.As(err, &pe) {
		reason = pe.Reason
	}
	in.m.rejected.WithLabelValues(string(reason)).Inc()
	now := time.Now()
	in.rejectLogMu.Lock()
	last, seen := in.rejectLog[serial]
	logIt := !seen || now.Sub(last) > time.Minute
	if logIt {
		if len(in.rejectLog) > 100000 {
			clear(in.rejectLog)
		}
		if !seen {
			serial = ownSerial(serial)
		}
		in.rejectLog[serial] = now
	}
	in.rejectLogMu.Unlock()
	if logIt {
		in.log.Warn("message rejected", "serial", serial, "reason", reason, "err", err, "bytes", len(body))
	}
}

// item is one accepted MQTT message on its way to the bus; done settles
// it (acks it to the broker, or releases a waiting Offer).
type item struct {
	readings []ups.Reading
	done     func(stored bool)
	received time.Time
}

// partition batches the readings of one bus partition and publishes each
// batch before acking its messages. One goroutine per partition keeps the
// partition's order.
type partition struct {
	in      *Ingest
	id      int
	subject string
	items   chan item
	seq     uint64

	held     []item
	readings []ups.Reading
	buf      []byte

	// status is each unit's last ups.status flags seen by this partition
	// (its goroutine alone touches it); urgent is set when a held reading
	// changes them, comes from a unit on battery, or is a presence
	// message: such a batch goes out at once instead of after
	// FlushInterval (the alert fast lane). These are rare, so batches
	// stay large.
	status map[ups.Serial]ups.Flag
	urgent bool
}

func (p *partition) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case it, ok := <-p.items:
			if !ok {
				p.flush(ctx)
				return
			}
			if len(p.held) == 0 {
				timer.Reset(p.in.cfg.FlushInterval)
			}
			p.add(it)
			// Take whatever else is already waiting before deciding.
			for len(p.readings) < p.in.cfg.BatchSize {
				select {
				case it, ok := <-p.items:
					if !ok {
						p.flush(ctx)
						return
					}
					p.add(it)
					continue
				default:
				}
				break
			}
			if len(p.readings) >= p.in.cfg.BatchSize || p.urgent {
				if p.urgent {
					p.in.m.fastFlushes.Inc()
				}
				timer.Stop()
				p.flush(ctx)
			}
		case <-timer.C:
			p.flush(ctx)
		}
	}
}

// fastLaneFlags are the status flags whose change a rule may alert on.
// Charging (CHRG, HB) and voltage regulation (TRIM, BOOST) come and go in
// normal operation and wait for the batch like any reading.
const fastLaneFlags = ups.OL | ups.OB | ups.LB | ups.DISCHRG | ups.RB | ups.BYPASS | ups.CAL | ups.OFF |
	ups.OVER | ups.FSD | ups.ALARM | ups.TEST

// urgentFlags mark a unit in trouble now: its every reading takes the
// fast lane (a replace-battery or bypass flag can last weeks and does not).
const urgentFlags = ups.OB | ups.LB | ups.DISCHRG | ups.OFF | ups.OVER | ups.FSD

func (p *partition) add(it item) {
	p.held = append(p.held, it)
	p.readings = append(p.readings, it.readings...)
	for i := range it.readings {
		r := &it.readings[i]
		switch {
		case r.Presence != ups.PresenceNone:
			p.urgent = true
		case r.HasStatus:
			flags := r.Status.Flags & fastLaneFlags
			last, known := p.status[r.Serial]
			if !known || last != flags {
				// A unit first seen on line is no news; anything else
				// first seen (on battery after a restart) is.
				p.urgent = p.urgent || known || flags&^ups.OL != 0
				key := r.Serial
				if !known {
					key = ownSerial(key)
				}
				p.status[key] = flags
			}
			// While a unit is on battery (or worse), each of its readings
			// may be the one that ends an alert's pending period or
			// crosses a low-battery threshold: it goes at once too. Few
			// units are there at a time, and then latency is what counts.
			p.urgent = p.urgent || flags&urgentFlags != 0
		}
	}
}

// flush publishes the held readings as one bus message, retrying until the
// bus takes it (or ctx ends, when the messages stay unacked for the broker
// to redeliver), then acks the MQTT messages.
func (p *partition) flush(ctx context.Context) {
	p.urgent = false
	if len(p.held) == 0 {
		return
	}
	p.seq++
	msgID := p.in.idBase + "-" + strconv.Itoa(p.id) + "-" + strconv.FormatUint(p.seq, 10)
	p.buf = ups.AppendBatch(p.buf[:0], p.readings)
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := p.in.js.Publish(pctx, p.subject, p.buf, jetstream.WithMsgID(msgID))
		cancel()
		if err == nil {
			p.in.m.publishSeconds.Observe(time.Since(start).Seconds())
			break
		}
		p.in.m.publishErrors.Inc()
		if attempt == 1 || attempt%20 == 0 {
			p.in.log.Warn("bus publish failed; holding the batch and retrying",
				"partition", p.id, "readings", len(p.readings), "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			p.in.log.Error("bus unavailable at shutdown; messages left unacked for redelivery",
				"partition", p.id, "messages", len(p.held))
			p.release(false)
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	now := time.Now()
	for _, it := range p.held {
		p.in.m.lag.Observe(now.Sub(it.received).Seconds())
	}
	p.in.m.accepted.Add(float64(len(p.readings)))
	p.in.m.batches.Inc()
	p.release(true)
}

func (p *partition) release(ack bool) {
	for i := range p.held {
		p.held[i].done(ack)
		<-p.in.slots
		p.in.m.inflight.Dec()
		p.held[i] = item{}
		select {
		case p.in.room <- struct{}{}:
		default: // enough tokens out already
		}
	}
	p.held = p.held[:0]
	clear(p.readings)
	p.readings = p.readings[:0]
}

// String describes the partition for logs.
func (p *partition) String() string { return fmt.Sprintf("partition %d", p.id) }
