package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/servetest"
	"github.com/upswatch/upswatch/internal/wait"
)

// instance is a whole upswatch running in-process (servetest), with the
// names this package's tests use.
type instance struct {
	*servetest.Server
	t   *testing.T
	app *App
	// client reaches the API (https with http.cert_file).
	client *http.Client
}

func testConfig(t *testing.T, dataDir string) config.Config { return servetest.Config(dataDir) }

// newApp builds the app of c, its output discarded.
func newApp(t *testing.T, c config.Config) *App {
	t.Helper()
	a, err := New(c, servetest.Logger(slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	a.Out = io.Discard
	return a
}

// run starts a and wraps it.
func run(t *testing.T, c config.Config, a *App, o servetest.Options) *instance {
	t.Helper()
	inst := &instance{t: t, app: a, client: http.DefaultClient}
	if c.HTTP.CertFile != "" {
		o.Scheme, inst.client = "https", trusting(t, c.HTTP.CertFile)
		o.HTTP = inst.client
	}
	inst.Server = servetest.Start(t, a, o)
	return inst
}

func start(t *testing.T, c config.Config) *instance {
	t.Helper()
	return run(t, c, newApp(t, c), servetest.Options{})
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

func (in *instance) stop() { in.Stop(in.t) }

func (in *instance) waitReady() {
	in.t.Helper()
	wait.Within(in.t, 20*time.Second, "ready", in.Ready)
}

// doAs calls the API with a token ("" = the admin token).
func (in *instance) doAs(token, method, path string, body any) (int, string) {
	in.t.Helper()
	if token == "" {
		token = in.Token
	}
	return in.call(token, method, path, body, nil)
}

// do calls the API with the admin token, decoding JSON into out.
func (in *instance) do(method, path string, body, out any) (int, string) {
	in.t.Helper()
	return in.call(in.Token, method, path, body, out)
}

// call is CallAs failing the test on a transport error.
func (in *instance) call(token, method, path string, body, out any) (int, string) {
	in.t.Helper()
	code, resp := in.CallAs(token, method, path, body, out)
	if code == 0 {
		in.t.Fatalf("%s %s: %s", method, path, resp)
	}
	return code, resp
}

type registered = servetest.Registered

func (in *instance) register(serial string) registered {
	in.t.Helper()
	return in.Register(serial, "hq")
}

// device connects a paho client with a unit's credentials.
func (in *instance) device(r registered) paho.Client { in.t.Helper(); return in.Device(r) }

func publish(t *testing.T, c paho.Client, topic string, body any) {
	t.Helper()
	servetest.Publish(t, c, topic, body)
}

// metric reads one sample of /metrics (labels as they print, e.g.
// `{reason="nan_inf"}`), 0 when absent.
func (in *instance) metric(name string) float64 { in.t.Helper(); return in.Metric(name) }

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
