package broker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/certs"
	"github.com/upswatch/upswatch/internal/testcerts"
	"github.com/upswatch/upswatch/ups"
)

type revocations struct {
	mu sync.Mutex
	at map[ups.Serial]time.Time
}

func (r *revocations) RevokedAt(s ups.Serial) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.at[s]
	return t, ok
}

// tlsBroker is a broker with TLS and WebSocket-TLS listeners, a server
// certificate that can be renewed on disk, and device certificates from
// a CA.
type tlsBroker struct {
	*Broker
	ca, devCA *testcerts.CA
	dir       string
	revoked   *revocations
	roots     *x509.CertPool
}

func startTLS(t *testing.T, auth string, failures *access.FailureLimiter) *tlsBroker {
	t.Helper()
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "server CA")
	devCA := testcerts.NewCA(t, "device CA")
	certFile, keyFile := testcerts.WritePair(t, dir, "server", ca.Server(t, "first"))
	rl, err := certs.NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	rev := &revocations{at: map[ups.Serial]time.Time{}}
	b, err := New(Options{
		Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0", WSListen: "127.0.0.1:0", TLS: certs.ServerConfig(rl),
		ClientCAs: devCA.Pool(), DeviceAuth: auth, Revoked: rev, Failures: failures,
		TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices:    devices{"123456789012": "pw-a", "210987654321": "pw-b"},
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return &tlsBroker{Broker: b, ca: ca, devCA: devCA, dir: dir, revoked: rev, roots: ca.Pool()}
}

func (tb *tlsBroker) device(t *testing.T, cn string, notBefore, notAfter time.Time) *tls.Certificate {
	c := tb.devCA.Client(t, cn, notBefore, notAfter).TLS(t)
	return &c
}

// connectTLS connects over url with an optional client certificate.
func (tb *tlsBroker) connectTLS(t *testing.T, url, user, pass string, cert *tls.Certificate) (paho.Client, error) {
	t.Helper()
	conf := &tls.Config{RootCAs: tb.roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	o := paho.NewClientOptions().AddBroker(url).SetUsername(user).SetPassword(pass).SetTLSConfig(conf).
		SetClientID(fmt.Sprintf("c-%d", time.Now().UnixNano())).SetAutoReconnect(false).SetConnectRetry(false).
		SetProtocolVersion(4).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("connect timed out")
	}
	if tok.Error() == nil {
		t.Cleanup(func() { c.Disconnect(0) })
	}
	return c, tok.Error()
}

func TestTLSListeners(t *testing.T) {
	tb := startTLS(t, AuthPassword, nil)
	for _, url := range []string{"ssl://" + tb.TLSAddr(), "wss://" + tb.WSAddr()} {
		if _, err := tb.connectTLS(t, url, "123456789012", "pw-a", nil); err != nil {
			t.Errorf("%s with password: %v", url, err)
		}
		if _, err := tb.connectTLS(t, url, "123456789012", "wrong", nil); err == nil {
			t.Errorf("%s accepted a wrong password", url)
		}
	}
	if got := tb.Refused("bad_password"); got != 2 {
		t.Errorf("refused bad_password = %d, want 2", got)
	}

	// Plain MQTT to the TLS port: no CONNACK, the handshake fails.
	o := paho.NewClientOptions().AddBroker("tcp://" + tb.TLSAddr()).SetUsername("123456789012").SetPassword("pw-a").
		SetAutoReconnect(false).SetConnectTimeout(3 * time.Second)
	if tok := paho.NewClient(o).Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		t.Error("plain connection to the TLS port accepted")
	}

	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", tb.TLSAddr(), &tls.Config{RootCAs: tb.roots, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}

	// A renewed certificate is served to the next connection.
	serverCN := func() string {
		c, err := tls.Dial("tcp", tb.TLSAddr(), &tls.Config{RootCAs: tb.roots})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := serverCN(); cn != "first" {
		t.Fatalf("server certificate CN %q, want first", cn)
	}
	testcerts.WritePair(t, tb.dir, "server", tb.ca.Server(t, "renewed"))
	if cn := serverCN(); cn != "renewed" {
		t.Fatalf("after renewal on disk the server certificate CN is %q, want renewed", cn)
	}
}

func TestDeviceCertificates(t *testing.T) {
	tb := startTLS(t, AuthCertificate, nil)
	now := time.Now()
	good := tb.device(t, "123456789012", now.Add(-time.Minute), now.Add(time.Hour))
	other := tb.device(t, "210987654321", now.Add(-time.Minute), now.Add(time.Hour))
	expired := tb.device(t, "123456789012", now.Add(-2*time.Hour), now.Add(-time.Hour))
	unregistered := tb.device(t, "555555555555", now.Add(-time.Minute), now.Add(time.Hour))
	foreign := testcerts.NewCA(t, "someone else").Client(t, "123456789012", now.Add(-time.Minute), now.Add(time.Hour)).TLS(t)
	revokedCert := tb.device(t, "210987654321", now.Add(-time.Hour), now.Add(time.Hour))
	tb.revoked.at["210987654321"] = now.Add(-30 * time.Minute)
	renewed := tb.device(t, "210987654321", now.Add(-time.Minute), now.Add(time.Hour))

	tlsURL := "ssl://" + tb.TLSAddr()
	tests := []struct {
		name, url, user, pass string
		cert                  *tls.Certificate
		reason                string // "" accepted
	}{
		{"certificate, username empty", tlsURL, "", "", good, ""},
		{"certificate and its serial", tlsURL, "123456789012", "", good, ""},
		{"over websocket", "wss://" + tb.WSAddr(), "", "", good, ""},
		{"password only", tlsURL, "123456789012", "pw-a", nil, certs.ReasonNoCertificate},
		{"plain listener, password", "tcp://" + tb.Addr(), "123456789012", "pw-a", nil, certs.ReasonNoCertificate},
		{"another serial's certificate", tlsURL, "123456789012", "", other, certs.ReasonOtherSerial},
		{"expired", tlsURL, "", "", expired, certs.ReasonExpired},
		{"another CA", tlsURL, "", "", &foreign, certs.ReasonUntrusted},
		{"unregistered unit", tlsURL, "", "", unregistered, "unknown_unit"},
		{"revoked", tlsURL, "", "", revokedCert, certs.ReasonRevoked},
		{"issued after the revocation", tlsURL, "", "", renewed, ""},
		{"service account, plain listener", "tcp://" + tb.Addr(), "svc", "svc-secret-1234", nil, ""},
		{"service account, TLS listener", tlsURL, "svc", "svc-secret-1234", nil, "bad_password"},
	}
	for _, tt := range tests {
		before := tb.Refused(tt.reason)
		var err error
		if tt.url[:3] == "tcp" {
			_, err = connect(t, tb.Broker, tt.user, tt.pass)
		} else {
			_, err = tb.connectTLS(t, tt.url, tt.user, tt.pass, tt.cert)
		}
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.name, err)
		case tt.reason != "" && err == nil:
			t.Errorf("%s: accepted, want refused (%s)", tt.name, tt.reason)
		case tt.reason != "" && tb.Refused(tt.reason) != before+1:
			t.Errorf("%s: refusals for %s went %d -> %d, want +1", tt.name, tt.reason, before, tb.Refused(tt.reason))
		}
	}

	// A device known by its certificate publishes under its own serial
	// only (the ACL uses the certificate's serial).
	svc, err := connect(t, tb.Broker, "svc", "svc-secret-1234")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	svc.Subscribe("ups/#", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }).WaitTimeout(5 * time.Second)
	dev, err := tb.connectTLS(t, tlsURL, "", "", good)
	if err != nil {
		t.Fatal(err)
	}
	dev.Publish("ups/210987654321/telemetry", 1, false, "{}").WaitTimeout(2 * time.Second)
	dev, err = tb.connectTLS(t, tlsURL, "", "", good)
	if err != nil {
		t.Fatal(err)
	}
	dev.Publish("ups/123456789012/telemetry", 1, false, "{}").WaitTimeout(5 * time.Second)
	select {
	case topic := <-got:
		if topic != "ups/123456789012/telemetry" {
			t.Fatalf("delivered on %s", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("own-topic publish not delivered")
	}

	// Revoking the serial's certificates ends its certificate sessions.
	lost := make(chan error, 1)
	conf := &tls.Config{RootCAs: tb.roots, Certificates: []tls.Certificate{*good}}
	o := paho.NewClientOptions().AddBroker(tlsURL).SetTLSConfig(conf).SetClientID("revokee").SetAutoReconnect(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	tb.revoked.mu.Lock()
	tb.revoked.at["123456789012"] = time.Now()
	tb.revoked.mu.Unlock()
	if n := tb.DisconnectCertificates("123456789012", time.Now()); n < 1 {
		t.Fatalf("DisconnectCertificates ended %d sessions", n)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("revoked device still connected")
	}
	if _, err := tb.connectTLS(t, tlsURL, "", "", good); err == nil {
		t.Fatal("revoked certificate accepted")
	}
}

// Failed CONNECTs beyond the budget of an address are refused before
// their credentials are checked, and counted as throttled.
func TestConnectFailuresThrottled(t *testing.T) {
	b, err := New(Options{
		Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices:  devices{"123456789012": "pw-a", "210987654321": "pw-b"},
		Failures: access.NewFailureLimiter(3, 5, time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	// Three wrong passwords for one unit spend its username budget.
	for range 3 {
		if _, err := connect(t, b, "123456789012", "guess"); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	if _, err := connect(t, b, "123456789012", "pw-a"); err == nil {
		t.Fatal("the right password got through a spent username budget")
	}
	if b.Refused("throttled") != 1 || b.Refused("bad_password") != 3 {
		t.Fatalf("throttled %d bad_password %d, want 1 and 3", b.Refused("throttled"), b.Refused("bad_password"))
	}
	// Another unit is still let in: its budget is its own, the address
	// has 2 left.
	if _, err := connect(t, b, "210987654321", "pw-b"); err != nil {
		t.Fatalf("other unit refused: %v", err)
	}
	// Made-up usernames spend the address budget; then the address waits.
	for i := range 2 {
		connect(t, b, fmt.Sprintf("nobody-%d", i), "x")
	}
	_, err = connect(t, b, "210987654321", "pw-b")
	if err == nil || b.Refused("throttled") != 2 {
		t.Fatalf("address over budget: err %v, throttled %d", err, b.Refused("throttled"))
	}
}

// Guesses with made-up or empty usernames spend their shared budget, not
// the budget of devices logging in with certificates.
func TestCertificatesNotLockedOutByGuessing(t *testing.T) {
	tb := startTLS(t, AuthEither, access.NewFailureLimiter(2, 100, time.Hour))
	url := "ssl://" + tb.TLSAddr()
	for range 3 {
		if _, err := tb.connectTLS(t, url, "", "", nil); err == nil {
			t.Fatal("anonymous connection accepted")
		}
	}
	if tb.Refused("throttled") != 1 {
		t.Fatalf("throttled = %d, want 1 (the third guess)", tb.Refused("throttled"))
	}
	now := time.Now()
	if _, err := tb.connectTLS(t, url, "", "", tb.device(t, "123456789012", now.Add(-time.Minute), now.Add(time.Hour))); err != nil {
		t.Fatalf("device certificate refused after others' guesses: %v", err)
	}
}

// A broker that cannot start its second listener leaves no port bound.
func TestNewReleasesListenersOnError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	ca := testcerts.NewCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := testcerts.WritePair(t, dir, "s", ca.Server(t, "s"))
	rl, err := certs.NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Listen: addr, TLSListen: taken.Addr().String(), TLS: certs.ServerConfig(rl),
		TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234", Devices: devices{}})
	if err == nil {
		t.Fatal("New succeeded on a taken TLS address")
	}
	again, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the plain listener's port is still bound: %v", err)
	}
	again.Close()
}
