// Package live fans the bus out to the browsers watching it: the latest
// readings, the alert events and the actions people take on alerts, each
// to the clients allowed to see the unit. One hub runs per instance, on
// core NATS subscriptions to the readings subjects (every partition), the
// alert subjects and the alert actions' audit subjects, so each
// instance sees everything whichever instance ingested it; nothing is
// acknowledged or stored, a client that reconnects starts from now.
//
// A client has a bounded buffer. The hub never waits on a client: one
// whose buffer is full is dropped (its Done closes) and the others go on.
package live

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/ready"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/ups"
)

// Event names.
const (
	Alert   = "alert"
	Reading = "reading"
	// Action: an acknowledgement or silence set, withdrawn or cleared
	// (the audit record of package actions, actors by account id).
	Action = "action"
)

// ErrClosed is returned by Subscribe once the hub has stopped.
var ErrClosed = errors.New("live: hub closed")

// Event is one message for clients: its name and its JSON data (one line).
type Event struct {
	Name   string
	Serial ups.Serial
	Data   []byte
}

// LiveReading is the data of a reading event: the unit, the reading's
// time (unix milliseconds and RFC 3339) and its values by NUT name,
// ups.status included.
type LiveReading struct {
	Serial ups.Serial     `json:"serial"`
	TS     int64          `json:"ts"`
	Time   string         `json:"time"`
	Values map[string]any `json:"values"`
}

// Units is what the hub needs of the registry.
type Units interface {
	Lookup(serial ups.Serial) (registry.Unit, bool)
}

// Config of a hub.
type Config struct {
	Conn  *nats.Conn
	Units Units
	// ReadingJSON is the form of a reading's values clients get
	// (api.ReadingJSON: NUT variables by name); see LiveReading.
	ReadingJSON func(*ups.Reading) map[string]any
	// Buffer is each client's backlog before it is dropped (default 256).
	Buffer int
	Logger *slog.Logger
}

// Hub fans events out to clients.
type Hub struct {
	cfg   Config
	log   *slog.Logger
	ready ready.Signal

	mu      sync.Mutex
	clients map[*Client]struct{}
	closed  bool
}

// New validates cfg; it starts nothing.
func New(cfg Config) (*Hub, error) {
	if cfg.Conn == nil || cfg.Units == nil || cfg.ReadingJSON == nil {
		return nil, errors.New("live: Conn, Units and ReadingJSON are required")
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{cfg: cfg, log: cfg.Logger.With("component", "live"),
		clients: map[*Client]struct{}{}}, nil
}

// Ready is closed once the hub's subscriptions are in place.
func (h *Hub) Ready() <-chan struct{} { return h.ready.C() }

// Run subscribes to the bus and fans out until ctx is done, then ends
// every client.
//
// Run may be called again after it failed (the app's supervisor does):
// clients stay connected meanwhile and are ended only when ctx is done.
func (h *Hub) Run(ctx context.Context) error {
	defer h.ready.Down()
	rs, err := h.cfg.Conn.Subscribe(bus.ReadingsSubjectPrefix+"*", h.onReadings)
	if err != nil {
		return fmt.Errorf("live: subscribe to readings: %w", err)
	}
	defer func() { _ = rs.Unsubscribe() }()
	as, err := h.cfg.Conn.Subscribe(engine.AlertsSubjectPrefix+">", h.onAlert)
	if err != nil {
		return fmt.Errorf("live: subscribe to alerts: %w", err)
	}
	defer func() { _ = as.Unsubscribe() }()
	acts, err := h.cfg.Conn.Subscribe(bus.AlertActionsSubjectPrefix+">", h.onAction)
	if err != nil {
		return fmt.Errorf("live: subscribe to alert actions: %w", err)
	}
	defer func() { _ = acts.Unsubscribe() }()
	// The subscriptions are registered with the server once a flush
	// round-trips: only then is Ready true.
	if err := h.cfg.Conn.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("live: %w", err)
	}
	h.ready.Up()
	<-ctx.Done()
	h.Close()
	return nil
}

// Close ends every client and refuses new ones (http.Server's
// RegisterOnShutdown calls it, so open streams end and let the server
// shut down).
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.clients {
		delete(h.clients, c)
		c.end(false)
	}
}

// Subscribe adds a client that gets the events of the units see accepts.
func (h *Hub) Subscribe(see func(registry.Unit) bool) (*Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	c := &Client{hub: h, see: see, ch: make(chan Event, h.cfg.Buffer), done: make(chan struct{})}
	h.clients[c] = struct{}{}
	return c, nil
}

// Clients is the number of clients connected.
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

func (h *Hub) idle() bool { return h.Clients() == 0 }

func (h *Hub) onReadings(msg *nats.Msg) {
	if h.idle() {
		return // nobody watching: not even decoded
	}
	rs, err := ups.DecodeBatch(msg.Data, nil)
	if err != nil {
		h.log.Warn("readings batch unreadable", "subject", msg.Subject, "err", err)
		return
	}
	// Only the latest reading of each unit in the batch: a device
	// replaying its backlog sends many, the console shows the last.
	latest := map[ups.Serial]int{}
	var order []ups.Serial
	for i := range rs {
		r := &rs[i]
		if !r.HasStatus && len(r.Metrics) == 0 {
			continue // presence only (online/offline)
		}
		j, ok := latest[r.Serial]
		if !ok {
			order = append(order, r.Serial)
		}
		if !ok || !r.Time.Before(rs[j].Time) {
			latest[r.Serial] = i
		}
	}
	for _, s := range order {
		r := &rs[latest[s]]
		v := h.cfg.ReadingJSON(r)
		delete(v, "serial")
		delete(v, "time")
		b, err := json.Marshal(LiveReading{Serial: s, TS: r.Time.UnixMilli(), Time: r.Time.UTC().Format(time.RFC3339Nano), Values: v})
		if err != nil {
			continue
		}
		h.fanout(Event{Name: Reading, Serial: s, Data: b})
	}
}

func (h *Hub) onAlert(msg *nats.Msg) {
	if h.idle() {
		return
	}
	var ev rules.Event
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.Serial == "" {
		return
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	h.fanout(Event{Name: Alert, Serial: ev.Serial, Data: b})
}

func (h *Hub) onAction(msg *nats.Msg) {
	if h.idle() {
		return
	}
	var rec struct {
		Serial ups.Serial `json:"serial"`
	}
	if err := json.Unmarshal(msg.Data, &rec); err != nil || rec.Serial == "" {
		return
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, msg.Data); err != nil {
		return
	}
	h.fanout(Event{Name: Action, Serial: rec.Serial, Data: compact.Bytes()})
}

// fanout offers ev to every client that may see its unit, dropping those
// whose buffer is full.
func (h *Hub) fanout(ev Event) {
	u, ok := h.cfg.Units.Lookup(ev.Serial)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if !c.see(u) {
			continue
		}
		select {
		case c.ch <- ev:
		default:
			delete(h.clients, c)
			c.end(true)
			h.log.Info("live client dropped: too slow", "backlog", cap(c.ch))
		}
	}
}

// Client is one subscriber.
type Client struct {
	hub  *Hub
	see  func(registry.Unit) bool
	ch   chan Event
	done chan struct{}
	once sync.Once
	slow bool
}

// Events delivers the client's events.
func (c *Client) Events() <-chan Event { return c.ch }

// Done is closed when the client was dropped (too slow) or the hub
// closed; events already buffered may still be read.
func (c *Client) Done() <-chan struct{} { return c.done }

// Dropped reports whether the client was dropped for being too slow
// (valid once Done is closed).
func (c *Client) Dropped() bool {
	<-c.done
	return c.slow
}

// Close unsubscribes the client.
func (c *Client) Close() {
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	delete(c.hub.clients, c)
	c.end(false)
}

// end closes done once; called with the hub's lock held.
func (c *Client) end(slow bool) {
	c.once.Do(func() {
		c.slow = slow
		close(c.done)
	})
}
