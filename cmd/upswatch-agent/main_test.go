package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	agentconfig "github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/app"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/testcerts"
	"github.com/upswatch/upswatch/internal/testenv"
)

// startServe runs upswatch in-process on free ports until the test ends;
// each option changes the configuration last.
func startServe(t *testing.T, options ...func(*config.Config)) *app.App {
	t.Helper()
	c := config.Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.HTTP.Addr, c.MQTT.Listen, c.MQTT.ClientID, c.NATS.Partitions = "127.0.0.1:0", "127.0.0.1:0", "upswatch-test", 1
	for _, o := range options {
		o(&c)
	}
	a, err := app.New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.Out = io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start")
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("serve not ready")
		}
	}
}

func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const dump = `device.model: Smart-UPS 1500
device.serial: 210987654321
battery.charge: 97
input.voltage: 231.0
ups.status: OL
`

// register reads the serial from upsd, registers the unit through the
// API and writes its credentials into the config (0600, comments kept);
// check then shows upsd's variables and the broker's acceptance, and
// fails on a wrong password.
func TestRegisterAndCheck(t *testing.T) {
	a := startServe(t)
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: []byte(dump)}, testenv.NUTUnit{Name: "noserial", Dump: []byte("ups.status: OL\ndevice.serial: unknown\n")})
	path := filepath.Join(t.TempDir(), "agent.yaml")
	initial := "# my NUT host\nbroker:\n  url: " + a.MQTTURL() + "\nnut:\n  addr: " + n.Addr + "\n"
	if err := os.WriteFile(path, []byte(initial), 0o644); err != nil {
		t.Fatal(err)
	}
	api := "http://" + a.HTTPAddr()

	code, out, errOut := runCLI("register", "--config", path, "--api", api, "--token", a.AdminToken(), "--ups", "ups1")
	if code != 0 {
		t.Fatalf("register: %d %s %s", code, out, errOut)
	}
	c, err := agentconfig.Load(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Units) != 1 || c.Units[0].UPS != "ups1" || c.Units[0].Serial != "210987654321" || len(c.Units[0].Password) < 16 {
		t.Fatalf("units after register: %+v", c.Units)
	}
	if strings.Contains(out+errOut, c.Units[0].Password) {
		t.Error("register printed the password")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", fi.Mode().Perm())
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "# my NUT host") {
		t.Error("register dropped the config's comments")
	}
	resp, err := http.NewRequest("GET", api+"/v1/units/210987654321", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Set("Authorization", "Bearer "+a.AdminToken())
	if r, err := http.DefaultClient.Do(resp); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("unit not registered at upswatch: %v %v", r, err)
	} else {
		r.Body.Close()
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"again", []string{"--ups", "ups1"}, "already"},
		{"no serial", []string{"--ups", "noserial"}, "--serial"},
		{"bad token", []string{"--ups", "ups1", "--serial", "123412341234", "--token", "wrong-token-0123456789"}, "401"},
		{"no ups", []string{}, "--ups is required"},
	} {
		t.Run("register "+tc.name, func(t *testing.T) {
			args := append([]string{"register", "--config", path, "--api", api, "--token", a.AdminToken()}, tc.args...)
			code, out, errOut := runCLI(args...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q, want %q (stdout %q)", code, errOut, tc.want, out)
			}
		})
	}

	code, out, errOut = runCLI("check", "--config", path)
	if code != 0 || !strings.Contains(out, "upsd: ok (TLS: false)") || !strings.Contains(out, "ups.status: OL") || !strings.Contains(out, "battery.charge: 97") ||
		!strings.Contains(out, "as 210987654321: accepted (password)") {
		t.Fatalf("check: %d\n%s\n%s", code, out, errOut)
	}

	// Another unit's password (or a stale one) is refused by the broker.
	if err := agentconfig.SaveUnit(path, agentconfig.Unit{UPS: "ups1", Serial: "210987654321", Password: "not-the-password-0000"}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI("check", "--config", path)
	if code == 0 || !strings.Contains(out, "as 210987654321: FAILED") {
		t.Fatalf("check with a wrong password: %d\n%s", code, out)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"help"}, 0, "register --api URL"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"config", "keys"}, 0, "UPSWATCH_AGENT_BROKER_URL"},
		{[]string{"--config", "/nonexistent/agent.yaml"}, 1, "no such file"},
	} {
		code, out, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v: exit %d, output %q %q; want %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}

// check shows a unit's client certificate (subject, expiry) and whether
// the broker, under mqtt.device_auth: certificate, accepts it; a
// certificate for another serial fails, and check says why.
func TestCheckCertificate(t *testing.T) {
	dir := t.TempDir()
	serverCA := testcerts.NewCA(t, "server CA")
	caFile := testcerts.Write(t, dir, "server-ca.crt", serverCA.CertPEM)
	serverCert, serverKey := testcerts.WritePair(t, dir, "server", serverCA.Server(t, "upswatch"))
	factory := testcerts.NewCA(t, "factory CA")
	factoryFile := testcerts.Write(t, dir, "factory.crt", factory.CertPEM)
	a := startServe(t, func(c *config.Config) {
		c.MQTT.TLSListen = "127.0.0.1:0"
		c.MQTT.CertFile, c.MQTT.KeyFile = serverCert, serverKey
		c.MQTT.ClientCA, c.MQTT.DeviceAuth = factoryFile, "certificate"
	})
	body := strings.NewReader(`{"serial":"210987654321","name":"rack 1"}`)
	req, _ := http.NewRequest("POST", "http://"+a.HTTPAddr()+"/v1/units", body)
	req.Header.Set("Authorization", "Bearer "+a.AdminToken())
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusCreated {
		t.Fatalf("register: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: []byte(dump)})
	now := time.Now()
	notAfter := now.Add(48 * time.Hour).Truncate(time.Second)
	certFile, keyFile := testcerts.WritePair(t, dir, "unit", factory.Client(t, "210987654321", now.Add(-time.Hour), notAfter))
	path := testcerts.Write(t, dir, "agent.yaml", []byte("broker:\n  url: ssl://"+a.MQTTTLSAddr()+"\n  ca_file: "+caFile+
		"\nnut:\n  addr: "+n.Addr+"\nunits:\n  - ups: ups1\n    serial: \"210987654321\"\n    cert_file: "+certFile+"\n    key_file: "+keyFile+"\n"))

	code, out, errOut := runCLI("check", "--config", path)
	for _, w := range []string{"subject CN=210987654321", "issuer CN=factory CA", "expires " + notAfter.UTC().Format(time.RFC3339), "as 210987654321: accepted (certificate)"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("check: exit %d, output lacks %q:\n%s%s", code, w, out, errOut)
		}
	}

	// The files now hold another unit's certificate.
	testcerts.WritePair(t, dir, "unit", factory.Client(t, "123456789099", now.Add(-time.Hour), notAfter))
	code, out, errOut = runCLI("check", "--config", path)
	for _, w := range []string{"WARNING: the certificate names 123456789099, not the unit's serial 210987654321",
		"as 210987654321: FAILED (certificate): the broker refused the unit's certificate", "not Authorized"} {
		if code == 0 || !strings.Contains(out, w) {
			t.Errorf("check with another serial's certificate: exit %d, output lacks %q:\n%s%s", code, w, out, errOut)
		}
	}
}
