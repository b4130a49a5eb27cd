package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/notify/fcm/fcmfake"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/sim"
	"github.com/upswatch/upswatch/ups"
)

// Parameters of BenchmarkAlertLatencyUnderLoad.
const (
	latBackgroundUnits = 1000
	latBackgroundRate  = 5000 // readings/s over all background units
	// latProbes: 200, so p99 is the second worst, not the worst of 50.
	latProbes = 200
	latWarmup = 5 * time.Second
	// latPushTimeout bounds the wait for one probe's push.
	latPushTimeout = 10 * time.Second
)

// BenchmarkAlertLatencyUnderLoad measures the alert latency of issue 5:
// from publishing the reading that fires on_battery to the fake FCM
// receiving the push, while 1,000 simulated units publish 5,000 readings/s
// (QoS 1) through the embedded broker. The simulated units run in a child
// process (see latency_load_test.go), as devices are never in serve's.
//
// Each of 200 probe units has an owner account with one FCM token. Once
// the background load is steady, the probes go on battery one after
// another: OL (ts-20s), OB (ts-10s), then, after a random pause of
// 100-300 ms, the measured OB at ts (the 6 s pending period of on_battery
// has elapsed with it, so it fires). The pause makes the firing reading
// sample every phase of the ingest's per-partition flush timer (right
// after the priming reading's PUBACK it would always open a new batch).
// A probe is fired only when the previous push has arrived.
//
// Besides the end-to-end latency it reports a breakdown, observed by a
// core NATS subscriber on the embedded server: device -> readings on the
// bus (ingest), -> alert event (rule engine), -> outbox message (notify
// intake), -> FCM request (sender).
//
//	go test -run '^$' -bench AlertLatency -benchtime 1x ./app/
func BenchmarkAlertLatencyUnderLoad(b *testing.B) {
	for range b.N {
		runAlertLatency(b)
	}
}

// probeTimes are the instants of one probe's firing reading.
type probeTimes struct {
	sent, puback, bus, alert, outbox, push time.Time
}

func runAlertLatency(b *testing.B) {
	b.StopTimer()
	fake := fcmfake.New()
	defer fake.Close()

	dir := b.TempDir()
	natsPort := latFreePort(b)
	c := config.Default()
	c.DataDir = filepath.Join(dir, "data")
	c.HTTP.Addr = "127.0.0.1:0"
	c.HTTP.RatePerSecond = 0 // registering 1,050 units with one token
	c.MQTT.Listen = "127.0.0.1:0"
	c.MQTT.ClientID = "upswatch-bench"
	c.NATS.Listen = "127.0.0.1:" + strconv.Itoa(natsPort) // for the breakdown's subscriber
	c.Notify.FCM = config.NotifyFCM{ProjectID: "upswatch-bench", Endpoint: fake.URL(), ParallelBatches: 2}
	// What-if knobs, e.g. UPSWATCH_BENCH_FLUSH_INTERVAL=10ms.
	if v := os.Getenv("UPSWATCH_BENCH_FLUSH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("UPSWATCH_BENCH_FLUSH_INTERVAL: %v", err)
		}
		c.Ingest.FlushInterval = d
	}
	if v := os.Getenv("UPSWATCH_BENCH_PARTITIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("UPSWATCH_BENCH_PARTITIONS: %v", err)
		}
		c.NATS.Partitions = n
	}

	var logw io.Writer = io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	a, err := New(c, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		b.Fatal(err)
	}
	a.Out = io.Discard
	appCtx, appCancel := context.WithCancel(context.Background())
	appDone := make(chan error, 1)
	go func() { appDone <- a.Run(appCtx) }()
	defer func() {
		appCancel()
		select {
		case err := <-appDone:
			if err != nil {
				b.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			b.Error("serve did not stop within 30s")
		}
	}()
	select {
	case <-a.Started():
	case err := <-appDone:
		appDone <- err
		b.Fatalf("serve exited before starting: %v", err)
	case <-time.After(30 * time.Second):
		b.Fatal("serve did not start within 30s")
	}
	api := &latAPI{b: b, base: "http://" + a.HTTPAddr(), token: a.AdminToken(),
		client: &http.Client{Timeout: 10 * time.Second}}
	api.waitReady()

	// Units: background ones for sim, probes with an owner each.
	t0 := time.Now()
	bgSerials := make([]string, latBackgroundUnits)
	for i := range bgSerials {
		bgSerials[i] = fmt.Sprintf("1000%08d", i)
	}
	probeSerials := make([]string, latProbes)
	for i := range probeSerials {
		probeSerials[i] = fmt.Sprintf("9000%08d", i)
	}
	bgPasswords := api.registerAll(bgSerials)
	probePasswords := api.registerAll(probeSerials)
	for i, serial := range probeSerials {
		account := map[string]any{
			"id": "probe-" + strconv.Itoa(i), "name": "Probe " + strconv.Itoa(i), "language": "en", "time_zone": "UTC",
			"contacts": map[string]any{"fcm_tokens": []string{latToken(i)}},
			"preferences": map[string]any{"channels": map[string][]string{
				"critical": {"fcm"}, "warning": {"fcm"}}},
			"units": []string{serial},
		}
		if code, body := api.call("POST", "/v1/accounts", account); code != http.StatusCreated {
			b.Fatalf("create account %d: %d %s", i, code, body)
		}
	}
	setup := time.Since(t0)

	// Probe devices (the broker's view of the registry catches up
	// asynchronously: retry a refused connection briefly).
	probes := make([]paho.Client, latProbes)
	defer func() {
		for _, p := range probes {
			if p != nil {
				p.Disconnect(0)
			}
		}
	}()
	for i, serial := range probeSerials {
		probes[i] = latConnect(b, a.MQTTURL(), serial, probePasswords[i])
	}

	// Breakdown subscriber on the embedded NATS.
	var mu sync.Mutex
	firingTS := map[string]int64{} // serial -> ts (ms) of its firing reading
	times := make(map[string]*probeTimes, latProbes)
	for _, s := range probeSerials {
		times[s] = &probeTimes{}
	}
	mark := func(serial string, field func(*probeTimes) *time.Time, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if pt, ok := times[serial]; ok && !pt.sent.IsZero() && field(pt).IsZero() {
			*field(pt) = at
		}
	}
	nc, err := nats.Connect("nats://127.0.0.1:"+strconv.Itoa(natsPort), nats.Timeout(5*time.Second))
	if err != nil {
		b.Fatalf("nats connect: %v", err)
	}
	defer nc.Close()
	// The readings' and the alert's instants are when their stream
	// stored them (the server's timestamp, on this machine's clock), not
	// when this observer got to them: the observer shares the process
	// and the cores with the pipeline, and its own queue added up to
	// tens of milliseconds to a stage.
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	var rs []ups.Reading
	subs := []struct {
		stream, subject string
		fn              func(m jetstream.Msg, at time.Time)
	}{
		{bus.ReadingsStream, bus.ReadingsSubjectPrefix + "*", func(m jetstream.Msg, at time.Time) {
			var err error
			rs, err = ups.DecodeBatch(m.Data(), rs[:0])
			if err != nil {
				return
			}
			for _, r := range rs {
				mu.Lock()
				ts, ok := firingTS[string(r.Serial)]
				mu.Unlock()
				if ok && r.Time.UnixMilli() == ts {
					mark(string(r.Serial), func(p *probeTimes) *time.Time { return &p.bus }, at)
				}
			}
		}},
		{engine.AlertsStream, engine.AlertsSubjectPrefix + "*.on_battery", func(m jetstream.Msg, at time.Time) {
			parts := strings.Split(m.Subject(), ".")
			if len(parts) == 4 {
				mark(parts[2], func(p *probeTimes) *time.Time { return &p.alert }, at)
			}
		}},
	}
	// The outbox is a work queue: it takes no second consumer, so its
	// messages are seen as they pass (the observer's delay splits
	// "intake" from "sender" a little late; the end to end is exact).
	if _, err := nc.Subscribe(pipeline.OutboxSubjectPrefix+"fcm", func(m *nats.Msg) {
		at := time.Now()
		var o struct {
			Serial string `json:"serial"`
		}
		if json.Unmarshal(m.Data, &o) == nil {
			mark(o.Serial, func(p *probeTimes) *time.Time { return &p.outbox }, at)
		}
	}); err != nil {
		b.Fatal(err)
	}
	for _, s := range subs {
		cons, err := js.OrderedConsumer(context.Background(), s.stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{s.subject}, DeliverPolicy: jetstream.DeliverNewPolicy})
		if err != nil {
			b.Fatalf("observe %s: %v", s.subject, err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			if md, err := m.Metadata(); err == nil {
				s.fn(m, md.Timestamp)
			}
		})
		if err != nil {
			b.Fatalf("observe %s: %v", s.subject, err)
		}
		defer cc.Stop()
	}

	// Background load.
	units := make([]sim.Unit, len(bgSerials))
	for i, s := range bgSerials {
		units[i] = sim.Unit{Serial: ups.Serial(s), Password: bgPasswords[i]}
	}
	simulator, err := startLoad(loadSpec{BrokerURL: a.MQTTURL(), Units: units, Rate: latBackgroundRate, QoS: 1, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	simStopped := false
	stopSim := func() {
		if simStopped {
			return
		}
		simStopped = true
		if err := simulator.Stop(); err != nil {
			b.Errorf("background load: %v", err)
		}
	}
	defer stopSim()
	deadline := time.Now().Add(60 * time.Second)
	for simulator.Stats().Start.IsZero() {
		if err := simulator.Err(); err != nil {
			b.Fatalf("background load ended before publishing: %v", err)
		}
		if time.Now().After(deadline) {
			b.Fatal("background units not connected within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := simulator.Stats(); st.ConnectFailed > 0 {
		b.Fatalf("%d of %d background units could not connect", st.ConnectFailed, len(units))
	}
	time.Sleep(latWarmup)

	// Probes.
	rng := rand.New(rand.NewPCG(1, 2))
	seen := 0 // FCM requests looked at
	m0 := api.metrics(latIngestMetrics...)
	st0, acc0, w0 := simulator.Stats(), api.metric("upswatch_ingest_readings_accepted_total"), time.Now()
	b.StartTimer()
	for i, serial := range probeSerials {
		time.Sleep(time.Duration(50+rng.IntN(100)) * time.Millisecond)
		base := time.Now().Truncate(time.Millisecond)
		topic := "ups/" + serial + "/telemetry"
		latPublish(b, probes[i], topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OL","input.voltage":230,"battery.charge":100}`, base.Add(-20*time.Second).UnixMilli()))
		latPublish(b, probes[i], topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":98,"battery.runtime":1800}`, base.Add(-10*time.Second).UnixMilli()))
		// The PUBACK came right after the ingest flushed the partition, so
		// publishing now would always open a new batch and wait a whole
		// flush interval: a random pause decorrelates the firing reading
		// from the partition's flush timer, as a real device's is.
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
		ts := time.Now().UnixMilli()
		firing := fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":96,"battery.runtime":1700}`, ts)
		mu.Lock()
		firingTS[serial] = ts
		pt := times[serial]
		pt.sent = time.Now()
		mu.Unlock()
		tok := probes[i].Publish(topic, 1, false, firing)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("probe %d publish: %v", i, tok.Error())
		}
		pubackAt := time.Now()
		// Wait for this probe's on_battery push; other pushes (comm_lost of
		// probes that went silent after firing) are skipped.
		var pushAt time.Time
		waitUntil := time.Now().Add(latPushTimeout)
		for pushAt.IsZero() {
			reqs, err := fake.WaitRequests(seen+1, time.Until(waitUntil))
			now := time.Now()
			if err != nil {
				b.Fatalf("probe %d: no on_battery push for %s: %v", i, serial, err)
			}
			for _, r := range reqs[seen:] {
				if r.Data["serial"] == serial && r.Data["rule"] == "on_battery" {
					if r.Token != latToken(i) {
						b.Fatalf("probe %d: push to %q, want %q", i, r.Token, latToken(i))
					}
					pushAt = now
				}
			}
			seen = len(reqs)
		}
		mu.Lock()
		pt.puback, pt.push = pubackAt, pushAt
		mu.Unlock()
	}
	b.StopTimer()
	if err := simulator.Err(); err != nil {
		b.Fatalf("background load ended during the probes: %v", err)
	}
	window := time.Since(w0)
	st1, acc1 := simulator.Stats(), api.metric("upswatch_ingest_readings_accepted_total")
	m1 := api.metrics(latIngestMetrics...)
	stopSim()

	// Exactly once: no probe got a second on_battery push.
	onBattery, other := map[string]int{}, 0
	for _, r := range fake.Requests() {
		if r.Data["rule"] == "on_battery" {
			onBattery[r.Data["serial"]]++
		} else {
			other++
		}
	}
	for serial, n := range onBattery {
		if n != 1 {
			b.Errorf("%s: %d on_battery pushes, want 1", serial, n)
		}
	}

	// Figures.
	mu.Lock()
	defer mu.Unlock()
	var total, ingestD, rulesD, intakeD, sendD, pubackD []time.Duration
	for _, s := range probeSerials {
		p := times[s]
		total = append(total, p.push.Sub(p.sent))
		pubackD = append(pubackD, p.puback.Sub(p.sent))
		if !p.bus.IsZero() && !p.alert.IsZero() && !p.outbox.IsZero() {
			ingestD = append(ingestD, p.bus.Sub(p.sent))
			rulesD = append(rulesD, p.alert.Sub(p.bus))
			intakeD = append(intakeD, p.outbox.Sub(p.alert))
			sendD = append(sendD, p.push.Sub(p.outbox))
		}
	}
	secs := window.Seconds()
	simRate := float64(st1.Acked-st0.Acked) / secs
	ingestRate := (acc1 - acc0) / secs
	skipped := st1.Skipped - st0.Skipped
	errs := st1.Errors - st0.Errors

	b.ReportMetric(latPct(total, 0.50), "p50-ms")
	b.ReportMetric(latPct(total, 0.90), "p90-ms")
	b.ReportMetric(latPct(total, 0.99), "p99-ms")
	b.ReportMetric(latPct(total, 1), "max-ms")
	b.ReportMetric(simRate, "bg-readings/s")

	var sb strings.Builder
	fmt.Fprintf(&sb, "alert latency, reading published -> fake FCM request, %d probes over %s (registering %d units took %s; %d other pushes, e.g. comm_lost of silent probes)\n",
		len(total), window.Round(time.Millisecond), len(bgSerials)+len(probeSerials), setup.Round(time.Millisecond), other)
	delta := func(name string) float64 { return m1[name] - m0[name] }
	batches := delta("upswatch_ingest_batches_published_total")
	where := "own process"
	if os.Getenv("UPSWATCH_BENCH_LOAD_INPROCESS") == "1" {
		where = "in-process"
	}
	fmt.Fprintf(&sb, "background (%s): %d units, target %d readings/s QoS 1: acked %.0f/s, ingested %.0f/s, skipped %d, errors %d; "+
		"ingest (flush %s, %d partitions): %.0f batches/s of %.1f readings, bus publish %.1f ms, MQTT receipt -> bus ack %.1f ms (means)\n",
		where, latBackgroundUnits, latBackgroundRate, simRate, ingestRate, skipped, errs,
		c.Ingest.FlushInterval, a.cfg.NATS.Partitions, batches/secs, delta("upswatch_ingest_readings_accepted_total")/max(batches, 1),
		1000*delta("upswatch_ingest_publish_seconds_sum")/max(delta("upswatch_ingest_publish_seconds_count"), 1),
		1000*delta("upswatch_ingest_bus_lag_seconds_sum")/max(delta("upswatch_ingest_bus_lag_seconds_count"), 1))
	fmt.Fprintf(&sb, "%-34s %8s %8s %8s %8s %8s\n", "stage (ms)", "p50", "p90", "p99", "max", "n")
	row := func(name string, d []time.Duration) {
		fmt.Fprintf(&sb, "%-34s %8.1f %8.1f %8.1f %8.1f %8d\n", name, latPct(d, .5), latPct(d, .9), latPct(d, .99), latPct(d, 1), len(d))
	}
	row("end to end (publish -> FCM)", total)
	row("  publish -> PUBACK", pubackD)
	row("  publish -> readings on bus", ingestD)
	row("  bus -> alert event (rules)", rulesD)
	row("  alert -> outbox msg (intake)", intakeD)
	row("  outbox -> FCM request (sender)", sendD)
	// The table fits the 10 lines go test keeps of a benchmark's log.
	b.Log(strings.TrimSuffix(sb.String(), "\n"))
	if len(ingestD) < len(total) {
		b.Logf("breakdown incomplete for %d probes (a stage was not observed)", len(total)-len(ingestD))
	}
}

// latPct is the nearest-rank percentile q of d, in milliseconds.
func latPct(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := max(int(math.Ceil(q*float64(len(s))))-1, 0)
	return float64(s[i]) / float64(time.Millisecond)
}

func latToken(i int) string { return "fcm-probe-token-" + strconv.Itoa(i) }

func latFreePort(b *testing.B) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func latConnect(b *testing.B, broker, serial, password string) paho.Client {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		o := paho.NewClientOptions().AddBroker(broker).SetClientID("probe-" + serial).
			SetUsername(serial).SetPassword(password).SetProtocolVersion(4).SetAutoReconnect(false)
		c := paho.NewClient(o)
		tok := c.Connect()
		if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			return c
		}
		if time.Now().After(deadline) {
			b.Fatalf("probe %s connect: %v", serial, tok.Error())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func latPublish(b *testing.B, c paho.Client, topic, body string) {
	b.Helper()
	tok := c.Publish(topic, 1, false, body)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// latAPI is a small admin client of the in-process API.
type latAPI struct {
	b      *testing.B
	base   string
	token  string
	client *http.Client
}

func (a *latAPI) call(method, path string, body any) (int, string) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func (a *latAPI) waitReady() {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := a.call("GET", "/readyz", nil); code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			a.b.Fatal("not ready within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// registerAll registers the serials (8 at a time) and returns their MQTT
// passwords.
func (a *latAPI) registerAll(serials []string) []string {
	passwords := make([]string, len(serials))
	errs := make([]string, len(serials))
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				code, body := a.call("POST", "/v1/units", map[string]string{"serial": serials[i], "name": "bench " + serials[i], "site": "bench"})
				if code != http.StatusCreated {
					errs[i] = fmt.Sprintf("register %s: %d %s", serials[i], code, body)
					continue
				}
				var r registered
				if err := json.Unmarshal([]byte(body), &r); err != nil {
					errs[i] = fmt.Sprintf("register %s: %v", serials[i], err)
					continue
				}
				passwords[i] = r.MQTT.Password
			}
		})
	}
	for i := range serials {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			a.b.Fatal(e)
		}
	}
	return passwords
}

var latIngestMetrics = []string{
	"upswatch_ingest_batches_published_total", "upswatch_ingest_readings_accepted_total",
	"upswatch_ingest_publish_seconds_sum", "upswatch_ingest_publish_seconds_count",
	"upswatch_ingest_bus_lag_seconds_sum", "upswatch_ingest_bus_lag_seconds_count",
}

// metrics reads several unlabelled samples of /metrics at once.
func (a *latAPI) metrics(names ...string) map[string]float64 {
	_, body := a.call("GET", "/metrics", nil)
	out := make(map[string]float64, len(names))
	for _, name := range names {
		if m := latMetricRE(name).FindStringSubmatch(body); m != nil {
			out[name], _ = strconv.ParseFloat(m[1], 64)
		}
	}
	return out
}

var latMetricREs sync.Map // name -> *regexp.Regexp

func latMetricRE(name string) *regexp.Regexp {
	if re, ok := latMetricREs.Load(name); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`)
	latMetricREs.Store(name, re)
	return re
}

// metric reads one unlabelled sample of /metrics, 0 when absent.
func (a *latAPI) metric(name string) float64 {
	return a.metrics(name)[name]
}
