package ingest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// bufferedConn gives paho's packet reader a buffer. paho reads from the
// raw connection, a few bytes at a time (the fixed header's length is
// decoded byte by byte), so without one every small read is a system
// call: profiling the ingest under load put those reads at a fifth of its
// CPU.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

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
	return &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}, nil
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
