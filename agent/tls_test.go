package agent_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/agent"
	agentconfig "github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

// certAuthority makes a CA and a certificate for 127.0.0.1 signed by it;
// it returns the server's TLS config and the CA's PEM file.
func certAuthority(t *testing.T) (*tls.Config, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, path
}

// tlsFront terminates TLS in front of a plain broker (serve's embedded
// broker speaks plain MQTT; in production a TLS listener or proxy does
// this).
func tlsFront(t *testing.T, cfg *tls.Config, target string) string {
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return l.Addr().String()
}

// TLS on both hops: STARTTLS to an upsd with a certificate (nut.tls:
// require, nut.ca_file), and ssl:// with broker.ca_file to the broker; a
// client trusting another CA is refused by the broker's side.
func TestBrokerTLS(t *testing.T) {
	t.Parallel()
	s := sharedServe(t)
	serverTLS, caFile := certAuthority(t)
	addr := tlsFront(t, serverTLS, strings.TrimPrefix(s.mqttURL, "tcp://"))
	serial := newSerial()
	n := testenv.NUTWithTLS(t, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	pw := s.register(t, serial)
	c := agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: pw})
	c.Broker.URL, c.Broker.CAFile = "ssl://"+addr, caFile
	c.NUT.TLS, c.NUT.CAFile = "require", n.CAFile
	runAgent(t, c)
	wait.Within(t, 10*time.Second, "a reading over TLS", func() bool { return s.latest(serial) != nil })

	_, otherCA := certAuthority(t)
	c.Broker.CAFile = otherCA
	tlsCfg, err := agent.BrokerTLS(c.Broker)
	if err != nil {
		t.Fatal(err)
	}
	cl := paho.NewClient(agent.ClientOptions(c.Broker, tlsCfg, serial, pw).SetClientID("tls-check-" + serial).SetAutoReconnect(false))
	tok := cl.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() == nil {
		cl.Disconnect(0)
		t.Fatal("connected to a broker whose certificate the CA file does not vouch for")
	}
	if !strings.Contains(tok.Error().Error(), "certificate") {
		t.Errorf("error %v does not name the certificate", tok.Error())
	}
}
