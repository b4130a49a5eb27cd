package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/app"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/testcerts"
)

// Device credentials over their life, through the CLI against a serve
// with TLS everywhere and device_auth either: a certificate issued by
// `unit cert` logs a device in; `unit revoke` ends that session and
// refuses the certificate (counted); `unit rotate-password` ends the
// password session and the old password; `unit remove` ends the rest.
func TestDeviceCredentialLifecycle(t *testing.T) {
	dir := t.TempDir()
	serverCA := testcerts.NewCA(t, "server CA")
	caFile := testcerts.Write(t, dir, "server-ca.crt", serverCA.CertPEM)
	certFile, keyFile := testcerts.WritePair(t, dir, "server", serverCA.Server(t, "upswatch"))
	factory := testcerts.NewCA(t, "factory CA")
	factoryCert, factoryKey := testcerts.WritePair(t, dir, "factory", testcerts.Pair{CertPEM: factory.CertPEM, KeyPEM: factory.KeyPEM})

	c := config.Default()
	c.DataDir = filepath.Join(dir, "data")
	c.HTTP.Addr, c.HTTP.CertFile, c.HTTP.KeyFile = "127.0.0.1:0", certFile, keyFile
	c.MQTT.Listen, c.MQTT.TLSListen = "127.0.0.1:0", "127.0.0.1:0"
	c.MQTT.CertFile, c.MQTT.KeyFile, c.MQTT.ClientCA, c.MQTT.DeviceAuth = certFile, keyFile, factoryCert, "either"
	c.MQTT.ClientID = "upswatch-cred-test"
	c.NATS.Partitions = 2
	a, err := app.New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.Out = io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-a.Started():
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append(args, "--server", "https://"+a.HTTPAddr(), "--token", a.AdminToken(), "--cacert", caFile)
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("upswatch %s: exit %d: %s%s", strings.Join(args[:3], " "), code, out.String(), errOut.String())
		}
		return out.String()
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(serverCA.CertPEM)
	connect := func(user, pass string, cert *tls.Certificate) (paho.Client, chan error, error) {
		lost := make(chan error, 1)
		conf := &tls.Config{RootCAs: pool}
		if cert != nil {
			conf.Certificates = []tls.Certificate{*cert}
		}
		o := paho.NewClientOptions().AddBroker("ssl://" + a.MQTTTLSAddr()).SetTLSConfig(conf).SetUsername(user).SetPassword(pass).
			SetClientID(fmt.Sprintf("dev-%d", time.Now().UnixNano())).SetAutoReconnect(false).SetProtocolVersion(4).
			SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
		cl := paho.NewClient(o)
		tok := cl.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatal("connect timed out")
		}
		if tok.Error() == nil {
			t.Cleanup(func() { cl.Disconnect(0) })
		}
		return cl, lost, tok.Error()
	}
	ended := func(what string, lost chan error) {
		t.Helper()
		select {
		case <-lost:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the device's session was not ended", what)
		}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	refused := func(reason string) string {
		resp, err := hc.Get("https://" + a.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`upswatch_mqtt_broker_connect_refused_total\{reason="` + reason + `"\} (\S+)`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no refusal count for %s", reason)
		}
		return string(m[1])
	}

	out := cli("unit", "add", "123456789012", "--name", "Rack A")
	password := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(out)[1]
	certDir := filepath.Join(dir, "devices")
	certArgs := []string{"unit", "cert", "123456789012", "--ca-cert", factoryCert, "--ca-key", factoryKey, "--out", certDir}
	var certOut bytes.Buffer
	if code := run(certArgs, &certOut, &certOut); code != 0 || !strings.Contains(certOut.String(), "123456789012.crt") {
		t.Fatalf("unit cert: exit %d: %s", code, certOut.String())
	}
	if code := run(certArgs, io.Discard, io.Discard); code == 0 {
		t.Fatal("unit cert overwrote an existing certificate")
	}
	devCert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "123456789012.crt"), filepath.Join(certDir, "123456789012.key"))
	if err != nil {
		t.Fatal(err)
	}

	// The simulator presents the unit's certificate (its password here
	// is wrong: the certificate is what logs it in).
	creds := testcerts.Write(t, dir, "sim-units.txt", []byte("123456789012 not-the-password\n"))
	var simOut bytes.Buffer
	if code := run([]string{"sim", "--creds", creds, "--broker", "ssl://" + a.MQTTTLSAddr(), "--cafile", caFile,
		"--cert-dir", certDir, "--units", "1", "--count", "2", "--interval", "10ms"}, &simOut, &simOut); code != 0 ||
		!strings.Contains(simOut.String(), "acked 2") {
		t.Fatalf("sim over TLS with the unit's certificate: exit %d\n%s", code, simOut.String())
	}

	// The certificate logs in with no password; so does the password.
	_, certLost, err := connect("", "", &devCert)
	if err != nil {
		t.Fatalf("device certificate refused: %v", err)
	}
	_, pwLost, err := connect("123456789012", password, nil)
	if err != nil {
		t.Fatalf("device password refused: %v", err)
	}

	cli("unit", "revoke", "123456789012")
	ended("revoke", certLost)
	if _, _, err := connect("", "", &devCert); err == nil {
		t.Fatal("revoked certificate accepted")
	}
	if got := refused("certificate_revoked"); got != "1" {
		t.Fatalf("certificate_revoked refusals = %s, want 1", got)
	}

	out = cli("unit", "rotate-password", "123456789012")
	newPassword := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(out)[1]
	ended("rotate-password", pwLost)
	if _, _, err := connect("123456789012", password, nil); err == nil {
		t.Fatal("old password accepted after rotation")
	}
	_, lost, err := connect("123456789012", newPassword, nil)
	if err != nil {
		t.Fatalf("new password refused: %v", err)
	}

	cli("unit", "remove", "123456789012")
	ended("remove", lost)
	if _, _, err := connect("123456789012", newPassword, nil); err == nil {
		t.Fatal("removed unit's password accepted")
	}
}
