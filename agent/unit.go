package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/upswatch/upswatch/agent/buffer"
	"github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/agent/nut"
)

const (
	// MaxReplay readings per replay message (the contract's array).
	MaxReplay = 500
	// maxReplayBytes keeps a replay message well under upswatch's 1 MiB
	// payload limit.
	maxReplayBytes = 512 << 10
)

// reading is one poll's result, encoded as the contract's JSON object.
type reading struct {
	at     time.Time
	status string
	json   []byte
}

// unit is one UPS: its poll state, MQTT session and buffer.
type unit struct {
	cfg         config.Unit
	serial      string
	topic       string
	statusTopic string
	interval    time.Duration
	staleAfter  int
	ackTimeout  time.Duration
	log         *slog.Logger
	buf         *buffer.Buffer
	client      paho.Client

	// Poll side (the poller goroutine only).
	fails      int
	lastStatus string
	lastSent   time.Time
	sentAny    bool

	readings  chan reading
	wake      chan struct{} // status to announce, or connected: cap 1
	available atomic.Int32  // 0 unknown, 1 online, 2 offline
	announced atomic.Int32  // what the broker last acknowledged
	// reannounce: connected anew, the broker may hold the last will.
	reannounce atomic.Bool

	published, replayed, taken atomic.Int64
	failedPolls                atomic.Int32

	connMu    sync.Mutex
	connected bool // since the last OnConnect, not yet lost
	// brokerErr: why the last connection attempt failed ("" once
	// connected); logged when it changes.
	brokerErr string
}

func newUnit(cfg config.Config, uc config.Unit, serial string, buf *buffer.Buffer, tlsCfg *tls.Config, log *slog.Logger) *unit {
	u := &unit{
		cfg: uc, serial: serial,
		topic:       cfg.Broker.TopicPrefix + "/" + serial + "/telemetry",
		statusTopic: cfg.Broker.TopicPrefix + "/" + serial + "/status",
		interval:    cfg.Interval, staleAfter: cfg.StaleAfter, ackTimeout: cfg.Broker.AckTimeout,
		log: log.With("ups", uc.UPS, "serial", serial), buf: buf,
		readings: make(chan reading, 256), wake: make(chan struct{}, 1),
	}
	certFile, keyFile := cfg.Certificate(uc)
	u.client = paho.NewClient(ClientOptions(cfg.Broker, UnitTLS(tlsCfg, certFile, keyFile), serial, uc.Password).
		SetClientID("upswatch-agent-"+serial).
		SetCleanSession(false). // the broker keeps the session's QoS 1 state across a reconnect
		// The agent's own on-disk buffer is its store: a publish not
		// acknowledged in time is buffered and replayed. paho's memory
		// store would resend it as well, and its resend on reconnect races
		// with the previous connection's writer (the race detector shows
		// it in paho v1.5.1's resume).
		SetStore(noStore{}).
		SetWill(u.statusTopic, "offline", 1, true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(min(cfg.Broker.ReconnectMax, 2*time.Second)).
		SetMaxReconnectInterval(cfg.Broker.ReconnectMax).
		SetOnConnectHandler(func(paho.Client) {
			u.setConnected(true)
			u.reannounce.Store(true)
			u.log.Info("connected to the broker")
			u.poke()
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			u.setConnected(false)
			u.log.Warn("lost the broker; buffering readings on disk", "err", err)
		}).
		SetConnectionNotificationHandler(func(_ paho.Client, n paho.ConnectionNotification) {
			if f, ok := n.(paho.ConnectionNotificationFailed); ok {
				u.connectFailed(ExplainRefusal(f.Reason, certFile, keyFile, serial, time.Now()))
			}
		}))
	return u
}

// connectFailed records why a connection attempt failed and logs it when
// the reason changed: paho retries every few seconds.
func (u *unit) connectFailed(err error) {
	u.connMu.Lock()
	changed := u.brokerErr != err.Error()
	u.brokerErr = err.Error()
	u.connMu.Unlock()
	switch {
	case !changed:
	case Refused(err):
		u.log.Error("the broker refused the unit; buffering readings on disk and retrying", "err", err)
	default:
		u.log.Warn("cannot connect to the broker; buffering readings on disk and retrying", "err", err)
	}
}

// ClientOptions are the MQTT options every connection of the agent
// shares: broker, TLS, credentials, keepalive.
func ClientOptions(b config.Broker, tlsCfg *tls.Config, serial, password string) *paho.ClientOptions {
	o := paho.NewClientOptions().AddBroker(b.URL).
		SetUsername(serial).SetPassword(password).
		SetProtocolVersion(4).
		SetKeepAlive(b.KeepAlive).
		SetPingTimeout(min(b.KeepAlive, 10*time.Second)).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(b.AckTimeout).
		SetOrderMatters(false)
	if tlsCfg != nil {
		o.SetTLSConfig(tlsCfg)
	}
	return o
}

// BrokerTLS is the TLS configuration for the broker: the CA file's roots
// when given (system roots otherwise, for ssl:// URLs).
func BrokerTLS(b config.Broker) (*tls.Config, error) {
	if b.CAFile == "" {
		return nil, nil
	}
	pool, err := loadCA(b.CAFile)
	if err != nil {
		return nil, fmt.Errorf("broker.ca_file: %w", err)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func (u *unit) setConnected(v bool) {
	u.connMu.Lock()
	u.connected = v
	if v {
		u.brokerErr = ""
	}
	u.connMu.Unlock()
}

func (u *unit) isConnected() bool {
	u.connMu.Lock()
	defer u.connMu.Unlock()
	return u.connected && u.client.IsConnectionOpen()
}

func (u *unit) poke() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// observe takes one poll's result (poller goroutine).
func (u *unit) observe(at time.Time, vars []nut.Var, err error) {
	if err != nil {
		u.fails++
		u.failedPolls.Store(int32(u.fails))
		if u.fails == u.staleAfter {
			u.log.Warn("no data from upsd; announcing the unit offline", "polls", u.fails, "err", err)
			u.setAvailable(false)
		} else if u.fails < u.staleAfter {
			u.log.Debug("poll failed", "err", err)
		}
		return
	}
	if u.fails >= u.staleAfter {
		u.log.Info("data from upsd again; announcing the unit online")
	}
	u.fails = 0
	u.failedPolls.Store(0)
	u.setAvailable(true)
	status := ""
	for _, v := range vars {
		if v.Name == "ups.status" {
			status = v.Value
		}
	}
	changed := !u.sentAny || status != u.lastStatus
	if !changed && at.Sub(u.lastSent) < u.interval {
		return
	}
	if changed && u.sentAny {
		u.log.Info("ups.status changed", "from", u.lastStatus, "to", status)
	}
	r := reading{at: at, status: status, json: encodeReading(at, vars)}
	select {
	case u.readings <- r:
		u.lastStatus, u.lastSent, u.sentAny = status, at, true
		u.taken.Add(1)
	default:
		// The sender is stuck on a full disk; the next poll tries again.
		u.log.Error("reading queue full; reading skipped")
	}
}

func (u *unit) setAvailable(on bool) {
	v := int32(2)
	if on {
		v = 1
	}
	if u.available.Swap(v) != v {
		u.poke()
	}
}

// encodeReading renders {"ts":<ms>,"<name>":"<value>",...} with the
// values as upsd reports them (strings; the contract accepts numeric
// strings).
func encodeReading(at time.Time, vars []nut.Var) []byte {
	var b bytes.Buffer
	b.Grow(32 + 40*len(vars))
	b.WriteString(`{"ts":`)
	b.WriteString(strconv.FormatInt(at.UnixMilli(), 10))
	seen := make(map[string]bool, len(vars))
	for _, v := range vars {
		if seen[v.Name] || v.Name == "ts" {
			continue // the contract refuses duplicates
		}
		seen[v.Name] = true
		b.WriteByte(',')
		writeJSONString(&b, v.Name)
		b.WriteByte(':')
		writeJSONString(&b, v.Value)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // a string always marshals
	b.Write(enc)
}

// run is the unit's sender: it owns the MQTT session and the buffer.
func (u *unit) run(ctx context.Context) {
	u.client.Connect() // retries in the background (ConnectRetry)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer func() {
		retry.Stop()
		u.shutdown()
	}()
	for {
		select {
		case <-ctx.Done():
			// Readings taken but not yet handled go to disk: the next
			// run replays them.
			for {
				select {
				case r := <-u.readings:
					if err := u.buf.Append(r.at, r.json); err != nil {
						u.log.Error("cannot buffer a reading on stop; it is lost", "err", err)
					}
					continue
				default:
				}
				return
			}
		case r := <-u.readings:
			u.handle(r)
		case <-u.wake:
		case <-retry.C:
		}
		// The backlog first, then the status: upswatch dates a status
		// message by its arrival, and a rule engine that saw `online` now
		// would take the replayed (older) readings for late ones.
		if u.buf.Len() > 0 && !u.drain(ctx) {
			retry.Reset(min(u.ackTimeout, time.Second))
			continue
		}
		u.announce()
	}
}

// handle publishes a reading at once when nothing waits before it, else
// (or when the broker does not take it) buffers it.
func (u *unit) handle(r reading) {
	if u.buf.Len() == 0 && u.isConnected() {
		err := u.publish(u.topic, false, r.json)
		if err == nil {
			u.published.Add(1)
			return
		}
		u.log.Warn("publish failed; buffering", "err", err)
	}
	if err := u.buf.Append(r.at, r.json); err != nil {
		u.log.Error("cannot buffer a reading; it is lost", "err", err)
	}
}

// drain replays the buffer oldest first; false when it stopped early.
func (u *unit) drain(ctx context.Context) bool {
	for ctx.Err() == nil {
		if !u.isConnected() {
			return false
		}
		recs, cur, err := u.buf.Peek(MaxReplay, maxReplayBytes)
		if err != nil {
			u.log.Error("reading the buffer", "err", err)
			return false
		}
		if len(recs) == 0 {
			return true
		}
		var b bytes.Buffer
		b.WriteByte('[')
		for i, r := range recs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(r.Data)
		}
		b.WriteByte(']')
		if err := u.publish(u.topic, false, b.Bytes()); err != nil {
			u.log.Warn("replay failed; will retry", "readings", len(recs), "err", err)
			return false
		}
		if err := u.buf.Ack(cur); err != nil {
			u.log.Error("buffer ack", "err", err)
			return false
		}
		u.published.Add(int64(len(recs)))
		u.replayed.Add(int64(len(recs)))
		u.log.Info("replayed buffered readings", "readings", len(recs), "left", u.buf.Len())
	}
	return false
}

// announce publishes the unit's availability (retained) when it differs
// from what the broker has.
func (u *unit) announce() {
	want := u.available.Load()
	if want == 0 || !u.isConnected() {
		return
	}
	again := u.reannounce.Swap(false)
	if !again && u.announced.Load() == want {
		return
	}
	payload := "online"
	if want == 2 {
		payload = "offline"
	}
	if err := u.publish(u.statusTopic, true, []byte(payload)); err != nil {
		u.log.Warn("status publish failed", "status", payload, "err", err)
		u.reannounce.Store(true)
		return
	}
	u.announced.Store(want)
}

var errAckTimeout = errors.New("broker did not acknowledge in time")

func (u *unit) publish(topic string, retained bool, payload []byte) error {
	tok := u.client.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(u.ackTimeout) {
		return errAckTimeout
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// shutdown announces the unit offline (a clean stop sends no last will)
// and disconnects.
func (u *unit) shutdown() {
	if u.isConnected() {
		if err := u.publish(u.statusTopic, true, []byte("offline")); err != nil {
			u.log.Warn("could not announce offline on stop", "err", err)
		}
	}
	u.client.Disconnect(250)
}

func (u *unit) stats() UnitStats {
	return UnitStats{
		UPS: u.cfg.UPS, Serial: u.serial, Published: u.published.Load(), Replayed: u.replayed.Load(),
		Buffer: u.buf.Stats(), Online: u.announced.Load() == 1, FailedPolls: int(u.failedPolls.Load()),
		ReadingsTaken: u.taken.Load(), BrokerError: u.brokerError(),
	}
}

func (u *unit) brokerError() string {
	u.connMu.Lock()
	defer u.connMu.Unlock()
	return u.brokerErr
}

// noStore is a paho.Store that keeps nothing (see newUnit).
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}
