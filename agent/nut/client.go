// Package nut is a client of upsd, the network server of Network UPS Tools,
// over its text protocol (TCP 3493): LIST UPS, LIST VAR, GET VAR,
// USERNAME/PASSWORD and STARTTLS.
//
// A Client is one connection; it is not safe for concurrent use (the
// protocol is strictly request/answer on one connection).
package nut

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// DefaultPort is upsd's registered port.
const DefaultPort = "3493"

// TLSMode says what Dial does about STARTTLS.
type TLSMode string

const (
	// TLSOff never asks for TLS.
	TLSOff TLSMode = "off"
	// TLSAuto asks for STARTTLS and stays in plain text when upsd answers
	// that it is not configured for it.
	TLSAuto TLSMode = "auto"
	// TLSRequire fails unless upsd takes STARTTLS and its certificate
	// verifies.
	TLSRequire TLSMode = "require"
)

// Options of Dial.
type Options struct {
	Username string
	Password string
	TLS      TLSMode // default TLSOff
	// TLSConfig verifies upsd's certificate (RootCAs from a CA file,
	// ServerName). Nil with TLSAuto: the session is encrypted but upsd's
	// certificate is not verified (what NUT's own clients do without
	// CERTVERIFY); nil with TLSRequire: the system roots.
	TLSConfig *tls.Config
	// Timeout bounds each command when the context has no earlier
	// deadline; default 5 s.
	Timeout time.Duration
}

// Client is one connection to upsd.
type Client struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
	tls     bool
}

// Dial connects to upsd at addr (host:port; the port defaults to 3493),
// negotiates TLS per opts.TLS and logs in with the username and password
// when given.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, DefaultPort)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nut: connect to %s: %w", addr, err)
	}
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 1024), timeout: opts.Timeout}
	if err := c.setup(ctx, addr, opts); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// NewClient wraps an established connection to upsd (for a transport
// Dial does not cover: a Unix socket, an SSH tunnel). timeout bounds each
// command when the context has no deadline; 0 means 5 s.
func NewClient(conn net.Conn, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Client{conn: conn, r: bufio.NewReaderSize(conn, 1024), timeout: timeout}
}

func (c *Client) setup(ctx context.Context, addr string, opts Options) error {
	switch opts.TLS {
	case "", TLSOff:
	case TLSAuto, TLSRequire:
		line, err := c.roundTrip(ctx, "STARTTLS", "STARTTLS")
		var nerr *Error
		switch {
		case errors.As(err, &nerr) && opts.TLS == TLSAuto &&
			(errors.Is(err, ErrFeatureNotConfigured) || errors.Is(err, ErrFeatureNotSupported) || nerr.Code == "UNKNOWN-COMMAND"):
			// upsd without a certificate: stay in plain text.
		case err != nil:
			return fmt.Errorf("nut: STARTTLS on %s: %w", addr, err)
		case !strings.HasPrefix(line, "OK STARTTLS"):
			return fmt.Errorf("%w: STARTTLS answered %q", errSyntax, truncate(line))
		default:
			if err := c.handshake(ctx, addr, opts); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("nut: unknown TLS mode %q (off, auto or require)", opts.TLS)
	}
	if opts.Username != "" {
		if _, err := c.simple(ctx, "USERNAME", command("USERNAME", opts.Username)); err != nil {
			return fmt.Errorf("nut: log in to %s: %w", addr, err)
		}
		// The command name only in errors: the password never leaves this
		// function in a message.
		if _, err := c.simple(ctx, "PASSWORD", command("PASSWORD", opts.Password)); err != nil {
			return fmt.Errorf("nut: log in to %s as %s: %w", addr, opts.Username, err)
		}
	}
	return nil
}

func (c *Client) handshake(ctx context.Context, addr string, opts Options) error {
	if c.r.Buffered() > 0 {
		return fmt.Errorf("%w: data after OK STARTTLS", errSyntax)
	}
	cfg := opts.TLSConfig
	if cfg == nil {
		cfg = &tls.Config{}
		if opts.TLS == TLSAuto {
			cfg.InsecureSkipVerify = true //nolint:gosec // opportunistic encryption, documented on Options.TLSConfig
		}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	tc := tls.Client(c.conn, cfg)
	hctx, cancel := c.deadline(ctx)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return fmt.Errorf("nut: TLS handshake with %s: %w", addr, err)
	}
	c.conn, c.r, c.tls = tc, bufio.NewReaderSize(tc, 1024), true
	return nil
}

// TLS reports whether the session is encrypted.
func (c *Client) TLS() bool { return c.tls }

func (c *Client) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// send writes one command line and arms the connection's deadline from
// ctx; the returned stop must be called when the answer is read.
func (c *Client) send(ctx context.Context, name, line string) (func(), error) {
	dctx, cancel := c.deadline(ctx)
	dl, _ := dctx.Deadline()
	if err := c.conn.SetDeadline(dl); err != nil {
		cancel()
		return nil, fmt.Errorf("nut: %s: %w", name, err)
	}
	// A cancelled context (not only its deadline) interrupts the I/O.
	stopAfter := context.AfterFunc(dctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	stop := func() { stopAfter(); cancel() }
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		stop()
		return nil, fmt.Errorf("nut: %s: %w", name, err)
	}
	return stop, nil
}

func (c *Client) readLine(name string) (string, error) {
	var b []byte
	for {
		part, isPrefix, err := c.r.ReadLine()
		if err != nil {
			return "", fmt.Errorf("nut: %s: read answer: %w", name, err)
		}
		b = append(b, part...)
		if len(b) > maxLine {
			return "", fmt.Errorf("%w: %s: line longer than %d bytes", errSyntax, name, maxLine)
		}
		if !isPrefix {
			return strings.TrimSuffix(string(b), "\r"), nil
		}
	}
}

// roundTrip sends a command and reads its one-line answer; an ERR answer
// is returned as *Error.
func (c *Client) roundTrip(ctx context.Context, name, line string) (string, error) {
	stop, err := c.send(ctx, name, line)
	if err != nil {
		return "", err
	}
	defer stop()
	ans, err := c.readLine(name)
	if err != nil {
		return "", err
	}
	if e, ok := parseErr(name, ans); ok {
		return "", e
	}
	return ans, nil
}

// simple runs a command whose success answer is OK.
func (c *Client) simple(ctx context.Context, name, line string) (string, error) {
	ans, err := c.roundTrip(ctx, name, line)
	if err != nil {
		return "", err
	}
	if ans != "OK" && !strings.HasPrefix(ans, "OK ") {
		return "", fmt.Errorf("%w: %s answered %q", errSyntax, name, truncate(ans))
	}
	return ans, nil
}

// list runs LIST <what...> and returns the lines between BEGIN and END.
func (c *Client) list(ctx context.Context, what ...string) ([]string, error) {
	name := "LIST " + strings.Join(what, " ")
	stop, err := c.send(ctx, name, command(append([]string{"LIST"}, what...)...))
	if err != nil {
		return nil, err
	}
	defer stop()
	first, err := c.readLine(name)
	if err != nil {
		return nil, err
	}
	if e, ok := parseErr(name, first); ok {
		return nil, e
	}
	begin := command(append([]string{"BEGIN", "LIST"}, what...)...)
	end := command(append([]string{"END", "LIST"}, what...)...)
	if first != begin {
		return nil, fmt.Errorf("%w: %s: want %q, got %q", errSyntax, name, begin, truncate(first))
	}
	var lines []string
	for {
		l, err := c.readLine(name)
		if err != nil {
			return nil, err
		}
		if l == end {
			return lines, nil
		}
		if len(lines) >= 100000 {
			return nil, fmt.Errorf("%w: %s: no END after 100000 lines", errSyntax, name)
		}
		lines = append(lines, l)
	}
}

// UPS is one entry of LIST UPS.
type UPS struct {
	Name        string
	Description string
}

// ListUPS lists the UPS upsd serves.
func (c *Client) ListUPS(ctx context.Context) ([]UPS, error) {
	lines, err := c.list(ctx, "UPS")
	if err != nil {
		return nil, err
	}
	out := make([]UPS, 0, len(lines))
	for _, l := range lines {
		w, err := splitWords(l)
		if err != nil {
			return nil, fmt.Errorf("nut: LIST UPS: %w", err)
		}
		if len(w) != 3 || w[0] != "UPS" {
			return nil, fmt.Errorf("%w: LIST UPS: unexpected line %q", errSyntax, truncate(l))
		}
		out = append(out, UPS{Name: w[1], Description: w[2]})
	}
	return out, nil
}

// ListVars returns every variable of a UPS in upsd's order. A UPS whose
// driver data is stale answers ErrDataStale.
func (c *Client) ListVars(ctx context.Context, ups string) ([]Var, error) {
	lines, err := c.list(ctx, "VAR", ups)
	if err != nil {
		return nil, err
	}
	out := make([]Var, 0, len(lines))
	for _, l := range lines {
		v, err := parseVarLine(ups, l)
		if err != nil {
			return nil, fmt.Errorf("nut: LIST VAR %s: %w", ups, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// GetVar returns one variable of a UPS.
func (c *Client) GetVar(ctx context.Context, ups, name string) (string, error) {
	cmd := "GET VAR " + ups + " " + name
	ans, err := c.roundTrip(ctx, cmd, command("GET", "VAR", ups, name))
	if err != nil {
		return "", err
	}
	v, err := parseVarLine(ups, ans)
	if err != nil {
		return "", fmt.Errorf("nut: %s: %w", cmd, err)
	}
	if v.Name != name {
		return "", fmt.Errorf("%w: %s: answer for variable %q", errSyntax, cmd, v.Name)
	}
	return v.Value, nil
}

// Close says LOGOUT (best effort) and closes the connection.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = c.roundTrip(ctx, "LOGOUT", "LOGOUT")
	return c.conn.Close()
}
