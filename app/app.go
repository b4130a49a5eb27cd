// Package app wires upswatch together: the bus, the registry, the history
// store and its recorder, the MQTT broker and ingest, and the HTTP API.
// cmd/upswatch only parses flags and calls it, so tests start the whole
// daemon in-process and ask it its real addresses.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/store/influx"
	"github.com/upswatch/upswatch/store/sqlite"
)

// ingestUser is the ingest's account on the embedded broker.
const ingestUser = "upswatch-ingest"

// App is one upswatch instance.
type App struct {
	cfg config.Config
	log *slog.Logger
	// Out receives the one-time admin token notice (stdout by default).
	Out io.Writer

	started  chan struct{}
	retry    retryPolicy
	areaTick time.Duration // the area evaluator's tick (0: its default)
	// now is the clock of the notifier and the weekly summary (nil: the
	// machine's); weeklyTrigger, when set, makes the summary sender look
	// at the accounts on each receive instead of every minute. Tests set
	// both to send a given Monday's summaries.
	now           func() time.Time
	weeklyTrigger <-chan time.Time

	httpAddr string
	mqttURL  string
	token    string
	// Addresses of the embedded broker's TLS and WebSocket listeners.
	mqttTLSAddr, mqttWSAddr string
	// loginLimiter slows console password guessing, one budget for every
	// instance (counted in metrics).
	loginLimiter *access.SharedFailureLimiter
}

// New validates the configuration; Run starts everything.
func New(cfg config.Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &App{cfg: cfg, log: log, Out: os.Stdout, started: make(chan struct{}), retry: defaultRetry}, nil
}

// Started is closed once every component runs; the addresses are then
// known.
func (a *App) Started() <-chan struct{} { return a.started }

// HTTPAddr is the API's bound address (after Started).
func (a *App) HTTPAddr() string { return a.httpAddr }

// MQTTURL is the broker devices connect to (after Started).
func (a *App) MQTTURL() string { return a.mqttURL }

// MQTTTLSAddr is the embedded broker's MQTT-over-TLS address ("" when
// off; after Started).
func (a *App) MQTTTLSAddr() string { return a.mqttTLSAddr }

// MQTTWSAddr is the embedded broker's WebSocket address ("" when off;
// after Started).
func (a *App) MQTTWSAddr() string { return a.mqttWSAddr }

// AdminToken is the admin bearer token in force (after Started).
func (a *App) AdminToken() string { return a.token }

// component is a running part: stop ends it and waits.
type component struct {
	name string
	stop func()
}

// group holds the running components in start order, as an oklog/run
// group does: each phase adds what it started, and stop ends them in
// reverse order.
type group struct {
	// ctx is Run's: the components' runs keep its values but not its
	// cancellation (each ends by its stop).
	ctx     context.Context
	log     *slog.Logger
	sup     *supervisor
	running []component
}

// goRun runs fn in the background under the supervisor (run again with
// backoff when it fails, the daemon stopped when it cannot heal); its stop
// cancels fn's context and waits for it to return.
func (g *group) goRun(name string, fn func(context.Context) error) {
	cctx, cancel := context.WithCancel(context.WithoutCancel(g.ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.sup.run(cctx, name, fn)
	}()
	g.onStop(name, func() { cancel(); <-done })
}

// onStop adds a part that needs no goroutine, only a stop.
func (g *group) onStop(name string, fn func()) { g.running = append(g.running, component{name, fn}) }

// stop stops the components, last started first.
func (g *group) stop() {
	for i := len(g.running) - 1; i >= 0; i-- {
		g.log.Debug("stopping", "component", g.running[i].name)
		g.running[i].stop()
	}
}

// errStartCancelled: ctx ended while a phase waited for a view to load;
// Run then stops what started and returns nil.
var errStartCancelled = errors.New("start cancelled")

// Run starts upswatch and blocks until ctx is done, then stops the parts
// in reverse order of start: devices first stop being read, held readings
// reach the bus and are acked, the history finishes its write, the bus
// closes last.
func (a *App) Run(ctx context.Context) error {
	g := &group{ctx: ctx, log: a.log}
	defer func() {
		g.stop()
		a.log.Info("upswatch stopped")
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sup, err := newSupervisor(a.log, a.retry, reg)
	if err != nil {
		return err
	}
	g.sup = sup
	if err := a.start(ctx, g, reg); err != nil {
		if errors.Is(err, errStartCancelled) {
			return nil
		}
		return err
	}
	close(a.started)
	a.log.Info("upswatch running", "http", a.httpAddr, "mqtt", a.mqttURL, "data_dir", a.cfg.DataDir)
	select {
	case <-ctx.Done():
		a.log.Info("shutting down")
		return nil
	case err := <-sup.Fatal():
		a.log.Error("a component cannot heal; shutting down", "err", err)
		return err
	}
}

// start runs the phases in order; each adds to g what it started.
func (a *App) start(ctx context.Context, g *group, reg *prometheus.Registry) error {
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	b, err := a.startBus(ctx, g, reg)
	if err != nil {
		return err
	}
	dev, err := a.startDevices(ctx, g, b)
	if err != nil {
		return err
	}
	hist, err := a.startHistory(ctx, g, b, reg)
	if err != nil {
		return err
	}
	al, err := a.startAlerting(g, b, dev, reg)
	if err != nil {
		return err
	}
	nt, err := a.startNotify(ctx, g, b, dev, al, reg)
	if err != nil {
		return err
	}
	if a.token, err = a.adminToken(); err != nil {
		return err
	}
	mq, err := a.startBroker(g, dev, reg)
	if err != nil {
		return err
	}
	hub, err := a.startLive(g, b, dev)
	if err != nil {
		return err
	}
	rp, err := a.startReports(g, b, dev, hist, nt, reg)
	if err != nil {
		return err
	}
	var in ingestRef // ready-checked by the API before the ingest starts
	if err := a.startHTTP(ctx, g, reg, b, dev, hist, al, nt, rp, hub, &in); err != nil {
		return err
	}
	return a.startIngest(ctx, g, reg, b, dev, mq, &in)
}

func (a *App) connectNATS(onStop func(string, func())) (*nats.Conn, error) {
	opts := bus.ConnectOptions("upswatch", a.log)
	url := a.cfg.NATS.URL
	if url == "" {
		ns, err := bus.StartEmbedded(bus.EmbeddedOptions{
			StoreDir: filepath.Join(a.cfg.DataDir, "nats"), Listen: a.cfg.NATS.Listen, Logger: a.log,
		})
		if err != nil {
			return nil, err
		}
		onStop("nats server", func() { ns.Shutdown(); ns.WaitForShutdown() })
		opts = append(opts, bus.InProcess(ns))
		a.log.Info("embedded nats running", "store_dir", filepath.Join(a.cfg.DataDir, "nats"), "listen", a.cfg.NATS.Listen)
	} else if a.cfg.NATS.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.cfg.NATS.CredsFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	onStop("nats connection", func() {
		if err := nc.Drain(); err != nil {
			nc.Close()
		}
		for nc.IsDraining() {
			time.Sleep(10 * time.Millisecond)
		}
	})
	return nc, nil
}

func (a *App) openHistory(ctx context.Context, reg prometheus.Registerer) (store.History, error) {
	if a.cfg.Influx.URL != "" {
		h, err := influx.New(ctx, influx.Config{
			URL: a.cfg.Influx.URL, Token: a.cfg.Influx.Token, Org: a.cfg.Influx.Org, Bucket: a.cfg.Influx.Bucket,
			BatchSize: a.cfg.Influx.BatchSize, Timeout: a.cfg.Influx.Timeout, Logger: a.log, Registerer: reg,
		})
		if err != nil {
			return nil, fmt.Errorf("influx: %w", err)
		}
		a.log.Info("history store: influxdb", "url", a.cfg.Influx.URL, "bucket", a.cfg.Influx.Bucket)
		if a.cfg.Store.Retention > 0 {
			a.log.Warn("store.retention is not applied to InfluxDB: the bucket's own retention period is; set it on the bucket",
				"store_retention", a.cfg.Store.Retention.String(), "bucket", a.cfg.Influx.Bucket)
		}
		return h, nil
	}
	path := filepath.Join(a.cfg.DataDir, "history.db")
	h, err := sqlite.Open(path, sqlite.Options{Retention: a.cfg.Store.Retention, Logger: a.log, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("history store %s: %w", path, err)
	}
	a.log.Info("history store: embedded sqlite", "path", path)
	return h, nil
}

// adminToken returns the configured token, or the one in the data dir,
// generating (and printing, once) a new one on first start.
func (a *App) adminToken() (string, error) {
	if a.cfg.AdminToken != "" {
		return a.cfg.AdminToken, nil
	}
	path := filepath.Join(a.cfg.DataDir, "admin.token")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	tok, err := a.secretFile("admin.token")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(a.Out, "\nGenerated admin token (shown once; saved in %s):\n\n    %s\n\n", path, tok)
	return tok, nil
}

// secretFile reads a secret from the data dir, creating it if missing.
func (a *App) secretFile(name string) (string, error) {
	path := filepath.Join(a.cfg.DataDir, name)
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	s := registry.RandomSecret(24)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return s, nil
}

// instanceID names this instance: the MQTT client id (its persistent
// session) and the rule engine's consumer identity.
func (a *App) instanceID() string {
	if a.cfg.MQTT.ClientID != "" {
		return a.cfg.MQTT.ClientID
	}
	host, _ := os.Hostname()
	return "upswatch-" + sanitize(host)
}

// loadRules reads the alert catalog: rules.file, else configs/rules.yaml
// when present, else the built-in defaults.
func (a *App) loadRules() (*rules.Catalog, error) {
	path := a.cfg.Rules.File
	if path == "" {
		if _, err := os.Stat(rulesDefaultPath); err != nil {
			a.log.Info("alert catalog: built-in defaults")
			return rules.DefaultCatalog(), nil
		}
		path = rulesDefaultPath
	}
	cat, err := rules.LoadCatalog(path)
	if err != nil {
		return nil, fmt.Errorf("rules.file %s: %w", path, err)
	}
	a.log.Info("alert catalog loaded", "path", path)
	return cat, nil
}

const rulesDefaultPath = "configs/rules.yaml"

// closed reports whether the channel ready returns now is closed (a
// component run again after a failure gives a new one).
func closed(ready func() <-chan struct{}) func() bool {
	return func() bool {
		select {
		case <-ready():
			return true
		default:
			return false
		}
	}
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '+' || r == '#' || r == '/' {
			return '-'
		}
		return r
	}, s)
}
