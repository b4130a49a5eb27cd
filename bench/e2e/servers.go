package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/internal/testenv"
)

var httpClient = &http.Client{Timeout: 30 * time.Second}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeAddr() (string, error) {
	p, err := freePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// waitFor polls ready every 50ms until it succeeds, p exits, ctx ends or
// timeout passes.
func waitFor(ctx context.Context, p *proc, timeout time.Duration, ready func() error) error {
	end := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited during startup: %v%s", p.name, p.err, p.logTail())
		}
		if time.Now().After(end) {
			name := "server"
			tail := ""
			if p != nil {
				name, tail = p.name, p.logTail()
			}
			return fmt.Errorf("%s not ready after %v: %w%s", name, timeout, err, tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// repoRoot is the directory of go.mod, found from the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory; run from the repository")
		}
		dir = parent
	}
}

// toolsDir is where scripts/deps.sh and internal/testenv keep the servers
// they build: UPSWATCH_TOOLS_DIR, else <repo>/.cache/tools (gitignored).
func toolsDir(root string) string {
	if dir := os.Getenv("UPSWATCH_TOOLS_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(root, ".cache", "tools")
}

// influxdBinary is the influxd that scripts/deps.sh builds (`make deps`).
func influxdBinary(root string) (string, error) {
	bin := filepath.Join(toolsDir(root), "influxd-"+testenv.InfluxdVersion)
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("influxd %s not found at %s: run `make deps` (scripts/deps.sh)", testenv.InfluxdVersion, bin)
	}
	return bin, nil
}

func mosquittoBinary() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto", nil
	}
	return "", errors.New("mosquitto not found on PATH nor in /usr/sbin: run `make deps` (scripts/deps.sh)")
}

// influx is a running influxd 1.8 with Flux enabled, on 127.0.0.1.
type influx struct {
	url string
	p   *proc
}

func startInfluxd(ctx context.Context, bin, dir string, databases ...string) (*influx, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	rpcPort, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := testenv.InfluxConfig(dir, httpPort, rpcPort)
	confPath := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc("influxd", dir, filepath.Join(dir, "influxd.log"), nil, nil, bin, "run", "-config", confPath)
	if err != nil {
		return nil, err
	}
	inf := &influx{url: "http://127.0.0.1:" + strconv.Itoa(httpPort), p: p}
	err = waitFor(ctx, p, 60*time.Second, func() error {
		resp, err := httpClient.Get(inf.url + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("ping: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, db := range databases {
		if _, err := inf.query("", "CREATE DATABASE "+db); err != nil {
			return nil, err
		}
	}
	return inf, nil
}

// query runs an InfluxQL statement and returns the first value of the
// first series (0 when there is none).
func (inf *influx) query(db, stmt string) (float64, error) {
	v := url.Values{"q": {stmt}}
	if db != "" {
		v.Set("db", db)
	}
	resp, err := httpClient.PostForm(inf.url+"/query", v)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Results []struct {
			Error  string `json:"error"`
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("influxql %q: %s: %s", stmt, resp.Status, body)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("influxql %q: %s", stmt, r.Error)
	}
	if len(r.Results) == 0 {
		return 0, nil
	}
	if r.Results[0].Error != "" {
		return 0, fmt.Errorf("influxql %q: %s", stmt, r.Results[0].Error)
	}
	if len(r.Results[0].Series) == 0 || len(r.Results[0].Series[0].Values) == 0 || len(r.Results[0].Series[0].Values[0]) < 2 {
		return 0, nil
	}
	n, _ := r.Results[0].Series[0].Values[0][1].(float64)
	return n, nil
}

// mosquitto is a running Debian mosquitto 2 with password and ACL files.
type mosquitto struct {
	url, addr        string
	dir              string
	passwd, acl      string
	p                *proc
	maxQueued        int
	ingest, telegraf testenv.Credential
}

// writeAuth writes the password file (devices + the ingest and Telegraf
// users) and the ACL: as in configs/mosquitto.acl, a device may publish
// only under its own serial, the consumers read everything.
func (m *mosquitto) writeAuth(devices []testenv.Credential) error {
	users := append(append([]testenv.Credential(nil), devices...), m.ingest, m.telegraf)
	if err := testenv.WritePasswordFile(m.passwd, users); err != nil {
		return err
	}
	acl := "pattern write ups/%u/#\n\n" +
		"user " + m.ingest.Username + "\ntopic read ups/#\n\n" +
		"user " + m.telegraf.Username + "\ntopic read ups/#\n"
	return os.WriteFile(m.acl, []byte(acl), 0o600)
}

func startMosquitto(ctx context.Context, bin, dir string, ingest, telegraf testenv.Credential) (*mosquitto, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &mosquitto{
		addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir,
		passwd: filepath.Join(dir, "passwd"), acl: filepath.Join(dir, "acl"),
		maxQueued: 1000000, ingest: ingest, telegraf: telegraf,
	}
	m.url = "tcp://" + m.addr
	if err := m.writeAuth(nil); err != nil {
		return nil, err
	}
	// The settings of configs/mosquitto.conf that matter for throughput
	// (max_queued_messages raised: mosquitto silently drops QoS 1
	// messages past it; max_inflight_messages), without persistence.
	conf := "per_listener_settings false\n" +
		"listener " + strconv.Itoa(port) + " 127.0.0.1\n" +
		"allow_anonymous false\n" +
		"password_file " + m.passwd + "\n" +
		"acl_file " + m.acl + "\n" +
		"max_queued_messages " + strconv.Itoa(m.maxQueued) + "\n" +
		"max_inflight_messages 1000\n" +
		"max_packet_size 1048576\n" +
		"persistence false\n" +
		"log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n" +
		"connection_messages false\n"
	if os.Geteuid() == 0 {
		// As root mosquitto would switch to the mosquitto user, which
		// cannot read the temp dir.
		conf += "user root\n"
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc("mosquitto", dir, filepath.Join(dir, "mosquitto.log"), nil, nil, bin, "-c", confPath)
	if err != nil {
		return nil, err
	}
	m.p = p
	err = waitFor(ctx, p, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// reload makes mosquitto re-read its password and ACL files (SIGHUP)
// and waits until cred can log in.
func (m *mosquitto) reload(ctx context.Context, cred testenv.Credential) error {
	if err := m.p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	return waitFor(ctx, m.p, 20*time.Second, func() error { return tryLogin(m.url, cred) })
}

func tryLogin(broker string, cred testenv.Credential) error {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).
		SetClientID("bench-probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
		SetUsername(cred.Username).SetPassword(cred.Password).
		SetConnectTimeout(2 * time.Second).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(3 * time.Second) {
		return errors.New("mqtt connect timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(100)
	return nil
}
