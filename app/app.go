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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/actions"
	"github.com/upswatch/upswatch/api"
	"github.com/upswatch/upswatch/area"
	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/broker"
	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/ingest"
	"github.com/upswatch/upswatch/ingest/payload"
	"github.com/upswatch/upswatch/keyring"
	"github.com/upswatch/upswatch/live"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/templates"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/store/influx"
	"github.com/upswatch/upswatch/store/recorder"
	"github.com/upswatch/upswatch/store/sqlite"
	"github.com/upswatch/upswatch/ups"
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
	httpAddr string
	mqttURL  string
	token    string
	// Addresses of the embedded broker's TLS and WebSocket listeners.
	mqttTLSAddr, mqttWSAddr string
	// loginLimiter slows console password guessing (counted in metrics).
	loginLimiter *access.FailureLimiter
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

// Run starts upswatch and blocks until ctx is done, then stops the parts
// in reverse order of start: devices first stop being read, held readings
// reach the bus and are acked, the history finishes its write, the bus
// closes last.
func (a *App) Run(ctx context.Context) (err error) {
	var running []component
	defer func() {
		for i := len(running) - 1; i >= 0; i-- {
			a.log.Debug("stopping", "component", running[i].name)
			running[i].stop()
		}
		a.log.Info("upswatch stopped")
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sup, err := newSupervisor(a.log, a.retry, reg)
	if err != nil {
		return err
	}
	// goRun runs fn in the background under the supervisor (run again
	// with backoff when it fails, the daemon stopped when it cannot
	// heal); its stop cancels fn's context and waits for it to return.
	goRun := func(name string, fn func(context.Context) error) {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			sup.run(cctx, name, fn)
		}()
		running = append(running, component{name, func() { cancel(); <-done }})
	}
	onStop := func(name string, fn func()) { running = append(running, component{name, fn}) }

	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	// Bus.
	nc, err := a.connectNATS(onStop)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if _, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{
		Partitions: a.cfg.NATS.Partitions, Replicas: a.cfg.NATS.Replicas,
		MaxAge: a.cfg.NATS.StreamMaxAge, MaxBytes: a.cfg.NATS.StreamMaxBytes,
	}); err != nil {
		return err
	}

	mon, err := bus.NewStreamMonitor(js, bus.ReadingsStream, 15*time.Second, a.log, reg)
	if err != nil {
		return err
	}
	goRun("stream monitor", mon.Run)

	// Registry.
	units, err := registry.Open(ctx, js, registry.Options{Replicas: a.cfg.NATS.Replicas, Logger: a.log})
	if err != nil {
		return err
	}
	goRun("registry", units.Run)
	select {
	case <-units.Ready():
	case <-ctx.Done():
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("registry: view did not load within 30s")
	}
	revoked, err := registry.OpenRevocations(ctx, js, registry.Options{Replicas: a.cfg.NATS.Replicas, Logger: a.log})
	if err != nil {
		return err
	}
	goRun("revocations", revoked.Run)
	select {
	case <-revoked.Ready():
	case <-ctx.Done():
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("revocations: view did not load within 30s")
	}

	// History store and its recorder.
	hist, err := a.openHistory(ctx, reg)
	if err != nil {
		return err
	}
	onStop("history store", func() {
		if err := hist.Close(); err != nil {
			a.log.Error("closing history store", "err", err)
		}
	})
	if sq, ok := hist.(*sqlite.Store); ok {
		goRun("retention", sq.Run)
	}
	rec, err := recorder.New(js, hist, recorder.Config{Logger: a.log, Registerer: reg})
	if err != nil {
		return err
	}
	goRun("recorder", rec.Run)

	// Rule engine: evaluates each unit's readings in order (one instance
	// per partition at a time) and publishes alert events.
	cat, err := a.loadRules()
	if err != nil {
		return err
	}
	eng, err := engine.New(js, engine.Config{
		Evaluator: rules.NewEvaluator(cat), Partitions: a.cfg.NATS.Partitions, Units: units,
		Replicas: a.cfg.NATS.Replicas, Logger: a.log, Registerer: reg, InstanceID: a.instanceID(),
	})
	if err != nil {
		return err
	}
	goRun("rules", eng.Run)

	// Areas: one site_outage (site_unreachable) for many units of an area
	// going on battery (silent) together; the notifier folds their own
	// notices into it.
	rulesCfg := cat.Config()
	areaCfg, err := area.ParseConfig(&rulesCfg.Areas)
	if err != nil {
		return err
	}
	areas, err := area.NewEvaluator(js, area.EvaluatorConfig{Areas: areaCfg, Units: units,
		Replicas: a.cfg.NATS.Replicas, Logger: a.log, TickEvery: a.areaTick})
	if err != nil {
		return err
	}
	goRun("areas", areas.Run)
	folds, err := area.NewFolds(js, areaCfg, units, a.log)
	if err != nil {
		return err
	}
	// Battery lifecycle: its own consumer of the readings, so it costs
	// the rule engine nothing; its alerts go to ALERTS like the engine's.
	bat, err := battery.NewTracker(js, battery.TrackerConfig{Replicas: a.cfg.NATS.Replicas, Logger: a.log})
	if err != nil {
		return err
	}
	goRun("battery", func(ctx context.Context) error {
		select { // the engine creates the ALERTS stream and bucket it needs
		case <-eng.Ready():
		case <-ctx.Done():
			return nil
		}
		return bat.Run(ctx)
	})

	// Notifications: recipients, templates, providers, and the pipeline
	// that turns alert events into deliveries.
	keys, keysPath, err := a.loadKeyring()
	if err != nil {
		return err
	}
	accounts, err := recipients.Open(ctx, js, recipients.Options{Replicas: a.cfg.NATS.Replicas, Logger: a.log,
		Sealer: keyring.Records{Keyring: keys}, Index: keys.BlindIndex})
	if err != nil {
		return err
	}
	goRun("recipients", accounts.Run)
	select {
	case <-accounts.Ready():
	case <-ctx.Done():
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("recipients: view did not load within 30s")
	}
	if err := a.checkKeyring(ctx, accounts, keys); err != nil {
		return err
	}
	tmpl, err := templates.Load(a.cfg.Notify.TemplatesDir)
	if err != nil {
		return err
	}
	// Acknowledgements and silences people set on alerts (the pipeline
	// skips silenced ones).
	acts, err := actions.Open(ctx, js, actions.Options{Replicas: a.cfg.NATS.Replicas, Logger: a.log})
	if err != nil {
		return err
	}
	goRun("alert actions", acts.Run)
	senders, err := pipeline.NewSenders(ctx, a.cfg.Notify, a.log, reg)
	if err != nil {
		return err
	}
	notifier, err := pipeline.New(js, pipeline.Config{
		Units: units, Recipients: accounts, Templates: tmpl,
		FCM: senders.FCM, APNS: senders.APNS, APNSTopic: senders.APNSTopic, SMS: senders.SMS,
		ExpireAfter:    a.cfg.Notify.ExpireAfter,
		InitialBackoff: a.cfg.Notify.Retry.InitialBackoff,
		MaxBackoff:     a.cfg.Notify.Retry.MaxBackoff,
		MaxAttempts:    a.cfg.Notify.Retry.MaxAttempts,
		Replicas:       a.cfg.NATS.Replicas, Logger: a.log, Registerer: reg,
		Silences: acts, Folds: folds,
	})
	if err != nil {
		return err
	}
	goRun("notify", notifier.Run)

	// HTTP API (readiness reports the parts as they come up).
	a.token, err = a.adminToken()
	if err != nil {
		return err
	}
	var ing *ingest.Ingest
	var ingMu sync.Mutex
	var embedded *broker.Broker
	checks := []api.ReadyCheck{
		{Name: "bus", Ready: nc.IsConnected},
		{Name: "registry", Ready: sup.check("registry", closed(units.Ready))},
		{Name: "revocations", Ready: sup.check("revocations", closed(revoked.Ready))},
		{Name: "recipients", Ready: sup.check("recipients", closed(accounts.Ready))},
		{Name: "history", Ready: sup.check("recorder", closed(rec.Ready))},
		{Name: "rules", Ready: sup.check("rules", closed(eng.Ready))},
		{Name: "battery", Ready: sup.check("battery", closed(bat.Ready))},
		{Name: "notify", Ready: sup.check("notify", closed(notifier.Ready))},
		{Name: "alert actions", Ready: sup.check("alert actions", closed(acts.Ready))},
		{Name: "areas", Ready: sup.check("areas", closed(areas.Ready))},
		{Name: "ingest", Ready: sup.check("ingest", func() bool {
			ingMu.Lock()
			defer ingMu.Unlock()
			return ing != nil && ing.Ready()
		})},
	}

	// MQTT: embedded broker unless an external one is configured.
	mqttURL, user, pass := a.cfg.MQTT.URL, a.cfg.MQTT.Username, a.cfg.MQTT.Password
	if mqttURL == "" {
		user = ingestUser
		pass, err = a.secretFile("mqtt-ingest.secret")
		if err != nil {
			return err
		}
		tlsConf, clientCAs, err := a.mqttTLS()
		if err != nil {
			return err
		}
		opts := broker.Options{
			Listen: a.cfg.MQTT.Listen, TopicPrefix: a.cfg.MQTT.TopicPrefix,
			ServiceUser: user, ServicePassword: pass, Devices: units,
			MaxPendingWrites: a.cfg.MQTT.MaxPendingWrites, DeviceRate: a.cfg.MQTT.DeviceRate,
			DeviceBurst: a.cfg.MQTT.DeviceBurst, Logger: a.log, Registerer: reg,
			TLS: tlsConf, WSListen: a.cfg.MQTT.WSListen, ClientCAs: clientCAs,
			DeviceAuth: a.cfg.MQTT.DeviceAuth, Revoked: revoked, Failures: a.connectFailures(),
		}
		if tlsConf != nil {
			opts.TLSListen = a.cfg.MQTT.TLSListen
		}
		b, err := broker.New(opts)
		if err != nil {
			return err
		}
		if err := b.Start(); err != nil {
			return err
		}
		onStop("mqtt broker", func() { _ = b.Close() })
		// A revoked certificate, a new password or a deleted unit ends the
		// device's sessions at once, whichever instance made the change.
		revoked.OnRevoke(func(s ups.Serial, at time.Time) { b.DisconnectCertificates(s, at) })
		units.OnCredentialsChange(func(s ups.Serial) { b.Disconnect(s, "credentials changed or unit deleted") })
		embedded = b
		mqttURL = b.URL()
		a.mqttTLSAddr, a.mqttWSAddr = b.TLSAddr(), b.WSAddr()
		a.log.Info("embedded mqtt broker listening", "addr", b.Addr(), "tls", b.TLSAddr(), "websocket", b.WSAddr(),
			"device_auth", a.cfg.MQTT.DeviceAuth)
		a.warnPlain("mqtt.listen", b.Addr())
		if tlsConf == nil && b.WSAddr() != "" {
			a.warnPlain("mqtt.ws_listen", b.WSAddr())
		}
	}
	a.mqttURL = mqttURL

	// Live events for the console: one hub per instance fans the bus out.
	hub, err := live.New(live.Config{Conn: nc, Units: units, ReadingJSON: api.ReadingJSON, Logger: a.log})
	if err != nil {
		return err
	}
	goRun("live events", hub.Run)
	checks = append(checks, api.ReadyCheck{Name: "live", Ready: sup.check("live events", closed(hub.Ready))})

	var catalog api.Catalog
	if c, err := a.loadProducts(); err != nil {
		return err
	} else if c != nil {
		catalog = c
	}
	srv, err := api.New(api.Config{
		AdminToken: a.token, Broker: mqttURL, TopicPrefix: a.cfg.MQTT.TopicPrefix,
		Units: deletingUnits{Registry: units, js: js, partitions: a.cfg.NATS.Partitions}, History: hist, Ready: checks, Gatherer: reg, Logger: a.log,
		Catalog: catalog, RatePerSecond: a.cfg.HTTP.RatePerSecond, RateBurst: a.cfg.HTTP.RateBurst,
		RotateKeys: (&keyRotator{keys: keys, path: keysPath, accounts: accounts}).rotate,
	})
	if err != nil {
		return err
	}
	srv.HandleNotify(accounts, notifier)
	alerts := engine.NewAlerts(js, units)
	srv.HandleAlerts(alerts)
	srv.HandleAlertActions(alerts, acts)
	srv.HandleOutages(alerts, notifier)
	reporter, err := report.New(hist, alerts)
	if err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	srv.HandleReports(reporter)
	srv.HandleEvents(hub)
	srv.HandleDeviceCredentials(deviceCredentials{units, revoked})
	a.loginLimiter = loginLimiter(reg)
	srv.HandleBattery(battery.NewStore(js, nil))
	if err := a.mountConsole(ctx, js, srv, units, hist, alerts, accounts, notifier, acts); err != nil {
		return err
	}
	httpTLS, err := a.httpTLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", a.cfg.HTTP.Addr, err)
	}
	a.httpAddr = ln.Addr().String()
	if httpTLS == nil {
		a.warnPlain("http.addr", a.httpAddr)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		TLSConfig: httpTLS}
	hs.RegisterOnShutdown(hub.Close) // open event streams end, so Shutdown need not wait them out
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		serve := hs.Serve
		if httpTLS != nil {
			serve = func(ln net.Listener) error { return hs.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server failed", "err", err)
			sup.giveUp(fmt.Errorf("http server: %w", err))
		}
	}()
	onStop("http", func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-httpDone
	})
	a.log.Info("http api listening", "addr", a.httpAddr, "tls", httpTLS != nil)

	// Ingest last: devices are read only once everything downstream runs.
	// With a shared group on an external broker, instances lease their
	// sessions and drain the ones of instances that died.
	var takeover *ingest.Takeover
	if a.cfg.MQTT.URL != "" && a.cfg.MQTT.SharedGroup != "" {
		leases, err := ingest.EnsureLeases(ctx, js, a.cfg.NATS.Replicas)
		if err != nil {
			return err
		}
		takeover = &ingest.Takeover{Leases: leases}
	}
	in, err := ingest.New(ingest.Config{
		BrokerURL: mqttURL, Username: user, Password: pass, ClientID: a.instanceID(),
		TopicPrefix: a.cfg.MQTT.TopicPrefix, SharedGroup: a.cfg.MQTT.SharedGroup,
		Partitions: a.cfg.NATS.Partitions, BatchSize: a.cfg.Ingest.BatchSize,
		FlushInterval: a.cfg.Ingest.FlushInterval, MaxInflight: a.cfg.Ingest.MaxInflight,
		Limits: payload.Limits{MaxBytes: a.cfg.Ingest.MaxPayloadBytes, MaxReadings: a.cfg.Ingest.MaxReadings,
			MaxFuture: a.cfg.Ingest.MaxFuture},
		Takeover: takeover, Logger: a.log, Registerer: reg,
	}, units, js)
	if err != nil {
		return err
	}
	ingMu.Lock()
	ing = in
	ingMu.Unlock()
	goRun("ingest", in.Run)
	if embedded != nil {
		// Devices on the embedded broker are acked only once the bus has
		// their readings; wills (offline) still come by the subscription.
		embedded.SetSink(in)
	}

	close(a.started)
	a.log.Info("upswatch running", "http", a.httpAddr, "mqtt", mqttURL, "data_dir", a.cfg.DataDir)
	select {
	case <-ctx.Done():
		a.log.Info("shutting down")
		return nil
	case err := <-sup.Fatal():
		a.log.Error("a component cannot heal; shutting down", "err", err)
		return err
	}
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
