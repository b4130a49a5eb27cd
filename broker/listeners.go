package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// connectTimeout bounds a new connection's TLS handshake and CONNECT
// packet; mochi then sets the deadline from the client's keepalive. A
// connection that never speaks would otherwise hold its goroutine for
// ever.
const connectTimeout = 10 * time.Second

// Our own listeners rather than mochi's TCP, TLS and WebSocket ones: they
// bind in New (so port 0 gives a real address before Start), bound the
// handshake and CONNECT with connectTimeout, do not log a warning per
// refused connection (a flood of bad CONNECTs would flood the log; the
// auth hook logs and counts refusals), and keep the TLS state of
// WebSocket connections reachable for device certificates (mochi's
// WebSocket connection type hides it).

// streamListener serves MQTT on a TCP listener, TLS when tlsConf is set.
type streamListener struct {
	id string
	ln net.Listener
	// gate, when set, tells whether to serve a new connection from a
	// remote address; a connection it refuses is closed unread.
	gate func(remote string) bool
	// pace, when set, runs after each read from a connection that
	// brought data (see pacedConn).
	pace func()
	end  atomic.Bool
	log  *slog.Logger
	wg   sync.WaitGroup
	once sync.Once
}

func newStreamListener(id, addr string, tlsConf *tls.Config) (*streamListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mqtt %s listen %s: %w", id, addr, err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	return &streamListener{id: id, ln: ln}, nil
}

func (l *streamListener) Init(log *slog.Logger) error { l.log = log; return nil }
func (l *streamListener) ID() string                  { return l.id }
func (l *streamListener) Address() string             { return l.ln.Addr().String() }
func (l *streamListener) Protocol() string            { return "tcp" }

func (l *streamListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		if l.end.Load() {
			_ = conn.Close()
			return
		}
		if l.gate != nil && !l.gate(conn.RemoteAddr().String()) {
			_ = conn.Close()
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(connectTimeout))
		if l.pace != nil {
			conn = &pacedConn{Conn: conn, pace: l.pace}
		}
		go func() { _ = establish(l.id, conn) }()
	}
}

func (l *streamListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		l.end.Store(true)
		_ = l.ln.Close()
		closeClients(l.id)
	})
}

// wsListener serves MQTT over WebSocket (subprotocol "mqtt"), over TLS
// when tlsConf is set.
type wsListener struct {
	gate      func(remote string) bool // as streamListener's
	id        string
	ln        net.Listener
	srv       *http.Server
	establish listeners.EstablishFn
	ready     chan struct{}
	once      sync.Once
	upgrader  websocket.Upgrader
}

func newWSListener(id, addr string, tlsConf *tls.Config) (*wsListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mqtt %s listen %s: %w", id, addr, err)
	}
	if tlsConf != nil {
		// Served as HTTP/1.1 only: the upgrade needs it.
		ln = tls.NewListener(ln, tlsConf)
	}
	l := &wsListener{id: id, ln: ln, ready: make(chan struct{}), upgrader: websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// Devices authenticate in MQTT, not with cookies: any origin.
		CheckOrigin: func(*http.Request) bool { return true },
	}}
	l.srv = &http.Server{Handler: http.HandlerFunc(l.upgrade), ReadHeaderTimeout: connectTimeout,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	return l, nil
}

func (l *wsListener) Init(log *slog.Logger) error {
	l.srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	return nil
}
func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	close(l.ready)
	_ = l.srv.Serve(l.ln)
}

func (l *wsListener) upgrade(w http.ResponseWriter, r *http.Request) {
	<-l.ready
	if l.gate != nil && !l.gate(r.RemoteAddr) {
		http.Error(w, "too many failed connections", http.StatusTooManyRequests)
		return
	}
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	defer c.Close()
	under := c.NetConn()
	_ = under.SetDeadline(time.Now().Add(connectTimeout))
	_ = l.establish(l.id, &wsConn{Conn: under, ws: c, tls: r.TLS})
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		_ = l.srv.Close() // the listener; upgraded connections are clients, closed next
		closeClients(l.id)
	})
}

// wsConn is a WebSocket connection as a byte stream: MQTT packets in
// binary messages.
type wsConn struct {
	net.Conn
	ws  *websocket.Conn
	r   io.Reader
	tls *tls.ConnectionState
	wmu sync.Mutex
}

var errNotBinary = errors.New("websocket message is not binary")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			op, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ConnectionState is the TLS state of the connection (zero when plain).
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if c.tls == nil {
		return tls.ConnectionState{}
	}
	return *c.tls
}

// pacedConn waits for pace after a read that brought the start of a
// PUBLISH, before handing it to the broker: while the ingest is full, a
// device's connection waits here, at the top of the broker's read loop
// with a shallow stack, rather than inside its packet handling. After the
// read, not before it: a read waits for the device's next message,
// seconds during which the ingest fills up, and a connection that found
// room before its read then blocked deep in the hand-off with its message
// (in the embedded bench run, 9,194 of 10,000 connection goroutines were
// there, with 32 KiB stacks, and 799 waited in the read). Only for a
// PUBLISH: a PINGREQ or a PUBACK goes through at once, so an idle
// device's keepalive is answered however long the ingest stays full.
type pacedConn struct {
	net.Conn
	pace func()

	// Where the stream is in MQTT's framing: header is true while a fixed
	// header is being read (after its first byte: the remaining length,
	// 1-4 bytes), body counts the bytes of the packet still to come.
	header bool
	length int
	shift  uint
	body   int
}

func (c *pacedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.publishes(p[:n]) {
		c.pace()
	}
	return n, err
}

// publishes follows the packets' framing over b, the next bytes of the
// stream, and reports whether a PUBLISH starts in them. A stream that is
// not MQTT fails in the broker; here it only decides a wait.
func (c *pacedConn) publishes(b []byte) bool {
	found := false
	for len(b) > 0 {
		switch {
		case c.body > 0:
			k := min(c.body, len(b))
			c.body -= k
			b = b[k:]
		case !c.header:
			found = found || b[0]>>4 == 3 // PUBLISH
			c.header, c.length, c.shift = true, 0, 0
			b = b[1:]
		default:
			c.length |= int(b[0]&0x7f) << c.shift
			c.shift += 7
			if b[0]&0x80 == 0 || c.shift >= 28 {
				c.header, c.body = false, c.length
			}
			b = b[1:]
		}
	}
	return found
}

// tlsState returns a client connection's TLS state, nil when plain.
func tlsState(conn net.Conn) *tls.ConnectionState {
	switch c := conn.(type) {
	case *pacedConn:
		return tlsState(c.Conn)
	case *tls.Conn:
		s := c.ConnectionState()
		return &s
	case *wsConn:
		return c.tls
	}
	return nil
}
