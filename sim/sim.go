package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/ups"
)

// Unit is one simulated UPS and its MQTT credentials.
type Unit struct {
	Serial   ups.Serial
	Password string // issued at registration; never logged
	// Site is the unit's site, for events of a site (blackout).
	Site string
}

// Config describes a simulation run.
type Config struct {
	// BrokerURL is the MQTT broker: tcp://host:port (or mqtt://), or
	// ssl://, tls://, mqtts:// for TLS.
	BrokerURL string
	// TLS configures ssl:// connections (RootCAs: the CA file to trust);
	// nil: the system roots.
	TLS *tls.Config
	// Certificates are the units' client certificates (subject CN = the
	// serial), presented over TLS; a unit without one uses its password.
	Certificates map[ups.Serial]*tls.Certificate
	// Prefix of the topics; default "ups".
	Prefix string
	Units  []Unit
	// Interval between two readings of one unit; default 10s.
	Interval time.Duration
	// Rate is the total readings per second over all units. When set it
	// overrides Interval (Interval = len(Units) / Rate).
	Rate float64
	// Duration of publishing; 0 runs until the context is done.
	Duration time.Duration
	// Count bounds the reading slots per unit; 0 is unlimited. A slot
	// falling in a CommLoss event, or while the unit is not connected,
	// publishes nothing.
	Count int
	// QoS of the telemetry: 0, 1 or 2.
	QoS byte
	// Format of the telemetry payload: FormatJSON (default) or FormatUPSC.
	Format string
	// Dumps are upsc dump files; unit i is modelled on Dumps[i%len(Dumps)].
	Dumps  []string
	Events []Event
	// Seed makes the readings reproducible: the same seed and serial give
	// the same sequence of values.
	Seed   int64
	Logger *slog.Logger

	// Workers is the number of scheduler goroutines publishing readings;
	// default 2×GOMAXPROCS, at most len(Units).
	Workers int
	// ConnectConcurrency bounds the connection attempts in flight, so
	// thousands of units connect quickly without a thundering herd;
	// default 64.
	ConnectConcurrency int
	// ConnectTimeout bounds one unit's connection (TCP, TLS and CONNACK);
	// default 10s.
	ConnectTimeout time.Duration
}

// Stats counts what a run did. Telemetry only: the status messages are
// not counted.
type Stats struct {
	Start         time.Time // when publishing began; zero before
	Connected     int       // units connected at the start
	ConnectFailed int       // units that could not connect
	Published     uint64    // readings handed to the MQTT client
	Acked         uint64    // readings the broker acknowledged (QoS 1 and 2)
	Errors        uint64    // readings whose publish failed
	Skipped       uint64    // reading slots of a disconnected or backlogged unit
	// Unconfirmed readings were in flight when their connection went
	// down: paho resends QoS 1 ones after reconnecting, but whether the
	// broker got them is not known.
	Unconfirmed uint64
}

// ErrConfig is returned (wrapped) by New for an unusable Config.
var ErrConfig = errors.New("invalid simulator config")

const (
	defaultInterval           = 10 * time.Second
	defaultConnectConcurrency = 64
	defaultConnectTimeout     = 10 * time.Second
	// maxReconnectInterval caps paho's reconnect backoff, so a unit is
	// back within this long after a CommLoss event ends.
	maxReconnectInterval = 2 * time.Second
	// writeTimeout bounds a blocked publish, so one stuck connection
	// cannot stall a scheduler (and all its other units) for long.
	writeTimeout = 5 * time.Second
	// statusTimeout bounds the wait for an online/offline status PUBACK.
	statusTimeout = 5 * time.Second
	// drainTimeout bounds the wait for the last PUBACKs at the end.
	drainTimeout = 5 * time.Second
	// maxPending bounds a unit's unacknowledged readings: past it the
	// broker is not keeping up and readings are skipped, not queued.
	maxPending = 64
	// maxErrorLogs bounds the logs of connect and of publish failures;
	// the rest are only counted.
	maxErrorLogs = 10
)

// Simulator publishes readings for many units. Create it with New.
type Simulator struct {
	cfg      Config
	log      *slog.Logger
	interval time.Duration
	units    []*unit
	running  atomic.Bool
	// Test hooks, called from Run's goroutine when publishing starts and
	// when it has ended (acknowledgements drained): benchmarks time the
	// publishing alone, without connecting and disconnecting.
	onPublishing, onPublished func()

	start         atomic.Int64 // unix nanoseconds; 0 before publishing began
	connected     atomic.Int64
	connectFailed atomic.Int64
	published     atomic.Uint64
	acked         atomic.Uint64
	errors        atomic.Uint64
	skipped       atomic.Uint64
	unconfirmed   atomic.Uint64
}

// unit is the run state of one simulated UPS. Except for the atomics,
// it is owned by the scheduler goroutine its shard belongs to.
type unit struct {
	Unit
	telemetry, status string
	model             *model
	hasCommLoss       bool

	client mqtt.Client
	// down is set for the length of a CommLoss event: the dialer then
	// refuses, so paho's reconnect loop waits it out.
	down atomic.Bool
	conn atomic.Pointer[droppableConn] // the live connection, to drop on CommLoss
	// gen counts connections. A publish that completes on a later
	// connection than its own was superseded by paho's resend, not
	// acknowledged, and its buffer may still be in use.
	gen atomic.Uint64

	dropped bool // scheduler's view: the CommLoss drop was done
	pending []inflight
	free    [][]byte
	bufSize int
}

// droppableConn is a connection a CommLoss event can cut. paho ignores
// "use of closed network connection" errors, taking them for its own
// Disconnect, so after a drop Read and Write report errLinkDown instead
// and paho sees a lost link.
type droppableConn struct {
	net.Conn
	dropped atomic.Bool
}

func (c *droppableConn) drop() error {
	c.dropped.Store(true)
	return c.Conn.Close()
}

func (c *droppableConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.dropped.Load() {
		err = errLinkDown
	}
	return n, err
}

func (c *droppableConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil && c.dropped.Load() {
		err = errLinkDown
	}
	return n, err
}

type inflight struct {
	tok mqtt.Token
	buf []byte
	gen uint64
}

// New validates cfg, reads the dumps and builds every unit's model. It
// starts nothing.
func New(cfg Config) (*Simulator, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "ups"
	}
	if cfg.Format == "" {
		cfg.Format = FormatJSON
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnectConcurrency <= 0 {
		cfg.ConnectConcurrency = defaultConnectConcurrency
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	// validate normalises events in place: work on a copy, not the
	// caller's slice.
	cfg.Events = slices.Clone(cfg.Events)
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	interval := cfg.Interval
	if interval == 0 {
		interval = defaultInterval
	}
	if cfg.Rate > 0 {
		interval = time.Duration(float64(len(cfg.Units)) / cfg.Rate * float64(time.Second))
		if interval <= 0 {
			return nil, fmt.Errorf("%w: rate %v is too high for %d units", ErrConfig, cfg.Rate, len(cfg.Units))
		}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	cfg.Workers = min(cfg.Workers, len(cfg.Units))

	dumps := make([]Dump, len(cfg.Dumps))
	for i, p := range cfg.Dumps {
		d, err := ReadDump(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		dumps[i] = d
	}

	s := &Simulator{cfg: cfg, log: cfg.Logger, interval: interval}
	s.units = make([]*unit, len(cfg.Units))
	for i, cu := range cfg.Units {
		var evs []Event
		hasCommLoss := false
		for _, e := range cfg.Events {
			if e.appliesTo(cu) {
				evs = append(evs, e)
				hasCommLoss = hasCommLoss || e.Kind == CommLoss
			}
		}
		var d *Dump
		if len(dumps) > 0 {
			d = &dumps[i%len(dumps)]
		}
		s.units[i] = &unit{
			Unit:        cu,
			telemetry:   cfg.Prefix + "/" + string(cu.Serial) + "/telemetry",
			status:      cfg.Prefix + "/" + string(cu.Serial) + "/status",
			model:       newModel(cu.Serial, unitRand(cfg.Seed, cu.Serial), d, evs, cfg.Format),
			hasCommLoss: hasCommLoss,
			bufSize:     512,
		}
	}
	return s, nil
}

// unitRand gives a unit its own random stream, keyed by its serial so a
// unit's readings do not depend on the other units of the run.
func unitRand(seed int64, serial ups.Serial) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(serial))
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
}

func validate(cfg *Config) error {
	u, err := url.Parse(cfg.BrokerURL)
	if err != nil {
		return fmt.Errorf("%w: broker URL: %w", ErrConfig, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return fmt.Errorf("%w: broker URL %q: scheme must be tcp, mqtt, ssl, tls or mqtts", ErrConfig, cfg.BrokerURL)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: broker URL %q has no host", ErrConfig, cfg.BrokerURL)
	}
	if strings.ContainsAny(cfg.Prefix, "+#") || strings.HasSuffix(cfg.Prefix, "/") || strings.HasPrefix(cfg.Prefix, "/") {
		return fmt.Errorf("%w: prefix %q must not hold wildcards or start or end with /", ErrConfig, cfg.Prefix)
	}
	if len(cfg.Units) == 0 {
		return fmt.Errorf("%w: no units", ErrConfig)
	}
	seen := make(map[ups.Serial]bool, len(cfg.Units))
	for _, un := range cfg.Units {
		if !ups.ValidSerial(string(un.Serial)) {
			return fmt.Errorf("%w: unit %q: %w", ErrConfig, un.Serial, ups.ErrInvalidSerial)
		}
		if seen[un.Serial] {
			return fmt.Errorf("%w: unit %s listed twice", ErrConfig, un.Serial)
		}
		seen[un.Serial] = true
	}
	switch {
	case cfg.Interval < 0:
		return fmt.Errorf("%w: negative interval", ErrConfig)
	case cfg.Rate < 0:
		return fmt.Errorf("%w: negative rate", ErrConfig)
	case cfg.Duration < 0:
		return fmt.Errorf("%w: negative duration", ErrConfig)
	case cfg.Count < 0:
		return fmt.Errorf("%w: negative count", ErrConfig)
	case cfg.QoS > 2:
		return fmt.Errorf("%w: QoS %d (want 0, 1 or 2)", ErrConfig, cfg.QoS)
	case cfg.Format != FormatJSON && cfg.Format != FormatUPSC:
		return fmt.Errorf("%w: format %q (want %s or %s)", ErrConfig, cfg.Format, FormatJSON, FormatUPSC)
	}
	for i := range cfg.Events {
		e := &cfg.Events[i]
		if err := e.validate(); err != nil {
			return fmt.Errorf("%w: event %d (%v): %w", ErrConfig, i, e, err)
		}
		if e.Kind == Flicker {
			e.For = FlickerDuration
		}
		for _, sn := range e.Units {
			if !seen[sn] {
				return fmt.Errorf("%w: event %v names unit %s, which is not simulated", ErrConfig, e, sn)
			}
		}
	}
	return nil
}

// Stats returns the counters so far. It is safe to call at any time.
func (s *Simulator) Stats() Stats {
	st := Stats{
		Connected:     int(s.connected.Load()),
		ConnectFailed: int(s.connectFailed.Load()),
		Published:     s.published.Load(),
		Acked:         s.acked.Load(),
		Errors:        s.errors.Load(),
		Skipped:       s.skipped.Load(),
		Unconfirmed:   s.unconfirmed.Load(),
	}
	if ns := s.start.Load(); ns != 0 {
		st.Start = time.Unix(0, ns)
	}
	return st
}

// Run connects every unit, publishes readings until Count or Duration is
// reached or ctx is done, waits briefly for the last acknowledgements, then
// says offline and disconnects every unit. Event offsets count from the
// moment publishing starts, after the connections. It returns nil when
// stopped by ctx; an error when no unit could connect. Run may be called
// once.
func (s *Simulator) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("sim: Run called twice")
	}
	up, err := s.connectAll(ctx)
	defer s.disconnectAll(up)
	if ctx.Err() != nil {
		return nil
	}
	if len(up) == 0 {
		return fmt.Errorf("sim: no unit could connect to %s: %w", s.cfg.BrokerURL, err)
	}

	start := time.Now().Truncate(time.Millisecond)
	s.start.Store(start.UnixNano())
	if s.onPublishing != nil {
		s.onPublishing()
	}
	s.log.Info("simulation started",
		"units", len(up), "connect_failed", s.connectFailed.Load(),
		"interval", s.interval, "workers", s.cfg.Workers, "qos", s.cfg.QoS, "format", s.cfg.Format)

	workers := min(s.cfg.Workers, len(up))
	var wg sync.WaitGroup
	for w := range workers {
		var shard []*unit
		for i := w; i < len(up); i += workers {
			shard = append(shard, up[i])
		}
		// Offsetting each worker's phase interleaves their units, so the
		// readings are spread evenly over the interval.
		phase := s.interval * time.Duration(w) / time.Duration(len(up))
		wg.Go(func() { s.schedule(ctx, shard, start, phase) })
	}
	wg.Wait()
	if s.onPublished != nil {
		s.onPublished()
	}
	st := s.Stats()
	s.log.Info("simulation finished",
		"published", st.Published, "acked", st.Acked, "errors", st.Errors, "skipped", st.Skipped, "unconfirmed", st.Unconfirmed,
		"elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// schedule publishes the readings of one shard of units: slot k of the
// shard goes to unit k%n at offset phase + (k/n)×interval +
// (k%n)×interval/n. One goroutine and one timer serve the whole shard;
// when behind, it publishes without sleeping until it catches up.
func (s *Simulator) schedule(ctx context.Context, shard []*unit, start time.Time, phase time.Duration) {
	n := len(shard)
	done := ctx.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	total := s.cfg.Count * n
	for k := 0; total == 0 || k < total; k++ {
		off := phase + time.Duration(k/n)*s.interval + time.Duration(k%n)*s.interval/time.Duration(n)
		if s.cfg.Duration > 0 && off >= s.cfg.Duration {
			break
		}
		due := start.Add(off)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-done:
				s.drain(shard)
				return
			case <-timer.C:
			}
		} else {
			select {
			case <-done:
				s.drain(shard)
				return
			default:
			}
		}
		s.tick(shard[k%n], off, due)
	}
	s.drain(shard)
}

// tick takes one reading of u at offset off.
func (s *Simulator) tick(u *unit, off time.Duration, due time.Time) {
	s.reap(u)
	if u.hasCommLoss {
		lost := u.model.powerAt(off).commLoss
		switch {
		case lost && !u.dropped:
			u.dropped = true
			u.down.Store(true)
			if c := u.conn.Load(); c != nil {
				// Closing the socket without DISCONNECT is what a dead
				// link looks like to the broker: it publishes the will.
				_ = c.drop()
			}
			s.log.Info("unit link dropped", "serial", u.Serial, "offset", off)
		case !lost && u.dropped:
			u.dropped = false
			u.down.Store(false)
			s.log.Info("unit link restored", "serial", u.Serial, "offset", off)
		}
		if lost {
			return
		}
	}
	if !u.client.IsConnectionOpen() || len(u.pending) >= maxPending {
		s.skipped.Add(1)
		return
	}
	var buf []byte
	if k := len(u.free); k > 0 {
		buf, u.free = u.free[k-1], u.free[:k-1]
	} else {
		buf = make([]byte, 0, u.bufSize)
	}
	buf = u.model.appendReading(buf, off, due)
	u.bufSize = max(u.bufSize, cap(buf))
	gen := u.gen.Load()
	tok := u.client.Publish(u.telemetry, s.cfg.QoS, false, buf)
	s.published.Add(1)
	u.pending = append(u.pending, inflight{tok, buf, gen})
}

// reap settles u's completed publishes. A payload buffer is reused only
// once paho is done with it: after the PUBACK (QoS 1) or the write (QoS
// 0). A failed publish may still sit in paho's store, so its buffer is
// left to the garbage collector.
func (s *Simulator) reap(u *unit) {
	k := 0
	for _, f := range u.pending {
		select {
		case <-f.tok.Done():
			s.settle(u, f)
		default:
			u.pending[k] = f
			k++
		}
	}
	clear(u.pending[k:])
	u.pending = u.pending[:k]
}

func (s *Simulator) settle(u *unit, f inflight) {
	err := f.tok.Error()
	if f.gen != u.gen.Load() || errors.Is(err, errLinkDown) {
		// On reconnect paho resends the stored message (sharing the
		// buffer) and completes the original token without error.
		s.unconfirmed.Add(1)
		return
	}
	if err != nil {
		if s.errors.Add(1) <= maxErrorLogs {
			s.log.Warn("publish failed", "serial", u.Serial, "error", err)
		}
		return
	}
	if s.cfg.QoS > 0 {
		s.acked.Add(1)
	}
	if len(u.free) < 2 {
		u.free = append(u.free, f.buf[:0])
	}
}

// drain waits, up to drainTimeout for the whole shard, for the
// acknowledgements still outstanding.
func (s *Simulator) drain(shard []*unit) {
	deadline := time.Now().Add(drainTimeout)
	for _, u := range shard {
		for _, f := range u.pending {
			if f.tok.WaitTimeout(time.Until(deadline)) {
				s.settle(u, f)
			}
		}
		clear(u.pending)
		u.pending = u.pending[:0]
	}
}

// connectAll connects the units, at most ConnectConcurrency at a time,
// and returns those connected, in configuration order. Failures are
// counted and the first few logged; the first error is returned.
func (s *Simulator) connectAll(ctx context.Context) ([]*unit, error) {
	sem := make(chan struct{}, s.cfg.ConnectConcurrency)
	ok := make([]bool, len(s.units))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	began := time.Now()
launch:
	for i, u := range s.units {
		select {
		case <-ctx.Done():
			break launch
		case sem <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := s.connect(u)
			if err == nil {
				ok[i] = true
				s.connected.Add(1)
				return
			}
			if n := s.connectFailed.Add(1); n <= maxErrorLogs {
				s.log.Warn("unit connect failed", "serial", u.Serial, "error", err)
			}
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	var up []*unit
	for i, u := range s.units {
		if ok[i] {
			up = append(up, u)
		}
	}
	s.log.Info("units connected", "connected", len(up), "failed", s.connectFailed.Load(),
		"elapsed", time.Since(began).Round(time.Millisecond))
	return up, firstErr
}

// connect creates u's client and connects it. The client says online
// (retained) on every connection and leaves offline as its will.
func (s *Simulator) connect(u *unit) error {
	opts := mqtt.NewClientOptions().
		AddBroker(s.cfg.BrokerURL).
		SetClientID(string(u.Serial)).
		SetUsername(string(u.Serial)).
		SetPassword(u.Password).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(maxReconnectInterval).
		SetConnectTimeout(s.cfg.ConnectTimeout).
		SetWriteTimeout(writeTimeout).
		SetWill(u.status, "offline", 1, true).
		SetCustomOpenConnectionFn(u.dial).
		SetStore(newResumeSafeStore()).
		SetOnConnectHandler(func(c mqtt.Client) {
			// paho runs this in its own goroutine, so waiting is fine.
			tok := c.Publish(u.status, 1, true, "online")
			if !tok.WaitTimeout(statusTimeout) {
				s.log.Warn("status publish timed out", "serial", u.Serial)
			} else if err := tok.Error(); err != nil {
				s.log.Warn("status publish failed", "serial", u.Serial, "error", err)
			}
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			if !u.down.Load() {
				s.log.Warn("unit connection lost", "serial", u.Serial, "error", err)
			}
		})
	cert := s.cfg.Certificates[u.Serial]
	if s.cfg.TLS != nil || cert != nil {
		conf := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.cfg.TLS != nil {
			conf = s.cfg.TLS.Clone()
		}
		if cert != nil {
			conf.Certificates = []tls.Certificate{*cert}
		}
		if conf.ServerName == "" {
			if bu, err := url.Parse(s.cfg.BrokerURL); err == nil {
				conf.ServerName = bu.Hostname()
			}
		}
		opts.SetTLSConfig(conf)
	}
	u.client = mqtt.NewClient(opts)
	tok := u.client.Connect()
	if !tok.WaitTimeout(s.cfg.ConnectTimeout + time.Second) {
		u.client.Disconnect(0)
		return fmt.Errorf("connect %s: timed out after %v", u.Serial, s.cfg.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("connect %s: %w", u.Serial, err)
	}
	return nil
}

// errLinkDown is what the dialer answers during a CommLoss event.
var errLinkDown = errors.New("simulated communication loss")

// dial opens the unit's connection and keeps a handle on it so a CommLoss
// event can drop it the way a dead link would.
func (u *unit) dial(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	if u.down.Load() {
		return nil, errLinkDown
	}
	d := net.Dialer{Timeout: o.ConnectTimeout}
	host := uri.Host
	var (
		c   net.Conn
		err error
	)
	switch uri.Scheme {
	case "ssl", "tls", "mqtts":
		if uri.Port() == "" {
			host = net.JoinHostPort(uri.Hostname(), "8883")
		}
		cfg := o.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{ServerName: uri.Hostname()}
		}
		c, err = tls.DialWithDialer(&d, "tcp", host, cfg)
	default:
		if uri.Port() == "" {
			host = net.JoinHostPort(uri.Hostname(), "1883")
		}
		c, err = d.Dial("tcp", host)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", host, err)
	}
	dc := &droppableConn{Conn: c}
	u.conn.Store(dc)
	u.gen.Add(1)
	// A CommLoss may have begun while dialling; the scheduler then dropped
	// the previous connection, so this one must go too.
	if u.down.Load() {
		_ = c.Close()
		return nil, errLinkDown
	}
	return dc, nil
}

// disconnectAll says offline for each unit still connected, as a device
// shutting down cleanly does (a clean DISCONNECT suppresses the will), and
// disconnects, at most ConnectConcurrency at a time.
func (s *Simulator) disconnectAll(up []*unit) {
	sem := make(chan struct{}, s.cfg.ConnectConcurrency)
	var wg sync.WaitGroup
	for _, u := range up {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if u.client.IsConnectionOpen() {
				tok := u.client.Publish(u.status, 1, true, "offline")
				if tok.WaitTimeout(statusTimeout) && tok.Error() != nil {
					s.log.Warn("status publish failed", "serial", u.Serial, "error", tok.Error())
				}
			}
			u.client.Disconnect(250)
		})
	}
	wg.Wait()
}
