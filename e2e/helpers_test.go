package e2e

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/app"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/servetest"
)

// client talks to one upswatch's HTTP API, in-process or a subprocess
// (servetest.Client: a transport error is status 0).
type client struct{ *servetest.Client }

func newClient(t testing.TB, base string) *client {
	return &client{&servetest.Client{TB: t, Base: base}}
}

func (c *client) call(method, path string, body, out any) (int, string) {
	c.TB.Helper()
	return c.Call(method, path, body, out)
}

func (c *client) ready() bool { return c.Ready() }

type registered = servetest.Registered

func (c *client) register(serial string) registered { c.TB.Helper(); return c.Register(serial, "e2e") }

// known reports whether this instance's registry view has the unit.
func (c *client) known(serial string) bool {
	code, _ := c.call("GET", "/v1/units/"+serial, nil, nil)
	return code == http.StatusOK
}

// metric reads one unlabelled sample of /metrics; 0 when absent.
func (c *client) metric(name string) float64 { c.TB.Helper(); return c.Metric(name) }

// stored returns, for one unit, how many readings the history holds in
// each one-second bucket from base on, keyed by the reading's index
// (reading i has ts base+i s and battery.runtime runtime(i)). A bucket
// whose mean is not the value its index implies is reported as an error.
func (c *client) stored(serial string, base time.Time, n int) (map[int]int, error) {
	c.TB.Helper()
	var h struct {
		Fields []struct {
			Field  string `json:"field"`
			Points []struct {
				Time  time.Time `json:"time"`
				Mean  float64   `json:"mean"`
				Count int       `json:"count"`
			} `json:"points"`
		} `json:"fields"`
	}
	path := fmt.Sprintf("/v1/units/%s/history?from=%d&to=%d&every=1s&fields=battery.runtime",
		serial, base.UnixMilli(), base.Add(time.Duration(n)*time.Second).UnixMilli())
	if code, body := c.call("GET", path, nil, &h); code != http.StatusOK {
		return nil, fmt.Errorf("history %s: %d %s", serial, code, body)
	}
	got := map[int]int{}
	for _, f := range h.Fields {
		for _, p := range f.Points {
			i := int(p.Time.Sub(base) / time.Second)
			if p.Mean != runtime(i) {
				return nil, fmt.Errorf("unit %s reading %d: battery.runtime mean %v, want %v", serial, i, p.Mean, runtime(i))
			}
			got[i] += p.Count
		}
	}
	return got, nil
}

// server is a whole upswatch running in-process.
type server struct {
	*client
	srv *servetest.Server
	app *app.App
}

// baseConfig is serve on embedded defaults with free loopback ports, its
// data in a fresh temp dir, and no per-device rate limit (the load
// generators publish faster than a real UPS).
func baseConfig(t testing.TB) config.Config {
	c := servetest.Config(t.TempDir())
	c.MQTT.ClientID = "upswatch-e2e"
	c.MQTT.DeviceRate = 0
	return c
}

func logger(name string) *slog.Logger { return servetest.Logger(slog.LevelInfo).With("instance", name) }

// startServer runs serve in-process and waits until /readyz says so.
func startServer(t *testing.T, name string, c config.Config) *server {
	t.Helper()
	a, err := app.New(c, logger(name))
	if err != nil {
		t.Fatal(err)
	}
	a.Out = io.Discard
	srv := servetest.Start(t, a, servetest.Options{Name: name})
	return &server{client: &client{srv.Client}, srv: srv, app: a}
}

func (s *server) stop(t *testing.T) { s.srv.Stop(t) }

// serials returns n distinct 12-digit serials for a test.
func serials(prefix, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%06d%06d", prefix, i+1)
	}
	return out
}

// runtime is the battery.runtime reading i carries, so each stored
// reading says which one it is.
func runtime(i int) float64 { return float64(1000 + i) }

// readingBase is the ts of reading 0: in the past, whole seconds, so the
// history's one-second buckets hold one reading each.
func readingBase() time.Time { return time.Now().Add(-30 * time.Minute).Truncate(time.Second) }

// unitLoad publishes one unit's readings 0..n-1 with QoS 1, in order,
// one every interval, and records which ones the broker acknowledged.
type unitLoad struct {
	serial string
	dev    paho.Client
	base   time.Time
	acked  []atomic.Bool
	nAcked atomic.Int64
	failed atomic.Int64
	// mainsLost, once set, makes the next readings on battery.
	mainsLost atomic.Bool
}

func (u *unitLoad) payload(i int) string {
	status, volts := "OL", 230
	if u.mainsLost.Load() {
		status, volts = "OB DISCHRG", 0
	}
	return fmt.Sprintf(`{"ts":%d,"ups.status":%q,"input.voltage":%d,"battery.charge":%d,"battery.runtime":%v}`,
		u.base.Add(time.Duration(i)*time.Second).UnixMilli(), status, volts, 50+i%50, runtime(i))
}

// load drives several units at once.
type load struct {
	units    []*unitLoad
	perUnit  int
	interval time.Duration // between two readings of one unit
	// wait bounds how long one publish may wait for its PUBACK (the
	// device's client holds and resends it across a reconnect).
	wait time.Duration
	// stop, when closed, makes the units stop publishing early.
	stop chan struct{}
	wg   sync.WaitGroup
}

func newLoad(base time.Time, perUnit int, interval time.Duration, devs map[string]paho.Client) *load {
	l := &load{perUnit: perUnit, interval: interval, wait: 20 * time.Second, stop: make(chan struct{})}
	for serial, dev := range devs {
		l.units = append(l.units, &unitLoad{serial: serial, dev: dev, base: base, acked: make([]atomic.Bool, perUnit)})
	}
	return l
}

// start publishes in the background; wait for the end with done.
func (l *load) start() {
	for _, u := range l.units {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(l.interval)
			defer tick.Stop()
			topic := "ups/" + u.serial + "/telemetry"
			for i := range l.perUnit {
				tok := u.dev.Publish(topic, 1, false, u.payload(i))
				if tok.WaitTimeout(l.wait) && tok.Error() == nil {
					u.acked[i].Store(true)
					u.nAcked.Add(1)
				} else {
					u.failed.Add(1)
				}
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
}

// done waits for every unit to finish (bounded: each publish waits at
// most l.wait).
func (l *load) done(t testing.TB, within time.Duration) {
	t.Helper()
	ch := make(chan struct{})
	go func() { l.wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(within):
		l.halt()
		t.Fatalf("load did not finish within %s", within)
	}
}

func (l *load) acked() int {
	n := 0
	for _, u := range l.units {
		n += int(u.nAcked.Load())
	}
	return n
}

func (l *load) failed() int {
	n := 0
	for _, u := range l.units {
		n += int(u.failed.Load())
	}
	return n
}

// verify polls the history until every acked reading of every unit is
// there, then checks that no reading is there twice and (when exact)
// that nothing unacked is there either. On timeout it names every unit
// with missing readings and the first few missing indexes.
func (l *load) verify(t testing.TB, c *client, within time.Duration, exact bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		stored := map[string]map[int]int{}
		var short []string
		for _, u := range l.units {
			got, err := c.stored(u.serial, u.base, l.perUnit)
			if err != nil {
				t.Fatal(err)
			}
			stored[u.serial] = got
			var missing []int
			for i := range l.perUnit {
				if u.acked[i].Load() && got[i] == 0 {
					missing = append(missing, i)
				}
			}
			if len(missing) > 0 {
				short = append(short, fmt.Sprintf("unit %s: %d of %d acked readings missing (first: %v)",
					u.serial, len(missing), u.nAcked.Load(), missing[:min(len(missing), 5)]))
			}
		}
		if len(short) == 0 {
			for _, u := range l.units {
				for i, n := range stored[u.serial] {
					if n != 1 {
						t.Errorf("unit %s reading %d stored %d times", u.serial, i, n)
					}
					if exact && !u.acked[i].Load() {
						t.Errorf("unit %s reading %d stored but never acked", u.serial, i)
					}
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("acked readings missing from history after %s:\n%s", within, strings.Join(short, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// connectDevice connects a device with auto-reconnect and a persistent
// session, so a QoS 1 message in flight across a broker outage is resent.
func connectDevice(t testing.TB, url, clientID, user, pass string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetUsername(user).SetPassword(pass).SetProtocolVersion(4).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(time.Second).
		SetKeepAlive(10 * time.Second)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device %s connect: %v", user, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}
