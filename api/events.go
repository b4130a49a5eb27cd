package api

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/upswatch/upswatch/live"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
)

// EventSource is what GET /v1/events needs (live.Hub implements it).
type EventSource interface {
	Subscribe(see func(registry.Unit) bool) (*live.Client, error)
}

// heartbeatEvery is the default interval of the stream's keep-alive
// comments.
const heartbeatEvery = 15 * time.Second

// sseWriteTimeout bounds one write to a stream: a client that reads
// nothing for this long is cut off.
const sseWriteTimeout = 30 * time.Second

// HandleEvents adds GET /v1/events: a Server-Sent Events stream of the
// alert events (`event: alert`, the rules.Event JSON), the latest
// readings (`event: reading`, {serial, ts (unix ms), time, values} with
// the values by NUT name as /latest shows them) and the acknowledgements and silences (`event: action`,
// the audit record, actors by account id) of the units the caller may
// see, with a ": ping" comment
// every 15 s. The stream ends when the client falls behind (it
// reconnects) or the server shuts down.
func (s *Server) HandleEvents(src EventSource) {
	s.handle("GET /v1/events", s.auth(func(w http.ResponseWriter, r *http.Request) { s.events(w, r, src) }))
}

func (s *Server) events(w http.ResponseWriter, r *http.Request, src EventSource) {
	// The caller's rights are read again at every keep-alive: a manager
	// who loses a site stops getting its events within 15 s, and a
	// deleted account's stream ends.
	var cur atomic.Pointer[Principal]
	p := principalOf(r)
	cur.Store(&p)
	c, err := src.Subscribe(func(u registry.Unit) bool { return cur.Load().CanSee(u) })
	if errors.Is(err, live.ErrClosed) {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the server is shutting down; reconnect shortly")
		return
	}
	if err != nil {
		s.internal(w, "subscribe to events", err)
		return
	}
	defer c.Close()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not buffer the stream
	w.WriteHeader(http.StatusOK)
	write := func(parts ...[]byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		for _, b := range parts {
			if _, err := w.Write(b); err != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 3000\n\n")) {
		return
	}
	every := s.heartbeat
	if every <= 0 {
		every = heartbeatEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.Done():
			if c.Dropped() {
				s.log.Info("event stream dropped: the client fell behind")
			}
			return
		case <-tick.C:
			if p.Account.ID != "" && s.owners != nil {
				acct, ok := s.owners.Lookup(p.Account.ID)
				if !ok {
					return
				}
				np := Principal{Admin: acct.Role == recipients.RoleAdmin, Account: acct}
				cur.Store(&np)
			}
			if !write([]byte(": ping\n\n")) {
				return
			}
		case ev := <-c.Events():
			if !write([]byte("event: "+ev.Name+"\ndata: "), ev.Data, []byte("\n\n")) {
				return
			}
		}
	}
}
