package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

// The upswatch binary for the subprocess tests is built in the
// background as soon as the test process starts, so a cold build overlaps
// with the in-process tests.
var (
	binPath  string
	buildErr error
	built    = make(chan struct{})
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "upswatch-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		defer close(built)
		binPath = filepath.Join(dir, "upswatch")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/upswatch")
		cmd.Dir = ".." // tests run in the package directory: e2e/
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/upswatch: %w\n%s", err, out)
		}
	}()
	code := m.Run()
	<-built
	os.RemoveAll(dir)
	os.Exit(code)
}

// upswatchBinary waits for the build TestMain started.
func upswatchBinary(t *testing.T) string {
	t.Helper()
	select {
	case <-built:
	case <-time.After(5 * time.Minute):
		t.Fatal("go build ./cmd/upswatch did not finish within 5 minutes")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// daemon is `upswatch serve` as a child process, restartable on the same
// data dir and ports.
type daemon struct {
	t       *testing.T
	bin     string
	dir     string // data dir
	env     []string
	http    string
	mqtt    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	*client
}

func newDaemon(t *testing.T, extraEnv ...string) *daemon {
	d := &daemon{
		t:       t,
		bin:     upswatchBinary(t),
		dir:     t.TempDir(),
		http:    fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		mqtt:    fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		logPath: filepath.Join(t.TempDir(), "serve.log"),
	}
	// Only our own UPSWATCH_* settings: the test runner's must not leak in.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UPSWATCH_") {
			d.env = append(d.env, kv)
		}
	}
	d.env = append(d.env,
		"UPSWATCH_DATA_DIR="+filepath.Join(d.dir, "data"),
		"UPSWATCH_HTTP_ADDR="+d.http,
		"UPSWATCH_MQTT_LISTEN="+d.mqtt,
		"UPSWATCH_MQTT_DEVICE_RATE=0",
		"UPSWATCH_MQTT_CLIENT_ID=upswatch-e2e",
		"UPSWATCH_NATS_PARTITIONS=4",
		"UPSWATCH_LOG_LEVEL=info",
		// A long flush interval widens the window in which a reading is
		// held by the ingest and not yet on the bus, so a kill lands in it
		// and the test proves no device was acked for such a reading.
		"UPSWATCH_INGEST_FLUSH_INTERVAL=50ms",
	)
	d.env = append(d.env, extraEnv...)
	d.client = newClient(t, "http://"+d.http)
	t.Cleanup(d.kill)
	return d
}

// start runs serve and waits until it is ready.
func (d *daemon) start() {
	d.t.Helper()
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	cmd := exec.Command(d.bin, "serve")
	cmd.Dir = d.dir // no configs/upswatch.yaml here: defaults and env only
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		d.t.Fatalf("start serve: %v", err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); logf.Close(); close(done) }(d.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if d.client.Token == "" {
			if b, err := os.ReadFile(filepath.Join(d.dir, "data", "admin.token")); err == nil {
				d.client.Token = strings.TrimSpace(string(b))
			}
		}
		if d.client.Token != "" && d.ready() {
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("serve exited during startup:\n%s", d.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("serve not ready within 60s:\n%s", d.logTail())
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.cmd = nil
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// serve is killed with SIGKILL, or stopped with SIGTERM (an upgrade),
// under load and started again on the same data dir: every reading whose
// PUBACK reached its device is in the history afterwards, exactly once
// (the devices resend what was in flight; the store is idempotent on
// (serial, ts)). With Mosquitto, what devices publish while serve is
// down waits in the ingest's persistent session; on the embedded broker
// the devices hold it until serve is back and ready for it.
func TestServeKilledUnderLoad(t *testing.T) {
	tests := []struct {
		name  string
		mosq  bool // external mosquitto instead of the embedded broker
		stop  func(*daemon)
		units int
	}{
		{"embedded broker", false, (*daemon).kill, 10},
		{"mosquitto", true, (*daemon).kill, 10},
		{"embedded broker, SIGTERM", false, (*daemon).terminate, 10},
		{"mosquitto, SIGTERM", true, (*daemon).terminate, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const perUnit = 300
			ss := serials(400, tt.units)
			var d *daemon
			var brokerURL string
			if tt.mosq {
				b := mosquittoFor(t, ss)
				brokerURL = b.URL
				d = newDaemon(t, "UPSWATCH_MQTT_URL="+b.URL,
					"UPSWATCH_MQTT_USERNAME="+ingestCred.Username, "UPSWATCH_MQTT_PASSWORD="+ingestCred.Password)
			} else {
				d = newDaemon(t)
				brokerURL = "tcp://" + d.mqtt
			}
			d.start()
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("serve's log, last lines:\n%s", d.logTail())
				}
			})
			devs := map[string]paho.Client{}
			for i, serial := range ss {
				r := d.register(serial)
				user, pass := r.MQTT.Username, r.MQTT.Password
				if tt.mosq {
					user, pass = serial, "pw-"+serial
				}
				devs[serial] = connectDevice(t, brokerURL, fmt.Sprintf("dev-%d", i), user, pass)
			}
			l := newLoad(readingBase(), perUnit, 33*time.Millisecond, devs)
			t.Cleanup(l.halt)
			l.start()

			wait.Within(t, 30*time.Second, "a third of the load published", func() bool { return l.acked() >= tt.units*perUnit/3 })
			tt.stop(d)
			atStop := l.acked()
			d.start()
			t.Logf("serve stopped with %d readings acked, %d acked while it was down; ready again", atStop, l.acked()-atStop)

			l.done(t, 60*time.Second)
			if f := l.failed(); f != 0 {
				t.Logf("%d publishes not acked within %s", f, l.wait)
			}
			l.verify(t, d.client, 60*time.Second, false)
			t.Logf("%d of %d readings acked to devices, all in history exactly once", l.acked(), tt.units*perUnit)
		})
	}
}
