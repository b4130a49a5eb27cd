package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the embedded store's "all queryable" check

	"github.com/upswatch/upswatch/internal/testenv"
)

// serve is a running `upswatch serve`.
type serve struct {
	p       *proc
	httpURL string
	token   string
	mqttURL string // the embedded broker, when there is one
	dataDir string
}

func startServe(ctx context.Context, bin, dir string, env []string) (*serve, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &serve{httpURL: "http://" + httpAddr, token: randomSecret(), dataDir: filepath.Join(dir, "data")}
	// The caller's settings come last: a variable set twice takes its
	// last value, so -serve-env can change the log level too.
	env = append([]string{
		"UPSWATCH_DATA_DIR=" + s.dataDir,
		"UPSWATCH_HTTP_ADDR=" + httpAddr,
		"UPSWATCH_ADMIN_TOKEN=" + s.token,
		"UPSWATCH_LOG_LEVEL=warn",
		"UPSWATCH_MQTT_CLIENT_ID=upswatch-bench",
	}, env...)
	// dir has no configs/upswatch.yaml: only the environment configures it.
	s.p, err = startProc("upswatch serve", dir, filepath.Join(dir, "serve.log"), env, nil, bin, "serve")
	if err != nil {
		return nil, err
	}
	err = waitFor(ctx, s.p, 60*time.Second, func() error {
		resp, err := httpClient.Get(s.httpURL + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// register registers n units through the API (POST /v1/units) with a few
// requests in flight, returning each unit's issued MQTT credentials.
func (s *serve) register(ctx context.Context, n int, first uint64) ([]testenv.Credential, error) {
	creds := make([]testenv.Credential, n)
	next := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				serial := fmt.Sprintf("%012d", first+uint64(i))
				pw, err := s.addUnit(ctx, serial)
				if err != nil {
					errs <- fmt.Errorf("register %s: %w", serial, err)
					return
				}
				creds[i] = testenv.Credential{Username: serial, Password: pw}
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return creds, err
}

func (s *serve) addUnit(ctx context.Context, serial string) (string, error) {
	body, _ := json.Marshal(map[string]string{"serial": serial, "name": "bench " + serial, "site": "bench"})
	var resp *http.Response
	var data []byte
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.httpURL+"/v1/units", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+s.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err = httpClient.Do(req)
		if err != nil {
			return "", err
		}
		data, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			break
		}
		// The API rate-limits each token: wait as it says.
		wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Duration(max(wait, 1)) * time.Second):
		}
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data))
	}
	var u struct {
		MQTT struct {
			Password string `json:"password"`
		} `json:"mqtt"`
	}
	if err := json.Unmarshal(data, &u); err != nil || u.MQTT.Password == "" {
		return "", fmt.Errorf("no password in the answer: %v", err)
	}
	return u.MQTT.Password, nil
}

// profile saves a CPU profile of serve over the next seconds to path.
func (s *serve) profile(path string, seconds int) error {
	return s.fetch(path, "/debug/pprof/profile?seconds="+strconv.Itoa(seconds), time.Duration(seconds+30)*time.Second)
}

// fetchProfile saves /debug/pprof/<what> of serve to path.
func (s *serve) fetchProfile(path, what string) error {
	return s.fetch(path, "/debug/pprof/"+what, time.Minute)
}

// fetch saves what serve answers at urlPath, as admin, to path.
func (s *serve) fetch(path, urlPath string, timeout time.Duration) error {
	req, err := http.NewRequest(http.MethodGet, s.httpURL+urlPath, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	c := &http.Client{Timeout: timeout}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("pprof: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func writeCreds(path string, creds []testenv.Credential) error {
	var b strings.Builder
	for _, c := range creds {
		b.WriteString(c.Username + " " + c.Password + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// load describes one measured run: the sim against broker, the consumer
// process measured, and how to count what is queryable.
type load struct {
	name      string
	kind      runKind
	bin       string // upswatch, for `upswatch sim`
	dir       string
	broker    string
	credsFile string
	units     int
	count     int
	rate      float64
	timeout   time.Duration
	consumer  *proc   // the process whose CPU and RSS are measured
	others    []*proc // servers whose CPU is reported for context
	stored    func() (int64, error)
	// onStart runs when the sim's first reading is published.
	onStart func()
}

// runKind tells the summary which runs to set side by side.
type runKind int

const (
	kindServe    runKind = iota + 1 // upswatch serve on mosquitto + InfluxDB
	kindTelegraf                    // Telegraf on the same mosquitto + InfluxDB
	kindEmbedded                    // upswatch serve alone
)

// stallTimeout ends the wait for readings the broker never acknowledged
// once the count has not grown for this long (and every acknowledged
// reading is there).
const stallTimeout = 15 * time.Second

// result is what one run measured.
type result struct {
	name       string
	kind       runKind
	connected  int
	published  uint64
	acked      uint64
	skipped    uint64
	errors     uint64
	unconf     uint64
	stored     int64
	complete   bool          // every published reading is queryable
	elapsed    time.Duration // first publish until the last reading was queryable
	publishDur time.Duration // first publish until the sim's last ack
	cpu        float64       // consumer CPU seconds over elapsed
	rss        int64         // consumer VmHWM
	simCPU     float64
	otherCPU   []namedCPU
}

type namedCPU struct {
	name string
	cpu  float64
}

// simEvent is a line of the sim's JSON log.
type simEvent struct {
	Msg           string `json:"msg"`
	Units         int    `json:"units"`
	ConnectFailed int    `json:"connect_failed"`
	Published     uint64 `json:"published"`
	Acked         uint64 `json:"acked"`
	Errors        uint64 `json:"errors"`
	Skipped       uint64 `json:"skipped"`
	Unconfirmed   uint64 `json:"unconfirmed"`
}

// lineWriter calls fn with each complete line written to it and copies
// everything to w.
type lineWriter struct {
	w   io.Writer
	buf []byte
	fn  func(string)
}

func (l *lineWriter) Write(p []byte) (int, error) {
	_, _ = l.w.Write(p)
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.fn(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// run drives the load and measures it.
func (ld load) run(ctx context.Context) (result, error) {
	res := result{name: ld.name, kind: ld.kind}
	logPath := filepath.Join(ld.dir, "sim.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return res, err
	}
	defer logf.Close()

	// mark is the moment publishing started (or ended) and the CPU
	// counters then.
	type mark struct {
		at     time.Time
		ev     simEvent
		cpu    float64
		others []float64
	}
	started := make(chan mark, 1)
	finished := make(chan mark, 1)
	// onStartDone: a profile being taken keeps serve running until it is
	// saved, also when the run ends sooner than the profile's length.
	onStartDone := make(chan struct{})
	onLine := func(line string) {
		var ev simEvent
		if json.Unmarshal([]byte(line), &ev) != nil {
			return
		}
		switch ev.Msg {
		case "simulation started":
			m := mark{at: time.Now(), ev: ev}
			m.cpu, _ = cpuSeconds(ld.consumer.pid())
			for _, o := range ld.others {
				c, _ := cpuSeconds(o.pid())
				m.others = append(m.others, c)
			}
			started <- m
			if ld.onStart != nil {
				go func() { defer close(onStartDone); ld.onStart() }()
			} else {
				close(onStartDone)
			}
		case "simulation finished":
			finished <- mark{at: time.Now(), ev: ev}
		}
	}
	args := []string{ld.bin, "sim", "--creds", ld.credsFile, "--broker", ld.broker,
		"--units", strconv.Itoa(ld.units), "--count", strconv.Itoa(ld.count),
		"--rate", strconv.FormatFloat(ld.rate, 'f', -1, 64), "--qos", "1"}
	simProc, err := startProc("upswatch sim", ld.dir, "", []string{"UPSWATCH_LOG_FORMAT=json", "UPSWATCH_LOG_LEVEL=info"},
		func(c *exec.Cmd) error {
			c.Stdout = logf
			c.Stderr = &lineWriter{w: logf, fn: onLine}
			return nil
		}, args...)
	if err != nil {
		return res, err
	}
	defer simProc.stop(5 * time.Second)

	// The sim connects every unit first (not measured), then publishes.
	var m0 mark
	select {
	case m0 = <-started:
	case <-simProc.done:
		select {
		case m0 = <-started:
		default:
			return res, fmt.Errorf("sim exited before publishing: %v%s", simProc.err, tail(logPath))
		}
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.connected = m0.ev.Units
	if m0.ev.ConnectFailed > 0 {
		fmt.Printf("  warning: %d units could not connect\n", m0.ev.ConnectFailed)
	}
	select {
	case <-simProc.done:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if simProc.err != nil {
		return res, fmt.Errorf("sim failed: %v%s", simProc.err, tail(logPath))
	}
	if ps := simProc.cmd.ProcessState; ps != nil {
		res.simCPU = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	var fin mark
	select {
	case fin = <-finished:
	default:
		return res, fmt.Errorf("sim ended without its summary%s", tail(logPath))
	}
	e := fin.ev
	res.published, res.acked, res.errors, res.skipped, res.unconf = e.Published, e.Acked, e.Errors, e.Skipped, e.Unconfirmed
	res.publishDur = fin.at.Sub(m0.at)

	// Poll until every published reading is queryable. The sim may end
	// with readings the broker has not acknowledged yet (it waits 5s for
	// the last PUBACKs): those count too, but are not promised, so the
	// wait also ends once the count stops growing for stallTimeout.
	deadline := time.Now().Add(ld.timeout)
	var t1, grew time.Time
	last := int64(-1)
	for {
		n, err := ld.stored()
		now := time.Now()
		if err == nil {
			res.stored = n
			if n != last {
				last, grew = n, now
			}
			if uint64(n) >= res.published {
				t1 = now
				res.complete = true
				break
			}
		}
		stalled := !grew.IsZero() && now.Sub(grew) > stallTimeout && uint64(n) >= res.acked
		if now.After(deadline) || stalled {
			t1 = grew // when the last reading became queryable
			if grew.IsZero() {
				t1 = now
			}
			if err != nil {
				fmt.Printf("  warning: last count failed: %v\n", err)
			}
			break
		}
		if ld.consumer.exited() {
			return res, fmt.Errorf("%s exited during the run: %v%s", ld.consumer.name, ld.consumer.err, ld.consumer.logTail())
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	res.elapsed = t1.Sub(m0.at)
	c1, err := cpuSeconds(ld.consumer.pid())
	if err != nil {
		return res, err
	}
	res.cpu = c1 - m0.cpu
	res.rss, err = peakRSS(ld.consumer.pid())
	if err != nil {
		return res, err
	}
	for i, o := range ld.others {
		c, err := cpuSeconds(o.pid())
		if err == nil && i < len(m0.others) {
			res.otherCPU = append(res.otherCPU, namedCPU{o.name, c - m0.others[i]})
		}
	}
	select {
	case <-onStartDone:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	return res, nil
}

func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return "\n--- " + path + " ---\n" + string(data)
}

// sqliteCount counts the readings in the embedded store's database,
// read-only beside the serve process that writes it.
func sqliteCount(path string) (func() (int64, error), func(), error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(1)
	count := func() (int64, error) {
		var n int64
		err := db.QueryRow("SELECT count(*) FROM readings").Scan(&n)
		if err != nil {
			return 0, fmt.Errorf("sqlite count: %w", err)
		}
		return n, nil
	}
	return count, func() { db.Close() }, nil
}
