// Command e2e is upswatch's end-to-end throughput benchmark (`make
// bench-e2e`, also run by `make bench`).
//
// It builds upswatch, starts Mosquitto and InfluxDB 1.8 on 127.0.0.1,
// runs `upswatch serve` against them, registers the simulated units
// through the API, drives the whole with `upswatch sim` (QoS 1, a fixed
// number of readings per unit) and measures, from the first publish until
// every acknowledged reading is queryable in the store: readings per
// second end to end, the CPU seconds the upswatch process spent per 100k
// readings, and its peak RSS. Then the same with Telegraf in upswatch's
// place (built from source into the tools dir when missing), and the same
// for the embedded defaults (upswatch's own broker and SQLite); the
// summary sets upswatch beside Telegraf, alone and as whole stacks.
//
// Every child process is killed when the benchmark ends, however it ends.
// See bench/README.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/upswatch/upswatch/internal/testenv"
)

type options struct {
	units      int
	count      int
	rate       float64
	modes      []string
	timeout    time.Duration
	cpuprofile string
	heapprof   string
	profileSec int
	keep       bool
	first      uint64
	serveEnv   []string // extra UPSWATCH_* settings for serve (-serve-env)
	// alsoEmbedded: one more embedded run per entry, with these settings
	// added (-embedded-also), after the first.
	alsoEmbedded [][]string
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	quick := flag.Bool("quick", false, "smoke check: 300 units x 10 readings at 3000/s (overrides -units, -count, -rate)")
	flag.IntVar(&o.units, "units", 10000, "simulated units")
	flag.IntVar(&o.count, "count", 30, "readings per unit (total N = units x count)")
	flag.Float64Var(&o.rate, "rate", 40000, "readings per second over all units the sim aims at (above what the pipeline stores, so it measures capacity)")
	modes := flag.String("modes", "influx,telegraf,embedded", "runs, in order: influx (serve + mosquitto + influxdb), telegraf (side by side; built into the tools dir when missing), embedded (serve alone)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "per run: how long to wait at most, after the sim ends, for every reading to be queryable")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of serve under load to this file (influx run; the embedded run's to FILE.embedded)")
	flag.IntVar(&o.profileSec, "profile-seconds", 10, "length of the -cpuprofile profile, from the first publish")
	flag.StringVar(&o.heapprof, "heapprofile", "", "write a heap profile of the embedded serve (its 10,000 connections open) to this file, -profile-seconds after the first publish")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (logs, data) instead of removing it")
	flag.Uint64Var(&o.first, "first-serial", 900000000001, "serial of the first unit (12 digits)")
	flag.Func("serve-env", "an UPSWATCH_KEY=value setting for serve, e.g. UPSWATCH_NATS_PARTITIONS=4 (repeatable; the benchmark's own UPSWATCH_* environment is not passed on)", func(v string) error {
		if !strings.HasPrefix(v, "UPSWATCH_") || !strings.Contains(v, "=") {
			return fmt.Errorf("want UPSWATCH_KEY=value, got %q", v)
		}
		o.serveEnv = append(o.serveEnv, v)
		return nil
	})
	flag.Func("embedded-also", "after the embedded run, run it once more with these space-separated UPSWATCH_KEY=value settings added, e.g. UPSWATCH_MEMORY_LIMIT=400MiB, side by side (repeatable: one more run each); GODEBUG=... and GOGC=... are taken too", func(v string) error {
		var env []string
		for _, kv := range strings.Fields(v) {
			runtimeVar := strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "GOGC=")
			if !runtimeVar && (!strings.HasPrefix(kv, "UPSWATCH_") || !strings.Contains(kv, "=")) {
				return fmt.Errorf("want UPSWATCH_KEY=value, GODEBUG=... or GOGC=..., got %q", kv)
			}
			env = append(env, kv)
		}
		if len(env) == 0 {
			return errors.New("no settings")
		}
		o.alsoEmbedded = append(o.alsoEmbedded, env)
		return nil
	})
	flag.Parse()
	if *quick {
		o.units, o.count, o.rate = 300, 10, 3000
	}
	o.modes = strings.Split(*modes, ",")
	if o.units < 1 || o.count < 1 || o.rate <= 0 {
		fmt.Fprintln(os.Stderr, "e2e: -units, -count and -rate must be positive")
		return 2
	}

	// SIGINT/SIGTERM cancel the run; the deferred killAll then ends
	// every child. Pdeathsig covers a SIGKILL of the benchmark itself.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer killAll()

	results, err := bench(ctx, o)
	if len(results) > 0 {
		report(o, results)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	for _, r := range results {
		if uint64(r.stored) < r.acked {
			return 1 // acknowledged readings lost
		}
	}
	return 0
}

func bench(ctx context.Context, o options) ([]result, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "upswatch-bench-e2e-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Printf("temp dir (kept): %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
		// Children first: they write into tmp until they are gone.
		defer killAll()
	}
	raiseFileLimit()

	fmt.Printf("building upswatch...\n")
	bin := filepath.Join(tmp, "upswatch")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/upswatch")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}

	var results []result
	want := func(m string) bool { return slices.Contains(o.modes, m) }
	if want("influx") || want("telegraf") {
		rs, err := external(ctx, o, root, bin, tmp, want("influx"), want("telegraf"))
		results = append(results, rs...)
		if err != nil {
			return results, err
		}
	}
	if want("embedded") {
		r, err := embedded(ctx, o, bin, tmp, "embedded", nil)
		if err != nil {
			return results, fmt.Errorf("embedded: %w", err)
		}
		results = append(results, r)
		for i, env := range o.alsoEmbedded {
			r, err := embedded(ctx, o, bin, tmp, fmt.Sprintf("embedded-%d", i+2), env)
			if err != nil {
				return results, fmt.Errorf("embedded with %s: %w", strings.Join(env, " "), err)
			}
			results = append(results, r)
		}
	}
	return results, nil
}

// external runs serve, then Telegraf, against one Mosquitto and one
// InfluxDB, which it stops afterwards so the embedded run has the
// machine to itself.
func external(ctx context.Context, o options, root, bin, tmp string, withServe, withTelegraf bool) ([]result, error) {
	influxd, err := influxdBinary(root)
	if err != nil {
		return nil, err
	}
	mosq, err := mosquittoBinary()
	if err != nil {
		return nil, err
	}
	var telegraf string
	if withTelegraf {
		telegraf, err = telegrafBinary(ctx, root)
		if err != nil {
			return nil, err
		}
	}
	dir := mkdir(tmp, "external")
	inf, err := startInfluxd(ctx, influxd, mkdir(dir, "influxd"), "upswatch", "telegraf")
	if err != nil {
		return nil, err
	}
	defer inf.p.stop(30 * time.Second)
	ingest := testenv.Credential{Username: "upswatch", Password: randomSecret()}
	tele := testenv.Credential{Username: "telegraf", Password: randomSecret()}
	m, err := startMosquitto(ctx, mosq, mkdir(dir, "mosquitto"), ingest, tele)
	if err != nil {
		return nil, err
	}
	defer m.p.stop(10 * time.Second)
	fmt.Printf("mosquitto on %s, influxd %s on %s\n", m.addr, testenv.InfluxdVersion, inf.url)

	credsFile := filepath.Join(dir, "units.txt")
	var results []result
	var creds []testenv.Credential
	if withServe {
		sdir := mkdir(dir, "serve")
		s, err := startServe(ctx, bin, sdir, append([]string{
			"UPSWATCH_MQTT_URL=" + m.url,
			"UPSWATCH_MQTT_USERNAME=" + ingest.Username,
			"UPSWATCH_MQTT_PASSWORD=" + ingest.Password,
			"UPSWATCH_INFLUX_URL=" + inf.url,
			"UPSWATCH_INFLUX_BUCKET=upswatch/autogen",
		}, o.serveEnv...))
		if err != nil {
			return nil, err
		}
		t := time.Now()
		creds, err = s.register(ctx, o.units, o.first)
		if err != nil {
			return nil, err
		}
		fmt.Printf("registered %d units through the API in %v\n", len(creds), time.Since(t).Round(time.Millisecond))
		// Mosquitto learns the passwords serve issued: password file
		// rewritten, SIGHUP.
		if err := m.writeAuth(creds); err != nil {
			return nil, err
		}
		if err := m.reload(ctx, creds[len(creds)-1]); err != nil {
			return nil, err
		}
		if err := writeCreds(credsFile, creds); err != nil {
			return nil, err
		}
		ld := load{
			name: "upswatch serve + mosquitto + influxdb 1.8", kind: kindServe, bin: bin, dir: sdir, broker: m.url,
			credsFile: credsFile, units: o.units, count: o.count, rate: o.rate, timeout: o.timeout,
			consumer: s.p, others: []*proc{m.p, inf.p},
			stored: func() (int64, error) {
				n, err := inf.query("upswatch", `SELECT count("status") FROM "ups_reading"`)
				return int64(n), err
			},
		}
		if o.cpuprofile != "" {
			ld.onStart = func() {
				if err := s.profile(o.cpuprofile, o.profileSec); err != nil {
					fmt.Printf("  cpu profile failed: %v\n", err)
				}
			}
		}
		fmt.Printf("run: %s (%d units x %d readings)\n", ld.name, o.units, o.count)
		r, err := ld.run(ctx)
		if err != nil {
			return results, fmt.Errorf("%s: %w", ld.name, err)
		}
		results = append(results, r)
		// Stopped before Telegraf runs: on shutdown the ingest
		// unsubscribes, so mosquitto queues nothing more for it.
		s.p.stop(30 * time.Second)
	}
	if telegraf == "" {
		return results, nil
	}
	if creds == nil {
		// No serve run: Telegraf needs no registration, only logins.
		for i := range o.units {
			creds = append(creds, testenv.Credential{Username: fmt.Sprintf("%012d", o.first+uint64(i)), Password: randomSecret()})
		}
		if err := m.writeAuth(creds); err != nil {
			return nil, err
		}
		if err := m.reload(ctx, creds[len(creds)-1]); err != nil {
			return nil, err
		}
		if err := writeCreds(credsFile, creds); err != nil {
			return nil, err
		}
	}
	r, err := runTelegraf(ctx, o, telegraf, bin, mkdir(dir, "telegraf"), m, inf, credsFile)
	if err != nil {
		return results, fmt.Errorf("telegraf: %w", err)
	}
	return append(results, r), nil
}

// embedded runs serve alone in tmp/dirName; env, when set, is added to
// its settings (and named in the run's name), after -serve-env's.
func embedded(ctx context.Context, o options, bin, tmp, dirName string, env []string) (result, error) {
	dir := mkdir(tmp, dirName)
	mqttAddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	settings := append(append([]string{"UPSWATCH_MQTT_LISTEN=" + mqttAddr}, o.serveEnv...), env...)
	s, err := startServe(ctx, bin, dir, settings)
	if err != nil {
		return result{}, err
	}
	defer s.p.stop(30 * time.Second)
	t := time.Now()
	creds, err := s.register(ctx, o.units, o.first)
	if err != nil {
		return result{}, err
	}
	fmt.Printf("registered %d units through the API in %v\n", len(creds), time.Since(t).Round(time.Millisecond))
	credsFile := filepath.Join(dir, "units.txt")
	if err := writeCreds(credsFile, creds); err != nil {
		return result{}, err
	}
	count, closeDB, err := sqliteCount(filepath.Join(s.dataDir, "history.db"))
	if err != nil {
		return result{}, err
	}
	defer closeDB()
	name := "upswatch serve, embedded (broker + sqlite)"
	if len(env) > 0 {
		name += ", " + strings.Join(env, " ")
	}
	ld := load{
		name: name, kind: kindEmbedded, bin: bin, dir: dir, broker: "tcp://" + mqttAddr,
		credsFile: credsFile, units: o.units, count: o.count, rate: o.rate, timeout: o.timeout,
		consumer: s.p, stored: count,
	}
	if (o.cpuprofile != "" || o.heapprof != "") && env == nil {
		path := o.cpuprofile + ".embedded"
		ld.onStart = func() {
			if o.cpuprofile == "" {
				time.Sleep(time.Duration(o.profileSec) * time.Second)
			} else if err := s.profile(path, o.profileSec); err != nil {
				fmt.Printf("  cpu profile failed: %v\n", err)
			}
			if o.heapprof != "" {
				if err := s.fetchProfile(o.heapprof, "heap?gc=1"); err != nil {
					fmt.Printf("  heap profile failed: %v\n", err)
				}
				// The heap profile has no stacks: the Go runtime's
				// gauges (goroutines, stack and heap bytes) beside it.
				if err := s.fetch(o.heapprof+".metrics", "/metrics", time.Minute); err != nil {
					fmt.Printf("  metrics failed: %v\n", err)
				}
				// Where the goroutines (two per device) wait, and so how
				// deep their stacks are: counts by call stack.
				if err := s.fetchProfile(o.heapprof+".goroutines", "goroutine?debug=1"); err != nil {
					fmt.Printf("  goroutine profile failed: %v\n", err)
				}
			}
		}
	}
	fmt.Printf("run: %s (%d units x %d readings)\n", ld.name, o.units, o.count)
	return ld.run(ctx)
}

func report(o options, results []result) {
	fmt.Printf("\nupswatch end-to-end benchmark: %d units x %d readings, QoS 1, sim aiming at %.0f readings/s\n", o.units, o.count, o.rate)
	fmt.Printf("%s/%s, %d CPUs; broker, store and load generator share the machine (numbers are noisy: compare runs of one invocation)\n\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Print(summary(results))
	fmt.Println()
	for _, r := range results {
		fmt.Printf("%s:\n", r.name)
		fmt.Printf("  sim: %d units connected, published %d, acked %d, skipped %d, errors %d, unconfirmed %d; last ack after %.2fs (%.0f/s); sim CPU %.1fs\n",
			r.connected, r.published, r.acked, r.skipped, r.errors, r.unconf, r.publishDur.Seconds(),
			float64(r.acked)/max(r.publishDur.Seconds(), 1e-9), r.simCPU)
		fmt.Printf("  %s CPU over the run: %.1fs (%.1f us/reading)\n", r.consumerName(), r.cpu, r.cpu/max(float64(r.stored), 1)*1e6)
		for _, oc := range r.otherCPU {
			fmt.Printf("  %s CPU over the run: %.1fs (%.1f us/reading)\n", oc.name, oc.cpu, oc.cpu/max(float64(r.stored), 1)*1e6)
		}
		switch {
		case uint64(r.stored) < r.acked:
			fmt.Printf("  LOST: only %d readings queryable, %d were acknowledged to the devices\n", r.stored, r.acked)
		case !r.complete:
			fmt.Printf("  incomplete: %d of %d published readings queryable (all %d acknowledged ones are); the rest were unacknowledged when the sim disconnected\n",
				r.stored, r.published, r.acked)
		}
	}
}

func (r result) consumerName() string {
	if r.kind == kindTelegraf {
		return "telegraf"
	}
	return "upswatch serve"
}

// rate is readings queryable per second end to end.
func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.stored) / r.elapsed.Seconds()
}

// perReading is CPU seconds spread over the readings stored, in us.
func (r result) perReading(cpu float64) float64 {
	if r.stored <= 0 {
		return 0
	}
	return cpu / float64(r.stored) * 1e6
}

// stackCPU is the consumer's CPU plus its broker's and store's: for the
// embedded run the consumer is the whole stack.
func (r result) stackCPU() float64 {
	c := r.cpu
	for _, o := range r.otherCPU {
		c += o.cpu
	}
	return c
}

// summary is the table the README shows: each run's end-to-end rate, its
// consumer's and its whole stack's CPU per reading and peak RSS, then
// upswatch over Telegraf (same broker and store, same invocation).
func summary(results []result) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\treadings\tqueryable\te2e s\treadings/s\tconsumer us/reading\tstack us/reading\tpeak RSS MiB\tRSS KiB/unit\t")
	for _, r := range results {
		state := ""
		if !r.complete {
			state = " INCOMPLETE"
		}
		fmt.Fprintf(tw, "%s%s\t%d\t%d\t%.2f\t%.0f\t%.1f\t%.1f\t%.1f\t%.0f\t\n", r.name, state, r.published, r.stored,
			r.elapsed.Seconds(), r.rate(), r.perReading(r.cpu), r.perReading(r.stackCPU()),
			float64(r.rss)/(1<<20), float64(r.rss)/1024/float64(max(r.connected, 1)))
	}
	tw.Flush()
	var serve, tele *result
	for i := range results {
		switch results[i].kind {
		case kindServe:
			serve = &results[i]
		case kindTelegraf:
			tele = &results[i]
		}
	}
	if serve != nil && tele != nil && tele.rate() > 0 && tele.cpu > 0 {
		fmt.Fprintf(&b, "\nupswatch / Telegraf (same mosquitto and InfluxDB): rate %.2fx, consumer CPU per reading %.2fx, stack CPU per reading %.2fx\n",
			serve.rate()/tele.rate(), serve.perReading(serve.cpu)/tele.perReading(tele.cpu),
			serve.perReading(serve.stackCPU())/tele.perReading(tele.stackCPU()))
	}
	return b.String()
}

func mkdir(parent, name string) string {
	d := filepath.Join(parent, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		panic(err)
	}
	return d
}

func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// raiseFileLimit lifts the soft open-files limit to the hard one, for
// this process and (Go passes it on once set explicitly) its children:
// 10,000 units are 10,000 connections in the sim, the broker and serve.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
