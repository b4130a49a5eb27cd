package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/actions"
	"github.com/upswatch/upswatch/api"
	"github.com/upswatch/upswatch/area"
	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/broker"
	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/ingest"
	"github.com/upswatch/upswatch/ingest/payload"
	"github.com/upswatch/upswatch/keyring"
	"github.com/upswatch/upswatch/live"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/senders"
	"github.com/upswatch/upswatch/notify/templates"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/report/weekly"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/store/recorder"
	"github.com/upswatch/upswatch/store/sqlite"
	"github.com/upswatch/upswatch/ups"
)

// The phases of Run, in start order. Each starts its parts under the
// group (which stops them in reverse) and returns what later phases use.

// busPhase is the NATS connection and JetStream, with READINGS in place.
type busPhase struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (a *App) startBus(ctx context.Context, g *group, reg prometheus.Registerer) (busPhase, error) {
	nc, err := a.connectNATS(g.onStop)
	if err != nil {
		return busPhase{}, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return busPhase{}, fmt.Errorf("jetstream: %w", err)
	}
	_, partitions, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{
		Partitions: a.cfg.NATS.Partitions, Replicas: a.cfg.NATS.Replicas,
		MaxAge: a.cfg.NATS.StreamMaxAge, MaxBytes: a.cfg.NATS.StreamMaxBytes,
	})
	if err != nil {
		return busPhase{}, err
	}
	// Unset (0), the count is the stream's: the phases after this one
	// (ingest, rule engine) read it here.
	a.cfg.NATS.Partitions = partitions
	mon, err := bus.NewStreamMonitor(js, bus.ReadingsStream, 15*time.Second, a.log, reg)
	if err != nil {
		return busPhase{}, err
	}
	g.goRun("stream monitor", mon.Run)
	return busPhase{nc: nc, js: js}, nil
}

// devicesPhase is the unit registry and the revoked certificates, both
// loaded.
type devicesPhase struct {
	units   *registry.Registry
	revoked *registry.Revocations
}

func (a *App) startDevices(ctx context.Context, g *group, b busPhase) (devicesPhase, error) {
	units, err := registry.Open(ctx, b.js, registry.Options{Replicas: a.cfg.NATS.Replicas, Logger: a.log})
	if err != nil {
		return devicesPhase{}, err
	}
	g.goRun("registry", units.Run)
	if err := awaitLoaded(ctx, "registry", units.Ready()); err != nil {
		return devicesPhase{}, err
	}
	revoked, err := registry.OpenRevocations(ctx, b.js, registry.Options{Replicas: a.cfg.NATS.Replicas, Logger: a.log})
	if err != nil {
		return devicesPhase{}, err
	}
	g.goRun("revocations", revoked.Run)
	if err := awaitLoaded(ctx, "revocations", revoked.Ready()); err != nil {
		return devicesPhase{}, err
	}
	return devicesPhase{units: units, revoked: revoked}, nil
}

// awaitLoaded waits for a view to load: errStartCancelled when ctx ends
// first, an error after 30s.
func awaitLoaded(ctx context.Context, name string, ready <-chan struct{}) error {
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return errStartCancelled
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s: view did not load within 30s", name)
	}
}

// historyPhase is the history store and the recorder that fills it.
type historyPhase struct {
	hist store.History
	rec  *recorder.Recorder
}

func (a *App) startHistory(ctx context.Context, g *group, b busPhase, reg prometheus.Registerer) (historyPhase, error) {
	hist, err := a.openHistory(ctx, reg)
	if err != nil {
		return historyPhase{}, err
	}
	g.onStop("history store", func() {
		if err := hist.Close(); err != nil {
			a.log.Error("closing history store", "err", err)
		}
	})
	if sq, ok := hist.(*sqlite.Store); ok {
		g.goRun("retention", sq.Run)
	}
	rec, err := recorder.New(b.js, hist, recorder.Config{Logger: a.log, Registerer: reg})
	if err != nil {
		return historyPhase{}, err
	}
	g.goRun("recorder", rec.Run)
	return historyPhase{hist: hist, rec: rec}, nil
}

// alertingPhase is what turns readings into alert events: the rule
// engine, the areas and the battery tracker.
type alertingPhase struct {
	eng   *engine.Engine
	areas *area.Evaluator
	folds *area.Folds
	bat   *battery.Tracker
}

func (a *App) startAlerting(g *group, b busPhase, dev devicesPhase, reg prometheus.Registerer) (alertingPhase, error) {
	// Rule engine: evaluates each unit's readings in order (one instance
	// per partition at a time) and publishes alert events.
	cat, err := a.loadRules()
	if err != nil {
		return alertingPhase{}, err
	}
	eng, err := engine.New(b.js, engine.Config{
		Evaluator: rules.NewEvaluator(cat), Partitions: a.cfg.NATS.Partitions, Units: dev.units,
		Replicas: a.cfg.NATS.Replicas, Logger: a.log, Registerer: reg, InstanceID: a.instanceID(),
	})
	if err != nil {
		return alertingPhase{}, err
	}
	g.goRun("rules", eng.Run)

	// Areas: one site_outage (site_unreachable) for many units of an area
	// going on battery (silent) together; the notifier folds their own
	// notices into it.
	rulesCfg := cat.Config()
	areaCfg, err := area.ParseConfig(&rulesCfg.Areas)
	if err != nil {
		return alertingPhase{}, err
	}
	areas, err := area.NewEvaluator(b.js, area.EvaluatorConfig{Areas: areaCfg, Units: dev.units,
		Replicas: a.cfg.NATS.Replicas, Logger: a.log, TickEvery: a.areaTick})
	if err != nil {
		return alertingPhase{}, err
	}
	g.goRun("areas", afterEngine(eng, areas.Run))
	folds, err := area.NewFolds(b.js, areaCfg, dev.units, a.log)
	if err != nil {
		return alertingPhase{}, err
	}
	// Battery lifecycle: its own consumer of the readings, so it costs
	// the rule engine nothing; its alerts go to ALERTS like the engine's.
	bat, err := battery.NewTracker(b.js, battery.TrackerConfig{Replicas: a.cfg.NATS.Replicas, Logger: a.log})
	if err != nil {
		return alertingPhase{}, err
	}
	g.goRun("battery", afterEngine(eng, bat.Run))
	return alertingPhase{eng: eng, areas: areas, folds: folds, bat: bat}, nil
}

// afterEngine runs run once the rule engine is ready: the engine creates
// the ALERTS stream and the active-alerts bucket that the area evaluator
// and the battery tracker need.
func afterEngine(eng *engine.Engine, run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-eng.Ready():
		case <-ctx.Done():
			return nil
		}
		return run(ctx)
	}
}

// notifyPhase is the recipients, the actions people take on alerts and
// the pipeline that turns alert events into deliveries.
type notifyPhase struct {
	keys     *keyring.Keyring
	keysPath string
	accounts *recipients.Store
	acts     *actions.Store
	notifier *pipeline.Pipeline
	tmpl     *templates.Set
}

func (a *App) startNotify(ctx context.Context, g *group, b busPhase, dev devicesPhase, al alertingPhase,
	reg prometheus.Registerer) (notifyPhase, error) {
	keys, keysPath, err := a.loadKeyring()
	if err != nil {
		return notifyPhase{}, err
	}
	accounts, err := recipients.Open(ctx, b.js, recipients.Options{Replicas: a.cfg.NATS.Replicas, Logger: a.log,
		Sealer: keyring.Records{Keyring: keys}, Index: keys.BlindIndex})
	if err != nil {
		return notifyPhase{}, err
	}
	g.goRun("recipients", accounts.Run)
	if err := awaitLoaded(ctx, "recipients", accounts.Ready()); err != nil {
		return notifyPhase{}, err
	}
	if err := a.checkKeyring(ctx, accounts, keys); err != nil {
		return notifyPhase{}, err
	}
	tmpl, err := templates.Load(a.cfg.Notify.TemplatesDir)
	if err != nil {
		return notifyPhase{}, err
	}
	// Acknowledgements and silences people set on alerts (the pipeline
	// skips silenced ones).
	acts, err := actions.Open(ctx, b.js, actions.Options{Replicas: a.cfg.NATS.Replicas, Logger: a.log})
	if err != nil {
		return notifyPhase{}, err
	}
	g.goRun("alert actions", acts.Run)
	snd, err := senders.New(ctx, sendersConfig(a.cfg.Notify), a.log, reg)
	if err != nil {
		return notifyPhase{}, err
	}
	notifier, err := pipeline.New(b.js, pipeline.Config{
		Units: dev.units, Recipients: accounts, Templates: tmpl,
		FCM: snd.FCM, APNS: snd.APNS, APNSTopic: snd.APNSTopic, SMS: snd.SMS,
		ExpireAfter:    a.cfg.Notify.ExpireAfter,
		InitialBackoff: a.cfg.Notify.Retry.InitialBackoff,
		MaxBackoff:     a.cfg.Notify.Retry.MaxBackoff,
		MaxAttempts:    a.cfg.Notify.Retry.MaxAttempts,
		Replicas:       a.cfg.NATS.Replicas, Logger: a.log, Registerer: reg,
		Silences: acts, Folds: al.folds, Now: a.now,
	})
	if err != nil {
		return notifyPhase{}, err
	}
	g.goRun("notify", notifier.Run)
	return notifyPhase{keys: keys, keysPath: keysPath, accounts: accounts, acts: acts, notifier: notifier, tmpl: tmpl}, nil
}

// reportsPhase is the power reports: the reporter the API serves them
// with, and the weekly summary sender (nil when report.weekly is off).
type reportsPhase struct {
	reporter *report.Reporter
	weekly   *weekly.Sender
}

func (a *App) startReports(g *group, b busPhase, dev devicesPhase, hist historyPhase, nt notifyPhase,
	reg prometheus.Registerer) (reportsPhase, error) {
	reporter, err := report.New(hist.hist, engine.NewAlerts(b.js, dev.units))
	if err != nil {
		return reportsPhase{}, fmt.Errorf("reports: %w", err)
	}
	if !a.cfg.Report.Weekly {
		return reportsPhase{reporter: reporter}, nil
	}
	// Every instance runs the sender: the claim in its bucket lets one
	// send each account's week, and another take over when it stops.
	w, err := weekly.New(b.js, weekly.Config{Accounts: nt.accounts, Units: dev.units, Reports: reporter,
		Outbox: nt.notifier, Templates: nt.tmpl, At: a.cfg.Report.WeeklyAt, Trigger: a.weeklyTrigger,
		InstanceID: a.instanceID(), Replicas: a.cfg.NATS.Replicas, Logger: a.log, Registerer: reg, Now: a.now})
	if err != nil {
		return reportsPhase{}, err
	}
	g.goRun("weekly summary", w.Run)
	return reportsPhase{reporter: reporter, weekly: w}, nil
}

// erasingNotifier is the notifier for the API, erasing an account's
// weekly summary claims (keyed by its id) with its notification records.
type erasingNotifier struct {
	*pipeline.Pipeline
	weekly *weekly.Sender
}

func (e erasingNotifier) EraseRecipient(ctx context.Context, accountID string) (int, error) {
	n, err := e.Pipeline.EraseRecipient(ctx, accountID)
	if err != nil {
		return n, err
	}
	m, err := e.weekly.Erase(ctx, accountID)
	return n + m, err
}

// mqttPhase is where the ingest reads devices: the embedded broker
// (embedded set) unless an external one is configured.
type mqttPhase struct {
	url, user, pass string
	embedded        *broker.Broker
}

func (a *App) startBroker(g *group, dev devicesPhase, reg prometheus.Registerer) (mqttPhase, error) {
	mq := mqttPhase{url: a.cfg.MQTT.URL, user: a.cfg.MQTT.Username, pass: a.cfg.MQTT.Password}
	if mq.url != "" {
		a.mqttURL = mq.url
		return mq, nil
	}
	var err error
	mq.user = ingestUser
	mq.pass, err = a.secretFile("mqtt-ingest.secret")
	if err != nil {
		return mqttPhase{}, err
	}
	tlsConf, clientCAs, err := a.mqttTLS()
	if err != nil {
		return mqttPhase{}, err
	}
	opts := broker.Options{
		Listen: a.cfg.MQTT.Listen, TopicPrefix: a.cfg.MQTT.TopicPrefix,
		ServiceUser: mq.user, ServicePassword: mq.pass, Devices: dev.units,
		MaxPendingWrites: a.cfg.MQTT.MaxPendingWrites, DeviceRate: a.cfg.MQTT.DeviceRate,
		DeviceBurst: a.cfg.MQTT.DeviceBurst, Logger: a.log, Registerer: reg,
		TLS: tlsConf, WSListen: a.cfg.MQTT.WSListen, ClientCAs: clientCAs,
		DeviceAuth: a.cfg.MQTT.DeviceAuth, Revoked: dev.revoked, Failures: a.connectFailures(),
		AwaitSink: true, // the ingest, last to start, is the sink
	}
	if tlsConf != nil {
		opts.TLSListen = a.cfg.MQTT.TLSListen
	}
	b, err := broker.New(opts)
	if err != nil {
		return mqttPhase{}, err
	}
	if err := b.Start(); err != nil {
		return mqttPhase{}, err
	}
	g.onStop("mqtt broker", func() { _ = b.Close() })
	// A revoked certificate, a new password or a deleted unit ends the
	// device's sessions at once, whichever instance made the change.
	dev.revoked.OnRevoke(func(s ups.Serial, at time.Time) { b.DisconnectCertificates(s, at) })
	dev.units.OnCredentialsChange(func(s ups.Serial) { b.Disconnect(s, "credentials changed or unit deleted") })
	mq.embedded = b
	mq.url = b.URL()
	a.mqttTLSAddr, a.mqttWSAddr = b.TLSAddr(), b.WSAddr()
	a.log.Info("embedded mqtt broker listening", "addr", b.Addr(), "tls", b.TLSAddr(), "websocket", b.WSAddr(),
		"device_auth", a.cfg.MQTT.DeviceAuth)
	a.warnPlain("mqtt.listen", b.Addr())
	if tlsConf == nil && b.WSAddr() != "" {
		a.warnPlain("mqtt.ws_listen", b.WSAddr())
	}
	a.mqttURL = mq.url
	return mq, nil
}

// startLive starts the console's live events: one hub per instance fans
// the bus out.
func (a *App) startLive(g *group, b busPhase, dev devicesPhase) (*live.Hub, error) {
	hub, err := live.New(live.Config{Conn: b.nc, Units: dev.units, ReadingJSON: api.ReadingJSON, Logger: a.log})
	if err != nil {
		return nil, err
	}
	g.goRun("live events", hub.Run)
	return hub, nil
}

// ingestRef holds the ingest once it starts, for the readiness check the
// API has from before.
type ingestRef struct {
	mu sync.Mutex
	in *ingest.Ingest
}

func (r *ingestRef) set(in *ingest.Ingest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.in = in
}

func (r *ingestRef) ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.in != nil && r.in.Ready()
}

// readyChecks are the API's readiness checks, one per part.
func readyChecks(sup *supervisor, b busPhase, dev devicesPhase, hist historyPhase, al alertingPhase, nt notifyPhase,
	rp reportsPhase, hub *live.Hub, in *ingestRef) []api.ReadyCheck {
	checks := []api.ReadyCheck{
		{Name: "bus", Ready: b.nc.IsConnected},
		{Name: "registry", Ready: sup.check("registry", closed(dev.units.Ready))},
		{Name: "revocations", Ready: sup.check("revocations", closed(dev.revoked.Ready))},
		{Name: "recipients", Ready: sup.check("recipients", closed(nt.accounts.Ready))},
		{Name: "history", Ready: sup.check("recorder", closed(hist.rec.Ready))},
		{Name: "rules", Ready: sup.check("rules", closed(al.eng.Ready))},
		{Name: "battery", Ready: sup.check("battery", closed(al.bat.Ready))},
		{Name: "notify", Ready: sup.check("notify", closed(nt.notifier.Ready))},
		{Name: "alert actions", Ready: sup.check("alert actions", closed(nt.acts.Ready))},
		{Name: "areas", Ready: sup.check("areas", closed(al.areas.Ready))},
		{Name: "ingest", Ready: sup.check("ingest", in.ready)},
		{Name: "live", Ready: sup.check("live events", closed(hub.Ready))},
	}
	if rp.weekly != nil {
		checks = append(checks, api.ReadyCheck{Name: "weekly summary", Ready: sup.check("weekly summary", closed(rp.weekly.Ready))})
	}
	return checks
}

// startHTTP serves the API and the console (readiness reports the parts
// as they come up).
func (a *App) startHTTP(ctx context.Context, g *group, reg *prometheus.Registry, b busPhase, dev devicesPhase,
	hist historyPhase, al alertingPhase, nt notifyPhase, rp reportsPhase, hub *live.Hub, in *ingestRef) error {
	var catalog api.Catalog
	if c, err := a.loadProducts(); err != nil {
		return err
	} else if c != nil {
		catalog = c
	}
	srv, err := api.New(api.Config{
		AdminToken: a.token, Broker: a.mqttURL, TopicPrefix: a.cfg.MQTT.TopicPrefix,
		Units:   deletingUnits{Registry: dev.units, js: b.js, partitions: a.cfg.NATS.Partitions},
		History: hist.hist, Ready: readyChecks(g.sup, b, dev, hist, al, nt, rp, hub, in), Gatherer: reg, Logger: a.log,
		Catalog: catalog, RatePerSecond: a.cfg.HTTP.RatePerSecond, RateBurst: a.cfg.HTTP.RateBurst,
		RotateKeys: (&keyRotator{keys: nt.keys, path: nt.keysPath, accounts: nt.accounts}).rotate,
	})
	if err != nil {
		return err
	}
	var notifier api.Notifier = nt.notifier
	if rp.weekly != nil {
		notifier = erasingNotifier{Pipeline: nt.notifier, weekly: rp.weekly}
	}
	srv.HandleNotify(nt.accounts, notifier)
	alerts := engine.NewAlerts(b.js, dev.units)
	srv.HandleAlerts(alerts)
	srv.HandleAlertActions(alerts, nt.acts)
	srv.HandleOutages(alerts, nt.notifier)
	srv.HandleReports(rp.reporter)
	srv.HandleEvents(hub)
	srv.HandleDeviceCredentials(deviceCredentials{dev.units, dev.revoked})
	if a.loginLimiter, err = a.openLoginLimiter(ctx, b.js, nt.keys, reg); err != nil {
		return err
	}
	srv.HandleBattery(battery.NewStore(b.js, nil))
	if err := a.mountConsole(ctx, b.js, srv, dev.units, hist.hist, alerts, nt.accounts, nt.notifier, nt.acts); err != nil {
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
			g.sup.giveUp(fmt.Errorf("http server: %w", err))
		}
	}()
	g.onStop("http", func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-httpDone
	})
	a.log.Info("http api listening", "addr", a.httpAddr, "tls", httpTLS != nil)
	return nil
}

// startIngest starts reading devices, last: only once everything
// downstream runs. With a shared group on an external broker, instances
// lease their sessions and drain the ones of instances that died.
func (a *App) startIngest(ctx context.Context, g *group, reg prometheus.Registerer, b busPhase, dev devicesPhase,
	mq mqttPhase, ref *ingestRef) error {
	var takeover *ingest.Takeover
	if a.cfg.MQTT.URL != "" && a.cfg.MQTT.SharedGroup != "" {
		leases, err := ingest.EnsureLeases(ctx, b.js, a.cfg.NATS.Replicas)
		if err != nil {
			return err
		}
		takeover = &ingest.Takeover{Leases: leases}
	}
	in, err := ingest.New(ingest.Config{
		BrokerURL: mq.url, Username: mq.user, Password: mq.pass, ClientID: a.instanceID(),
		TopicPrefix: a.cfg.MQTT.TopicPrefix, SharedGroup: a.cfg.MQTT.SharedGroup,
		Partitions: a.cfg.NATS.Partitions, BatchSize: a.cfg.Ingest.BatchSize,
		FlushInterval: a.cfg.Ingest.FlushInterval, MaxInflight: a.cfg.Ingest.MaxInflight,
		Limits: payload.Limits{MaxBytes: a.cfg.Ingest.MaxPayloadBytes, MaxReadings: a.cfg.Ingest.MaxReadings,
			MaxFuture: a.cfg.Ingest.MaxFuture},
		Takeover: takeover, Logger: a.log, Registerer: reg,
	}, dev.units, b.js)
	if err != nil {
		return err
	}
	ref.set(in)
	g.goRun("ingest", in.Run)
	if mq.embedded != nil {
		// Devices on the embedded broker are acked only once the bus has
		// their readings; their wills (offline) come the same way, not by
		// the subscription.
		mq.embedded.SetSink(in)
	}
	return nil
}
