// Package servetest runs a whole upswatch serve in-process for the tests
// of app, e2e, web and the agent, and talks to it as its users and devices
// do: the HTTP API with the admin token, units registered with their MQTT
// credentials, devices publishing over MQTT.
//
// It does not import package app (whose own tests use it): the caller
// builds the app with app.New and hands it over as an App.
package servetest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/wait"
)

// App is what the helpers need of an *app.App.
type App interface {
	Run(ctx context.Context) error
	Started() <-chan struct{}
	HTTPAddr() string
	MQTTURL() string
	AdminToken() string
}

// Config is serve on embedded defaults with its data in dataDir, free
// loopback ports for HTTP and MQTT, and four partitions.
func Config(dataDir string) config.Config {
	c := config.Default()
	c.DataDir = dataDir
	c.HTTP.Addr = "127.0.0.1:0"
	c.MQTT.Listen = "127.0.0.1:0"
	c.MQTT.ClientID = "upswatch-test"
	c.NATS.Partitions = 4
	// Off: on a Monday morning the weekly summary would add itself to
	// what a test counts at its providers; the tests of it turn it on.
	c.Report.Weekly = false
	return c
}

// Logger logs at level to stderr under go test -v, nowhere otherwise.
func Logger(level slog.Level) *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// Client calls one upswatch's HTTP API, in-process or a subprocess.
type Client struct {
	TB    testing.TB
	Base  string // scheme://host:port
	Token string // the admin token
	// HTTP is the client used; nil means one with a 30 s timeout.
	HTTP *http.Client
}

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// Call sends a request with the admin token; see CallAs.
func (c *Client) Call(method, path string, body, out any) (int, string) {
	c.TB.Helper()
	return c.CallAs(c.Token, method, path, body, out)
}

// CallAs sends a request with token, body as JSON, and decodes a 2xx JSON
// answer into out (when not nil). A transport error is returned as status
// 0 with the error's text.
func (c *Client) CallAs(token, method, path string, body, out any) (int, string) {
	c.TB.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.TB.Fatalf("%s %s: %v", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		c.TB.Fatalf("%s %s: %v", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.TB.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

// Ready reports whether /readyz answers 200.
func (c *Client) Ready() bool {
	code, _ := c.Call("GET", "/readyz", nil, nil)
	return code == http.StatusOK
}

// Registered is the answer to a unit's registration.
type Registered struct {
	Serial string `json:"serial"`
	MQTT   struct {
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"mqtt"`
}

// Register registers serial (named "unit SERIAL") at site.
func (c *Client) Register(serial, site string) Registered {
	c.TB.Helper()
	var r Registered
	code, body := c.Call("POST", "/v1/units", map[string]string{"serial": serial, "name": "unit " + serial, "site": site}, &r)
	if code != http.StatusCreated {
		c.TB.Fatalf("register %s: %d %s", serial, code, body)
	}
	return r
}

// Metric reads one sample of /metrics (labels as they print, e.g.
// `name{reason="nan_inf"}`), 0 when absent.
func (c *Client) Metric(name string) float64 {
	c.TB.Helper()
	_, body := c.Call("GET", "/metrics", nil, nil)
	re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// Options of Start.
type Options struct {
	// Name tells instances apart in failures.
	Name string
	// Scheme and HTTP reach the API: "https" and a client trusting the
	// server's certificate with http.cert_file; default plain http.
	Scheme string
	HTTP   *http.Client
	// Within bounds the start and the wait for /readyz (default 30 s).
	Within time.Duration
	// Started: return once Run has started, ready or not (the test
	// watches readiness itself).
	Started bool
}

// Server is a serve running in-process; the test's cleanup stops it.
type Server struct {
	*Client
	App    App
	cancel context.CancelFunc
	done   chan error
}

// Start runs a and waits until it has started and /readyz says it is
// ready.
func Start(tb testing.TB, a App, o Options) *Server {
	tb.Helper()
	if o.Name == "" {
		o.Name = "serve"
	}
	if o.Scheme == "" {
		o.Scheme = "http"
	}
	if o.Within <= 0 {
		o.Within = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{App: a, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Run(ctx) }()
	select {
	case <-a.Started():
	case err := <-s.done:
		cancel()
		tb.Fatalf("%s exited before starting: %v", o.Name, err)
	case <-time.After(o.Within):
		cancel()
		tb.Fatalf("%s did not start within %v", o.Name, o.Within)
	}
	tb.Cleanup(func() { s.Stop(tb) })
	s.Client = &Client{TB: tb, Base: o.Scheme + "://" + a.HTTPAddr(), Token: a.AdminToken(), HTTP: o.HTTP}
	if !o.Started {
		wait.Within(tb, o.Within, o.Name+" ready", s.Ready)
	}
	return s
}

// Exited waits up to d for Run to return by itself and returns its error
// (ok false: still running). Once it has returned, Stop does nothing.
func (s *Server) Exited(d time.Duration) (err error, ok bool) {
	select {
	case err := <-s.done:
		s.cancel()
		s.cancel = nil
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// Stop cancels the serve and waits for Run to return (an error of Run
// fails the test); a second Stop does nothing.
func (s *Server) Stop(tb testing.TB) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			tb.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		tb.Error("serve did not stop within 30s")
	}
}

// Device connects an MQTT client with a unit's credentials; the test's
// cleanup disconnects it.
func (s *Server) Device(r Registered) paho.Client {
	s.TB.Helper()
	o := paho.NewClientOptions().AddBroker(s.App.MQTTURL()).SetClientID("dev-" + r.Serial + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
		SetUsername(r.MQTT.Username).SetPassword(r.MQTT.Password).SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		s.TB.Fatalf("device %s connect: %v", r.Serial, tok.Error())
	}
	s.TB.Cleanup(func() { c.Disconnect(0) })
	return c
}

// Publish publishes body at QoS 1 and waits for the broker's ack.
func Publish(tb testing.TB, c paho.Client, topic string, body any) {
	tb.Helper()
	tok := c.Publish(topic, 1, false, body)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("publish %s: %v", topic, tok.Error())
	}
}
