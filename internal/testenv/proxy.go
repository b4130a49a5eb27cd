package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/wait"
)

// Proxy forwards TCP connections to a target until Cut: then every
// connection is closed and new ones are refused, as when the network
// between two parts goes down; Restore listens again on the same port.
type Proxy struct {
	t      testing.TB
	target string
	Addr   string

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]bool
	// holes: client connections whose bytes are swallowed (blackhole).
	holes map[net.Conn]bool
}

// NewProxy forwards 127.0.0.1:<free port> (its Addr) to target; the
// test's cleanup cuts it.
func NewProxy(t testing.TB, target string) *Proxy {
	p := &Proxy{t: t, target: target, conns: map[net.Conn]bool{}, holes: map[net.Conn]bool{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Addr = l.Addr().String()
	p.serve(l)
	t.Cleanup(p.Cut)
	return p
}

func (p *Proxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { p.forward(up, c); up.Close(); c.Close() }()
			go func() { io.Copy(c, up); up.Close(); c.Close() }()
		}
	}()
}

// forward copies the client's bytes upstream, or swallows them once the
// connection is a blackhole.
func (p *Proxy) forward(up, c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			p.mu.Lock()
			hole := p.holes[c]
			p.mu.Unlock()
			if !hole {
				if _, werr := up.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// Blackhole makes the open connections swallow what the client sends,
// without closing anything: the broker stops acknowledging and answering
// pings, as behind a dead route. New connections work.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		p.holes[c] = true
	}
}

// Cut closes every connection and stops listening.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Restore listens on Addr again.
func (p *Proxy) Restore() {
	var l net.Listener
	wait.Within(p.t, 10*time.Second, "proxy listening again on "+p.Addr, func() bool {
		var err error
		l, err = net.Listen("tcp", p.Addr)
		return err == nil
	})
	p.serve(l)
}
