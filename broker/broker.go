// Package broker runs the embedded MQTT broker devices connect to when no
// external broker is configured (mochi-mqtt, in-process).
//
// Device auth follows the device contract: username = serial, password
// issued at registration, and a device may publish only under
// {prefix}/{serial}/. Anonymous clients are refused. The ingest connects
// like any other client, with a service account that may read every
// unit's topics, so the same ingest code runs against an external broker;
// once it is the broker's sink (SetSink), the devices' messages and wills
// reach it through the sink instead, none by its subscription.
package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/certs"
	"github.com/upswatch/upswatch/ups"
)

// Authenticator verifies a device's credentials (the registry's view).
type Authenticator interface {
	Authenticate(serial ups.Serial, password string) bool
	Registered(serial ups.Serial) bool
}

// Revocations tells whether a device's certificates are revoked: those
// valid from (NotBefore) at or before the time returned.
type Revocations interface {
	RevokedAt(serial ups.Serial) (time.Time, bool)
}

// How devices authenticate (Options.DeviceAuth).
const (
	AuthPassword    = "password"    // username = serial, password
	AuthCertificate = "certificate" // a client certificate naming the serial
	AuthEither      = "either"      // a certificate when the device presents one, else the password
)

// Sink takes a device message before the broker acks it (the ingest's
// Offer): nil means stored on the bus (or rejected for good), an error
// means not stored, and the broker withholds the device's PUBACK.
//
// OfferAsync is the same without waiting: it must not keep payload after
// it returns, and it calls done exactly once, from any goroutine, when
// the message is settled. A device's QoS 0 and 1 telemetry (and its
// will, OnWill) takes it, so the device's connection goroutine goes back
// to reading at once instead of waiting (up to the ingest's flush
// interval) deep in the broker's call stack: there, under load, 10,000
// connection goroutines held 32 KiB stacks each
// (BenchmarkConnectionMemory).
type Sink interface {
	Offer(ctx context.Context, topic string, payload []byte) error
	OfferAsync(topic string, payload []byte, done func(error))
}

// Options configure the broker.
type Options struct {
	Listen      string // host:port; port 0 picks a free one
	TopicPrefix string // "ups"
	// TLS, when set, serves MQTT over TLS on TLSListen and, when
	// WSListen is set, MQTT over WebSocket with TLS there. Without TLS,
	// WSListen serves plain WebSocket.
	TLS       *tls.Config
	TLSListen string
	WSListen  string
	// ClientCAs verify device certificates; DeviceAuth (AuthPassword by
	// default) says whether devices use them. A certificate names its
	// device by subject CN or a DNS SAN equal to the serial.
	ClientCAs  *x509.CertPool
	DeviceAuth string
	// Revoked lists revoked device certificates (nil: none).
	Revoked Revocations
	// Failures, when set, limits failed CONNECTs per username and per
	// source address: over the budget a CONNECT is refused before its
	// credentials are checked.
	Failures *access.FailureLimiter
	// ServiceUser/ServicePassword: the ingest's account, which may
	// subscribe to every unit's topics but publish nothing.
	ServiceUser     string
	ServicePassword string
	Devices         Authenticator
	// MaxPendingWrites bounds each client's outbound queue. Past it mochi
	// drops QoS 1 messages to that client; the drops are counted. With a
	// sink nothing is routed to the ingest (see OnACLCheck) and devices
	// receive nothing, so a few slots do.
	MaxPendingWrites int
	// DeviceRate and DeviceBurst bound how fast one device may publish
	// (messages per second, token bucket). A device over its budget gets
	// no PUBACK, so its message stays in its own outbox for a later
	// retry, and it cannot crowd other units out of the ingest, which
	// reads every device through one ordered subscription. 0 = no limit.
	DeviceRate  float64
	DeviceBurst int
	// AwaitSink refuses devices ("server unavailable"; they retry) until
	// SetSink. The broker must listen before the ingest exists (the
	// ingest connects to it), and what a device published in between
	// would be acked and routed to no one: after a restart, a device's
	// whole replayed backlog.
	AwaitSink  bool
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Broker is the embedded MQTT broker.
type Broker struct {
	srv  *mqtt.Server
	tcp  *streamListener
	tls  *streamListener
	ws   *wsListener
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
	switch o.DeviceAuth {
	case "":
		o.DeviceAuth = AuthPassword
	case AuthPassword:
	case AuthCertificate, AuthEither:
		if o.ClientCAs == nil || o.TLS == nil {
			return nil, fmt.Errorf("broker: device auth %q needs TLS and client CAs", o.DeviceAuth)
		}
	default:
		return nil, fmt.Errorf("broker: unknown device auth %q", o.DeviceAuth)
	}
	if o.TLSListen != "" && o.TLS == nil {
		return nil, errors.New("broker: TLSListen needs TLS")
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
		// Every connected device holds a read buffer for its life:
		// mochi's 2 KiB default is 20 MiB at 10,000 devices. A reading's
		// fixed header and topic fit in far less, and a larger payload
		// is read straight into its own slice whatever the buffer size.
		ClientNetReadBufferSize: clientReadBuffer,
	})
	h := &authHook{opts: o, prefix: o.TopicPrefix + "/", logged: map[string]time.Time{}, refused: map[string]*atomic.Int64{},
		sinkLog: sparseLog{every: sinkFailLogEvery}, now: time.Now, srv: srv, clients: srv.Clients}
	for _, r := range RefusalReasons {
		h.refused[r] = new(atomic.Int64)
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if o.DeviceRate > 0 {
		h.limiters, h.epoch = map[string]bucket{}, time.Now()
	}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker auth hook: %w", err)
	}
	tcp, err := newStreamListener(plainListener, o.Listen, nil)
	if err != nil {
		return nil, err
	}
	// From here on a listener is bound: a failure closes what is open.
	fail := func(err error) (*Broker, error) {
		_ = srv.Close()
		return nil, err
	}
	tcp.gate, tcp.pace = h.admit, h.pace
	if err = srv.AddListener(tcp); err != nil {
		_ = tcp.ln.Close()
		return fail(fmt.Errorf("mqtt listen %s: %w", o.Listen, err))
	}
	b := &Broker{srv: srv, tcp: tcp, hook: h}
	tlsConf := o.TLS
	if tlsConf != nil && o.ClientCAs != nil && o.DeviceAuth != AuthPassword {
		// The handshake asks for a certificate and checks the device holds
		// its key; the auth hook verifies it, so a refusal has a reason.
		tlsConf = tlsConf.Clone()
		tlsConf.ClientAuth = tls.RequestClientCert
	}
	if o.TLSListen != "" {
		if b.tls, err = newStreamListener("tls", o.TLSListen, tlsConf); err != nil {
			return fail(err)
		}
		b.tls.gate, b.tls.pace = h.admit, h.pace
		if err := srv.AddListener(b.tls); err != nil {
			_ = b.tls.ln.Close()
			return fail(fmt.Errorf("mqtt tls listener: %w", err))
		}
	}
	if o.WSListen != "" {
		if b.ws, err = newWSListener("ws", o.WSListen, tlsConf); err != nil {
			return fail(err)
		}
		b.ws.gate = h.admit
		if err := srv.AddListener(b.ws); err != nil {
			_ = b.ws.ln.Close()
			return fail(fmt.Errorf("mqtt websocket listener: %w", err))
		}
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(b.collector()); err != nil {
			return fail(fmt.Errorf("broker metrics: %w", err))
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

// TLSAddr is the MQTT-over-TLS listener's address ("" when off).
func (b *Broker) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// WSAddr is the WebSocket listener's address ("" when off).
func (b *Broker) WSAddr() string {
	if b.ws == nil {
		return ""
	}
	return b.ws.Address()
}

// Disconnect ends every session of the device serial (its password
// changed, or it was deleted) and returns how many it ended.
func (b *Broker) Disconnect(serial ups.Serial, why string) int {
	return b.disconnect(serial, why, func(*mqtt.Client) bool { return true })
}

// DisconnectCertificates ends the sessions of serial that authenticated
// with a certificate valid from at or before revokedAt.
func (b *Broker) DisconnectCertificates(serial ups.Serial, revokedAt time.Time) int {
	return b.disconnect(serial, "certificate revoked", func(cl *mqtt.Client) bool {
		st := tlsState(cl.Net.Conn)
		return st != nil && len(st.PeerCertificates) > 0 && b.hook.opts.DeviceAuth != AuthPassword &&
			!st.PeerCertificates[0].NotBefore.After(revokedAt)
	})
}

func (b *Broker) disconnect(serial ups.Serial, why string, match func(*mqtt.Client) bool) int {
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Inline || string(cl.Properties.Username) != string(serial) || cl.Closed() || !match(cl) {
			continue
		}
		cl.Stop(fmt.Errorf("disconnected by upswatch: %s", why))
		n++
	}
	if n > 0 {
		b.hook.opts.Logger.Info("device disconnected", "serial", serial, "why", why, "sessions", n)
	}
	return n
}

// Refused returns how many connections were refused for reason (see
// RefusalReasons).
func (b *Broker) Refused(reason string) int64 {
	if c := b.hook.refused[reason]; c != nil {
		return c.Load()
	}
	return 0
}

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
		refusedCollector{b.hook},
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

var refusedDesc = prometheus.NewDesc("upswatch_mqtt_broker_connect_refused_total",
	"Connections the embedded broker refused, by reason (throttled: too many failures from the address or for the username).",
	[]string{"reason"}, nil)

// refusedCollector reports the refusals by reason.
type refusedCollector struct{ h *authHook }

func (c refusedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- refusedDesc }

func (c refusedCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range RefusalReasons {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(c.h.refused[r].Load()), r)
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

// plainListener is the id of the plain TCP listener (Options.Listen).
const plainListener = "devices"

// RefusalReasons label upswatch_mqtt_broker_connect_refused_total.
var RefusalReasons = []string{
	"anonymous", "bad_password", "unknown_unit", "throttled", "starting",
	certs.ReasonNoCertificate, certs.ReasonUntrusted, certs.ReasonExpired, certs.ReasonInvalid,
	certs.ReasonOtherSerial, certs.ReasonRevoked,
}

// authHook authenticates connections and enforces the topic ACL.
type authHook struct {
	mqtt.HookBase
	opts     Options
	prefix   string // "ups/"
	rejected atomic.Int64
	refused  map[string]*atomic.Int64 // by reason; fixed at construction
	limited  atomic.Int64

	mu       sync.Mutex
	limiters map[string]bucket // by username, so a reconnect keeps its budget
	epoch    time.Time         // the buckets' clock starts here
	lastLog  map[string]time.Time
	logged   map[string]time.Time // refusals logged, by source address

	srv       *mqtt.Server  // for a refusal's CONNACK (OnConnect)
	clients   *mqtt.Clients // mochi's, for a delayed will (OnWill)
	sink      atomic.Pointer[Sink]
	sinkFails atomic.Int64
	sinkLog   sparseLog // the warning for sinkFails
	now       func() time.Time
	ctx       context.Context // cancelled by Close: pending offers give up
	cancel    context.CancelFunc
}

func (h *authHook) ID() string { return "upswatch-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnWill}, []byte{b})
}

// OnConnect refuses devices while the broker awaits its sink
// (Options.AwaitSink), with "server unavailable": the device keeps its
// readings and retries, where "bad password" would tell it its
// credentials are wrong. The service account (the ingest) is let in.
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if !h.opts.AwaitSink || h.sink.Load() != nil || string(pk.Connect.Username) == h.opts.ServiceUser {
		return nil
	}
	addr := cl.Net.Remote
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	h.rejected.Add(1)
	h.refused["starting"].Add(1)
	h.logRefusal(string(pk.Connect.Username), addr, "starting", time.Now())
	if err := h.srv.SendConnack(cl, packets.ErrServerUnavailable, false, nil); err != nil {
		return fmt.Errorf("refusing a device while starting: %w", err)
	}
	return packets.ErrServerUnavailable
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	addr := cl.Net.Remote
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	now := time.Now()
	// Only names that can exist get a bucket of their own: a flood of
	// made-up usernames shares one. A device certificate is its own
	// account (it cannot be guessed), so guessing with usernames locks no
	// certificate out.
	account := user
	switch {
	case user == h.opts.ServiceUser:
		// Its name is no secret: failures from elsewhere must not lock
		// the ingest out.
		account = user + "@" + addr
	case !ups.ValidSerial(user):
		account = "?"
	}
	if st := tlsState(cl.Net.Conn); st != nil && len(st.PeerCertificates) > 0 && h.opts.DeviceAuth != AuthPassword {
		sum := sha256.Sum256(st.PeerCertificates[0].Raw)
		account = "cert:" + hex.EncodeToString(sum[:12])
	}
	reason := ""
	if h.opts.Failures != nil && h.opts.Failures.Wait(account, addr, now) > 0 {
		reason = "throttled"
	} else {
		var serial string
		serial, reason = h.authenticate(cl, user, string(pk.Connect.Password), now)
		if reason == "" {
			// A device known by its certificate may leave the username
			// empty: the ACL binds it to the certificate's serial.
			cl.Properties.Username = []byte(serial)
			return true
		}
		if h.opts.Failures != nil {
			h.opts.Failures.Fail(account, addr, now)
		}
	}
	h.rejected.Add(1)
	h.refused[reason].Add(1)
	h.logRefusal(user, addr, reason, now)
	return false
}

// admit tells whether to serve a new connection from remote: not while
// the address is over its budget of failed CONNECTs. Such a connection is
// closed before anything is read from it (no TLS handshake, no client
// state), so a flood from one address costs little more than its
// accepts.
func (h *authHook) admit(remote string) bool {
	if h.opts.Failures == nil {
		return true
	}
	addr := remote
	if host, _, err := net.SplitHostPort(remote); err == nil {
		addr = host
	}
	now := time.Now()
	if h.opts.Failures.WaitAddr(addr, now) == 0 {
		return true
	}
	h.rejected.Add(1)
	h.refused["throttled"].Add(1)
	h.logRefusal("", addr, "throttled", now)
	return false
}

// authenticate returns the identity a connection proves, or why it is
// refused.
func (h *authHook) authenticate(cl *mqtt.Client, user, pass string, now time.Time) (string, string) {
	if user != "" && user == h.opts.ServiceUser {
		// The ingest comes in through the plain listener (on loopback);
		// the listeners facing devices do not take its account.
		if cl.Net.Listener != plainListener {
			return "", "bad_password"
		}
		if subtle.ConstantTimeCompare([]byte(pass), []byte(h.opts.ServicePassword)) == 1 {
			return user, ""
		}
		return "", "bad_password"
	}
	var chain []*x509.Certificate
	if st := tlsState(cl.Net.Conn); st != nil {
		chain = st.PeerCertificates
	}
	mode := h.opts.DeviceAuth
	if mode == AuthCertificate || (mode == AuthEither && len(chain) > 0) {
		return h.certificate(chain, user, now)
	}
	switch {
	case user == "":
		return "", "anonymous"
	case !ups.ValidSerial(user):
		return "", "bad_password"
	case !h.opts.Devices.Authenticate(ups.Serial(user), pass):
		return "", "bad_password"
	}
	return user, ""
}

// certificate authenticates a device by its certificate chain: trusted,
// current, naming the serial (the username, when given), the unit
// registered, the certificate not revoked.
func (h *authHook) certificate(chain []*x509.Certificate, user string, now time.Time) (string, string) {
	if err := certs.VerifyDevice(chain, h.opts.ClientCAs, now); err != nil {
		var re *certs.RefusedError
		if errors.As(err, &re) {
			return "", re.Reason
		}
		return "", certs.ReasonInvalid
	}
	serial := ""
	for _, n := range certs.Names(chain[0]) {
		if ups.ValidSerial(n) && (user == "" || n == user) {
			serial = n
			break
		}
	}
	if serial == "" {
		return "", certs.ReasonOtherSerial
	}
	if !h.opts.Devices.Registered(ups.Serial(serial)) {
		return "", "unknown_unit"
	}
	if h.opts.Revoked != nil {
		if at, ok := h.opts.Revoked.RevokedAt(ups.Serial(serial)); ok && !chain[0].NotBefore.After(at) {
			return "", certs.ReasonRevoked
		}
	}
	return serial, ""
}

// logRefusal logs a refused connection, at most once a minute per
// source address: a flood of bad CONNECTs must not flood the log too.
// The username may be a serial; the password is never logged.
func (h *authHook) logRefusal(user, addr, reason string, now time.Time) {
	h.mu.Lock()
	last, seen := h.logged[addr]
	logIt := !seen || now.Sub(last) > time.Minute
	if logIt {
		if len(h.logged) > 10000 {
			clear(h.logged)
		}
		h.logged[addr] = now
	}
	h.mu.Unlock()
	if logIt {
		h.opts.Logger.Info("mqtt connection refused", "username", truncate(user, 32), "remote", addr,
			"reason", reason, "note", "further refusals from this address are counted, not logged, for a minute")
	}
}

// OnACLCheck: the service account reads everything and writes nothing; a
// device writes and reads only below {prefix}/{its serial}/.
//
// With a sink, every device message reaches the ingest through it
// (OnPublish, OnWill) and none by routing: the service account may
// subscribe (its filters have wildcards), but no message on a topic is
// delivered to it, or a will would arrive twice (and a retained status be
// replayed, with a new time, at each resubscribe).
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if user == h.opts.ServiceUser {
		return !write && (h.sink.Load() == nil || strings.ContainsAny(topic, "+#"))
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
	if pk.FixedHeader.Qos <= 1 && !pk.FixedHeader.Retain {
		// Acked later, by us: mochi is told to drop the packet (no ack,
		// no routing) and the PUBACK goes out once the bus has the
		// readings. Retained messages (presence) and QoS 2 take the
		// waiting path below, since mochi must store or acknowledge
		// them itself; they are one per connection, not per reading.
		id, qos := pk.PacketID, pk.FixedHeader.Qos
		(*sink).OfferAsync(pk.TopicName, pk.Payload, func(err error) {
			if err != nil {
				h.unstored(user, err)
				return
			}
			if qos == 1 {
				// A device gone meanwhile resends it on its next session:
				// at least once, deduplicated downstream.
				_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
			}
		})
		return pk, packets.ErrRejectPacket
	}
	if err := (*sink).Offer(h.ctx, pk.TopicName, pk.Payload); err != nil {
		h.unstored(user, err)
		return pk, packets.ErrRejectPacket
	}
	return pk, packets.CodeSuccessIgnore
}

// OnWill hands a device's will (its status, "offline") to the sink when
// its connection drops, as OnPublish does its other messages. Routed to
// the ingest's subscription instead, every will would wait in the
// ingest's outbound queue in mochi, and when thousands of devices drop at
// once (a site's network, the host's) that queue overflowed unless it was
// deep: mochi gives every client the same depth
// (mqtt.max_pending_writes), 512 slots, 4 KiB a device. mochi still
// retains the will; OnACLCheck keeps it from the ingest's subscription.
func (h *authHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	sink := h.sink.Load()
	user := string(cl.Properties.Username)
	if sink == nil || cl.Net.Inline || user == h.opts.ServiceUser {
		return will, nil
	}
	if !h.OnACLCheck(cl, will.TopicName, true) {
		// mochi does not check a will's topic at CONNECT; a device may not
		// speak for another unit through it.
		h.opts.Logger.Warn("device will on a topic the device may not publish to; not stored",
			"username", truncate(user, 32), "topic", truncate(will.TopicName, 64))
		return will, nil
	}
	offer := func() {
		if h.ctx.Err() != nil {
			// The broker is closing, which drops every device: that says
			// nothing of the devices, and the ingest stops too.
			return
		}
		(*sink).OfferAsync(will.TopicName, will.Payload, func(err error) {
			if err != nil {
				h.sinkFails.Add(1)
				if ok, quiet := h.sinkLog.allow(h.now()); ok {
					h.opts.Logger.Warn("device will not stored", "username", truncate(user, 32), "err", err,
						"not_logged_since_last", quiet)
				}
			}
		})
	}
	if will.WillDelayInterval == 0 {
		offer()
		return will, nil
	}
	// MQTT 5's will delay: sent once the delay is over unless the device
	// reconnected meanwhile (its client id connected again), as mochi
	// does for the wills it routes.
	time.AfterFunc(time.Duration(will.WillDelayInterval)*time.Second, func() {
		if now, ok := h.clients.Get(cl.ID); ok && now != cl && !now.Closed() {
			return
		}
		offer()
	})
	return will, nil
}

// roomWaiter is a Sink that can say when it has room (the ingest's
// WaitRoom).
type roomWaiter interface{ WaitRoom() }

// pace waits, after a read from a connection that brought a PUBLISH,
// until the sink has room.
func (h *authHook) pace() {
	if s := h.sink.Load(); s != nil {
		if w, ok := (*s).(roomWaiter); ok {
			w.WaitRoom()
		}
	}
}

// unstored counts a device message the sink did not store, whose ack is
// withheld so that the device resends it.
func (h *authHook) unstored(user string, err error) {
	h.sinkFails.Add(1)
	// While the bus is down every device message fails: one line per
	// message would be thousands a second. The counter has them all
	// (upswatch_mqtt_broker_unstored_total).
	if ok, quiet := h.sinkLog.allow(h.now()); ok {
		h.opts.Logger.Warn("device message not stored; withholding its ack so the device resends",
			"username", truncate(user, 32), "err", err, "not_logged_since_last", quiet)
	}
}

// bucket is one device's token bucket (Options.DeviceRate, DeviceBurst),
// kept by value in the map: 16 bytes a device, where a *rate.Limiter
// (its mutex, its two times, the pointer) took about 100, for every
// device that ever published.
type bucket struct {
	tokens float64
	last   int64 // the last take, in nanoseconds since authHook.epoch (monotonic)
}

// take refills the bucket for the time since its last take, then takes
// one token if there is one (rate.Limiter's AllowN(now, 1)).
func (b *bucket) take(now int64, perSecond float64, burst int) bool {
	if elapsed := now - b.last; elapsed > 0 {
		b.tokens = min(float64(burst), b.tokens+float64(elapsed)*perSecond/1e9)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// allow takes one message from the device's budget.
func (h *authHook) allow(user string) bool {
	now := time.Now()
	at := int64(now.Sub(h.epoch))
	burst := max(h.opts.DeviceBurst, 1)
	h.mu.Lock()
	b, seen := h.limiters[user]
	if !seen {
		b = bucket{tokens: float64(burst), last: at}
	}
	ok := b.take(at, h.opts.DeviceRate, burst)
	h.limiters[user] = b
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

// clientReadBuffer is each connection's read buffer (see New).
const clientReadBuffer = 512

// sinkFailLogEvery: at most one warning this often for device messages
// the ingest did not store.
const sinkFailLogEvery = 10 * time.Second

// sparseLog lets one log line through per interval and counts the ones
// it held back, so a failure that hits every message is still seen at
// once, and then as a steady trickle with how much it hid.
type sparseLog struct {
	every time.Duration

	mu     sync.Mutex
	last   time.Time
	logged bool
	quiet  int64
}

// allow reports whether to log now and, if so, how many were held back
// since the last line.
func (l *sparseLog) allow(now time.Time) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logged && now.Sub(l.last) < l.every {
		l.quiet++
		return false, 0
	}
	quiet := l.quiet
	l.last, l.logged, l.quiet = now, true, 0
	return true, quiet
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
