package ingest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// bufferedConn buffers paho's reads and coalesces its writes.
//
// paho reads from the raw connection a few bytes at a time (the fixed
// header's length is decoded byte by byte), and writes every packet, each
// PUBACK included, with its own system call: profiling the ingest under
// load put those reads at a fifth of its CPU and the writes at a tenth.
// Writes are buffered and flushed flushDelay after the first one, so a
// burst of acks costs one system call; a write error is reported by the
// next Write (paho then reconnects, and unacked messages are redelivered).
type bufferedConn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	w       *bufio.Writer
	pending bool  // a flush is scheduled
	err     error // sticky: the connection is broken
	closed  bool
}

// flushDelay bounds how long a written packet waits in the buffer.
const flushDelay = time.Millisecond

func newBufferedConn(conn net.Conn) *bufferedConn {
	return &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, 64<<10), w: bufio.NewWriterSize(conn, 32<<10)}
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.closed {
		return 0, net.ErrClosed
	}
	n, err := c.w.Write(p) // flushes by itself when full
	if err != nil {
		c.err = err
		return n, err
	}
	if !c.pending {
		c.pending = true
		time.AfterFunc(flushDelay, c.flush)
	}
	return n, nil
}

func (c *bufferedConn) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = false
	if c.err == nil && !c.closed {
		if err := c.w.Flush(); err != nil {
			c.err = err
		}
	}
}

// Close sends what is buffered (a DISCONNECT, the last acks) first.
func (c *bufferedConn) Close() error {
	c.mu.Lock()
	if !c.closed && c.err == nil {
		_ = c.w.Flush()
	}
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}

// openBuffered dials tcp/mqtt and ssl/tls/mqtts brokers itself to add the
// buffer; websockets and others keep paho's own dialer.
func openBuffered(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	var (
		conn net.Conn
		err  error
	)
	dialer := o.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	switch uri.Scheme {
	case "tcp", "mqtt":
		conn, err = dialer.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts", "tcps":
		cfg := o.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{}
		}
		conn, err = tls.DialWithDialer(dialer, "tcp", uri.Host, cfg)
	default:
		return nil, fmt.Errorf("scheme %q is not dialled by the ingest", uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return newBufferedConn(conn), nil
}

// bufferable reports whether openBuffered handles the broker URL.
func bufferable(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps":
		return true
	}
	return false
}
