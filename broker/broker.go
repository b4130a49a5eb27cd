// Package broker runs the embedded MQTT broker devices connect to when no
// external broker is configured (mochi-mqtt, in-process).
//
// Device auth follows the device contract: username = serial, password
// issued at registration, and a device may publish only under
// {prefix}/{serial}/. Anonymous clients are refused. The ingest connects
// like any other client, with a service account that may read every
// unit's topics, so the same ingest code runs against an external broker.
package broker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/upswatch/upswatch/ups"
)

// Authenticator verifies a device's credentials (the registry's view).
type Authenticator interface {
	Authenticate(serial ups.Serial, password string) bool
}

// Sink takes a device message before the broker acks it (the ingest's
// Offer): nil means stored on the bus (or rejected for good), an error
// means not stored, and the broker withholds the device's PUBACK.
type Sink interface {
	Offer(ctx context.Context, topic string, payload []byte) error
}

// Options configure the broker.
type Options struct {
	Listen      string // host:port; port 0 picks a free one
	TopicPrefix string // "ups"
	// ServiceUser/ServicePassword: the ingest's account, which may
	// subscribe to every unit's topics but publish nothing.
	ServiceUser     string
	ServicePassword string
	Devices         Authenticator
	// MaxPendingWrites bounds each client's outbound queue. Past it mochi
	// drops QoS 1 messages to that client; the drops are counted.
	MaxPendingWrites int
	// DeviceRate and DeviceBurst bound how fast one device may publish
	// (messages per second, token bucket). A device over its budget gets
	// no PUBACK, so its message stays in its own outbox for a later
	// retry, and it cannot crowd other units out of the ingest, which
	// reads every device through one ordered subscription. 0 = no limit.
	DeviceRate  float64
	DeviceBurst int
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

// Broker is the embedded MQTT broker.
type Broker struct {
	srv  *mqtt.Server
	tcp  *listeners.TCP
	hook *authHook
}

// New validates the options and binds the listener; Start serves.
func New(o Options) (*Broker, error) {
	if o.Devices == nil || o.ServiceUser == "" || o.ServicePassword == "" || o.TopicPrefix == "" {
		return nil, errors.New("broker: Devices, ServiceUser, ServicePassword and TopicPrefix are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	if o.MaxPendingWrites > 0 {
		caps.MaximumClientWritesPending = int32(o.MaxPendingWrites)
	}
	// Every unacked QoS 1 message to the ingest occupies an inflight slot;
	// allow the most the protocol's packet ids permit.
	caps.MaximumInflight = 65535
	caps.MaximumSessionExpiryInterval = 24 * 3600
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       o.Logger.With("component", "mqtt-broker"),
		// $SYS topics are of no use to devices; keep the broker quiet.
		SysTopicResendInterval: 0,
	})
	h := &authHook{opts: o, prefix: o.TopicPrefix + "/"}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if o.DeviceRate > 0 {
		h.limiters = map[string]*rate.Limiter{}
	}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker auth hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "devices", Address: o.Listen})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("mqtt listen %s: %w", o.Listen, err)
	}
	b := &Broker{srv: srv, tcp: tcp, hook: h}
	if o.Registerer != nil {
		if err := o.Registerer.Register(b.collector()); err != nil {
			return nil, fmt.Errorf("broker metrics: %w", err)
		}
	}
	return b, nil
}

// SetSink routes device telemetry and status through s before they are
// acked (see Sink). Without a sink, messages reach subscribers as usual.
func (b *Broker) SetSink(s Sink) { b.hook.sink.Store(&s) }

// Start serves clients in the background.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("mqtt broker: %w", err)
	}
	return nil
}

// Addr is the bound address (with the real port when 0 was asked).
func (b *Broker) Addr() string { return b.tcp.Address() }

// URL is the address as a tcp:// URL for clients.
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Close disconnects every client and stops the listener.
func (b *Broker) Close() error {
	b.hook.cancel()
	return b.srv.Close()
}

// Rejected returns how many connections were refused for bad credentials.
func (b *Broker) Rejected() int64 { return b.hook.rejected.Load() }

func (b *Broker) collector() prometheus.Collector {
	info := b.srv.Info
	return collectorFuncs{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_mqtt_broker_dropped_total",
			Help: "QoS>0 messages the embedded broker dropped because a client's queue was full."},
			func() float64 {
				return float64(atomic.LoadInt64(&info.MessagesDropped) + atomic.LoadInt64(&info.InflightDropped))
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "upswatch_mqtt_broker_clients_connected",
			Help: "Clients connected to the embedded broker."},
			func() float64 { return float64(atomic.LoadInt64(&info.ClientsConnected)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_mqtt_broker_auth_rejected_total",
			Help: "Connections refused for missing or wrong credentials."},
			func() float64 { return float64(b.hook.rejected.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_mqtt_broker_rate_limited_total",
			Help: "Device messages refused (not acked) because the device exceeded mqtt.device_rate."},
			func() float64 { return float64(b.hook.limited.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_mqtt_broker_unstored_total",
			Help: "Device messages whose ack was withheld because the bus did not store them (the device resends)."},
			func() float64 { return float64(b.hook.sinkFails.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_mqtt_broker_messages_received_total",
			Help: "PUBLISH packets received by the embedded broker."},
			func() float64 { return float64(atomic.LoadInt64(&info.MessagesReceived)) }),
	}
}

type collectorFuncs []prometheus.Collector

func (c collectorFuncs) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range c {
		x.Describe(ch)
	}
}

func (c collectorFuncs) Collect(ch chan<- prometheus.Metric) {
	for _, x := range c {
		x.Collect(ch)
	}
}

// authHook authenticates connections and enforces the topic ACL.
type authHook struct {
	mqtt.HookBase
	opts     Options
	prefix   string // "ups/"
	rejected atomic.Int64
	limited  atomic.Int64

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // by username, so a reconnect keeps its budget
	lastLog  map[string]time.Time

	sink      atomic.Pointer[Sink]
	sinkFails atomic.Int64
	ctx       context.Context // cancelled by Close: pending offers give up
	cancel    context.CancelFunc
}

func (h *authHook) ID() string { return "upswatch-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish}, []byte{b})
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	ok := false
	switch {
	case user == "":
		// anonymous: refused
	case user == h.opts.ServiceUser:
		ok = subtle.ConstantTimeCompare([]byte(pass), []byte(h.opts.ServicePassword)) == 1
	case ups.ValidSerial(user):
		ok = h.opts.Devices.Authenticate(ups.Serial(user), pass)
	}
	if !ok {
		h.rejected.Add(1)
		// The username may be a serial; never log the password.
		h.opts.Logger.Info("mqtt connection refused", "username", truncate(user, 32), "remote", cl.Net.Remote)
	}
	return ok
}

// OnACLCheck: the service account reads everything and writes nothing; a
// device writes and reads only below {prefix}/{its serial}/.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if user == h.opts.ServiceUser {
		return !write
	}
	own := h.prefix + user + "/"
	return strings.HasPrefix(topic, own) && !strings.ContainsAny(topic[len(own):], "+#")
}

// OnPublish enforces the per-device rate and hands device messages to the
// sink. Mochi acks a publisher before routing to subscribers, so the sink
// runs here, before the ack: ErrRejectPacket makes mochi drop the packet
// without acking it (the device resends), CodeSuccessIgnore acks it
// without routing it (the sink already stored it).
func (h *authHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	user := string(cl.Properties.Username)
	if cl.Net.Inline || user == h.opts.ServiceUser {
		return pk, nil
	}
	if h.limiters != nil && !h.allow(user) {
		return pk, packets.ErrRejectPacket
	}
	sink := h.sink.Load()
	if sink == nil {
		return pk, nil
	}
	if err := (*sink).Offer(h.ctx, pk.TopicName, pk.Payload); err != nil {
		h.sinkFails.Add(1)
		h.opts.Logger.Warn("device message not stored; withholding its ack so the device resends",
			"username", truncate(user, 32), "err", err)
		return pk, packets.ErrRejectPacket
	}
	return pk, packets.CodeSuccessIgnore
}

// allow takes one message from the device's budget.
func (h *authHook) allow(user string) bool {
	now := time.Now()
	h.mu.Lock()
	l := h.limiters[user]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(h.opts.DeviceRate), max(h.opts.DeviceBurst, 1))
		h.limiters[user] = l
	}
	ok := l.AllowN(now, 1)
	logIt := false
	if !ok {
		if h.lastLog == nil {
			h.lastLog = map[string]time.Time{}
		}
		if now.Sub(h.lastLog[user]) > time.Minute {
			h.lastLog[user] = now
			logIt = true
		}
	}
	h.mu.Unlock()
	if ok {
		return true
	}
	h.limited.Add(1)
	if logIt {
		h.opts.Logger.Warn("device over its publish rate; messages refused", "username", truncate(user, 32),
			"rate", h.opts.DeviceRate, "burst", h.opts.DeviceBurst)
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
