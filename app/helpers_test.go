package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
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
)

// instance is a whole upswatch running in-process.
type instance struct {
	t      *testing.T
	app    *App
	cancel context.CancelFunc
	done   chan error
	// scheme and client reach the API (https with http.cert_file).
	scheme string
	client *http.Client
}

func testConfig(t *testing.T, dataDir string) config.Config {
	c := config.Default()
	c.DataDir = dataDir
	c.HTTP.Addr = "127.0.0.1:0"
	c.MQTT.Listen = "127.0.0.1:0"
	c.MQTT.ClientID = "upswatch-test"
	c.NATS.Partitions = 4
	return c
}

func start(t *testing.T, c config.Config) *instance {
	t.Helper()
	var logw io.Writer = io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	a, err := New(c, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	a.Out = io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	inst := &instance{t: t, app: a, cancel: cancel, done: make(chan error, 1), scheme: "http", client: http.DefaultClient}
	if c.HTTP.CertFile != "" {
		inst.scheme, inst.client = "https", trusting(t, c.HTTP.CertFile)
	}
	go func() { inst.done <- a.Run(ctx) }()
	select {
	case <-a.Started():
	case err := <-inst.done:
		t.Fatalf("serve exited before starting: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start within 30s")
	}
	t.Cleanup(inst.stop)
	inst.waitReady()
	return inst
}

// trusting is an HTTPS client that trusts the certificate in certFile.
func trusting(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Transport: tr}
}

func (in *instance) stop() {
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	select {
	case err := <-in.done:
		if err != nil {
			in.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		in.t.Error("serve did not stop within 30s")
	}
}

func (in *instance) waitReady() {
	in.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := in.do("GET", "/readyz", nil, nil)
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("not ready within 20s (last status %d)", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// doAs calls the API with a token ("" = the admin token).
func (in *instance) doAs(token, method, path string, body any) (int, string) {
	in.t.Helper()
	if token == "" {
		token = in.app.AdminToken()
	}
	return in.call(token, method, path, body, nil)
}

// do calls the API with the admin token, decoding JSON into out.
func (in *instance) do(method, path string, body, out any) (int, string) {
	in.t.Helper()
	return in.call(in.app.AdminToken(), method, path, body, out)
}

func (in *instance) call(token, method, path string, body, out any) (int, string) {
	in.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	scheme, client := in.scheme, in.client
	if client == nil {
		scheme, client = "http", http.DefaultClient
	}
	req, _ := http.NewRequest(method, scheme+"://"+in.app.HTTPAddr()+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			in.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

type registered struct {
	Serial string `json:"serial"`
	MQTT   struct {
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"mqtt"`
}

func (in *instance) register(serial string) registered {
	in.t.Helper()
	var r registered
	code, body := in.do("POST", "/v1/units", map[string]string{"serial": serial, "name": "unit " + serial, "site": "hq"}, &r)
	if code != http.StatusCreated {
		in.t.Fatalf("register %s: %d %s", serial, code, body)
	}
	return r
}

// device connects a paho client with a unit's credentials.
func (in *instance) device(r registered) paho.Client {
	in.t.Helper()
	o := paho.NewClientOptions().AddBroker(in.app.MQTTURL()).SetClientID("dev-" + r.Serial + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
		SetUsername(r.MQTT.Username).SetPassword(r.MQTT.Password).SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		in.t.Fatalf("device %s connect: %v", r.Serial, tok.Error())
	}
	in.t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func publish(t *testing.T, c paho.Client, topic string, body any) {
	t.Helper()
	tok := c.Publish(topic, 1, false, body)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// metric reads one sample of /metrics (labels as they print, e.g.
// `{reason="nan_inf"}`), 0 when absent.
func (in *instance) metric(name string) float64 {
	in.t.Helper()
	_, body := in.do("GET", "/metrics", nil, nil)
	re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// eventually polls cond (fed by asynchronous pipelines) until a deadline.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (in *instance) latest(serial string) map[string]any {
	var out map[string]any
	code, _ := in.do("GET", "/v1/units/"+serial+"/latest", nil, &out)
	if code != http.StatusOK {
		return nil
	}
	return out
}

type historyResp struct {
	Fields []struct {
		Field  string `json:"field"`
		Points []struct {
			Time  time.Time `json:"time"`
			Mean  float64   `json:"mean"`
			Min   float64   `json:"min"`
			Max   float64   `json:"max"`
			Count int       `json:"count"`
		} `json:"points"`
	} `json:"fields"`
}

func (in *instance) history(serial string, from, to time.Time, every, fields string) historyResp {
	in.t.Helper()
	var h historyResp
	path := fmt.Sprintf("/v1/units/%s/history?from=%d&to=%d&every=%s&fields=%s", serial, from.UnixMilli(), to.UnixMilli(), every, fields)
	if code, body := in.do("GET", path, nil, &h); code != http.StatusOK {
		in.t.Fatalf("history: %d %s", code, body)
	}
	return h
}
