package app

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/testcerts"
	"github.com/upswatch/upswatch/internal/wait"
)

// Devices and people over TLS: mosquitto_pub with --cafile publishes to
// the embedded broker's TLS port and the reading is stored; a plain
// client at that port gets nowhere; the API and console answer over
// HTTPS with their security headers, and not over plain HTTP.
func TestTLSEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "upswatch test CA")
	caFile := testcerts.Write(t, dir, "ca.crt", ca.CertPEM)
	certFile, keyFile := testcerts.WritePair(t, dir, "server", ca.Server(t, "upswatch"))
	c := testConfig(t, filepath.Join(dir, "data"))
	c.HTTP.CertFile, c.HTTP.KeyFile = certFile, keyFile
	c.MQTT.CertFile, c.MQTT.KeyFile = certFile, keyFile
	c.MQTT.TLSListen, c.MQTT.WSListen = "127.0.0.1:0", "127.0.0.1:0"
	in := start(t, c)
	if in.app.MQTTTLSAddr() == "" || in.app.MQTTWSAddr() == "" {
		t.Fatalf("TLS listeners not started: tls %q ws %q", in.app.MQTTTLSAddr(), in.app.MQTTWSAddr())
	}
	r := in.register("123456789012")
	_, port, _ := net.SplitHostPort(in.app.MQTTTLSAddr())
	pub := func(extra ...string) error {
		args := append([]string{"-h", "localhost", "-p", port, "-u", r.MQTT.Username, "-P", r.MQTT.Password, "-q", "1",
			"-i", "tls-test", "-t", "ups/123456789012/telemetry", "-m", `{"ups.status":"OL","input.voltage":231.5}`}, extra...)
		out, err := exec.Command("mosquitto_pub", args...).CombinedOutput()
		if err != nil {
			return &exec.ExitError{Stderr: out}
		}
		return nil
	}
	if err := pub(); err == nil {
		t.Fatal("mosquitto_pub without TLS to the TLS port succeeded")
	}
	if err := pub("--cafile", caFile); err != nil {
		t.Fatalf("mosquitto_pub --cafile: %s", err.(*exec.ExitError).Stderr)
	}
	wait.Within(t, 15*time.Second, "reading stored", func() bool {
		l := in.latest("123456789012")
		return l != nil && l["input.voltage"] == 231.5
	})

	for _, path := range []string{"/v1/units", "/login"} {
		req, _ := http.NewRequest("GET", "https://"+in.app.HTTPAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+in.app.AdminToken())
		resp, err := in.client.Do(req)
		if err != nil {
			t.Fatalf("GET %s over HTTPS: %v", path, err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(h.Get("Strict-Transport-Security"), "max-age=") ||
			h.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("GET %s: %d, headers %v", path, resp.StatusCode, h)
		}
	}
	// Console sign-ins: five failures for an account, then it waits;
	// both counted.
	for i := range 6 {
		resp, err := in.client.PostForm("https://"+in.app.HTTPAddr()+"/login",
			url.Values{"email": {"lan@example.com"}, "password": {"guess-" + strconv.Itoa(i)}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if limited := resp.StatusCode == http.StatusTooManyRequests; limited != (i == 5) {
			t.Fatalf("sign-in %d: %d", i+1, resp.StatusCode)
		}
	}
	if f, th := in.metric("upswatch_console_login_failures_total"), in.metric("upswatch_console_logins_throttled_total"); f != 5 || th != 1 {
		t.Fatalf("console sign-in failures %v, throttled %v; want 5 and 1", f, th)
	}
	// The shared limit's bucket was there throughout: exported, and no
	// fallback.
	if _, body := in.Call("GET", "/metrics", nil, nil); !strings.Contains(body, "\nupswatch_console_login_limiter_unavailable_total 0\n") {
		t.Fatal("metrics lack upswatch_console_login_limiter_unavailable_total 0")
	}

	// A certificate renewed on disk is what the next HTTPS connection
	// gets.
	testcerts.WritePair(t, dir, "server", ca.Server(t, "upswatch renewed"))
	conn, err := tls.Dial("tcp", in.app.HTTPAddr(), &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	conn.Close()
	if cn != "upswatch renewed" {
		t.Fatalf("HTTPS serves %q after the renewal, want the renewed certificate", cn)
	}

	resp, err := http.Get("http://" + in.app.HTTPAddr() + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP served on the HTTPS port")
		}
	}
}

func TestWarnPlainListener(t *testing.T) {
	var buf bytes.Buffer
	a := &App{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for _, addr := range []string{"127.0.0.1:1883", "[::1]:8080", "localhost:1883"} {
		a.warnPlain("mqtt.listen", addr)
	}
	if buf.Len() != 0 {
		t.Fatalf("warned for a loopback address: %s", buf.String())
	}
	a.warnPlain("http.addr", "0.0.0.0:8080")
	a.warnPlain("mqtt.listen", ":1883")
	if n := strings.Count(buf.String(), "level=WARN"); n != 2 {
		t.Fatalf("%d warnings for two non-loopback listeners:\n%s", n, buf.String())
	}
}
