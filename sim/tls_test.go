package sim

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/broker"
	"github.com/upswatch/upswatch/certs"
	"github.com/upswatch/upswatch/internal/testcerts"
	"github.com/upswatch/upswatch/ups"
)

type noPasswords struct{ units map[ups.Serial]bool }

func (n noPasswords) Authenticate(ups.Serial, string) bool { return false }
func (n noPasswords) Registered(s ups.Serial) bool         { return n.units[s] }

// Units connect over TLS trusting a CA, each with its own client
// certificate, to upswatch's broker under certificate-only auth; every
// reading is acknowledged.
func TestRunOverTLSWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	serverCA, devCA := testcerts.NewCA(t, "server CA"), testcerts.NewCA(t, "device CA")
	certFile, keyFile := testcerts.WritePair(t, dir, "server", serverCA.Server(t, "broker"))
	rl, err := certs.NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	units := testUnits(2)
	known := noPasswords{units: map[ups.Serial]bool{}}
	cs := map[ups.Serial]*tls.Certificate{}
	now := time.Now()
	for _, u := range units {
		known.units[u.Serial] = true
		c := devCA.Client(t, string(u.Serial), now.Add(-time.Minute), now.Add(time.Hour)).TLS(t)
		cs[u.Serial] = &c
	}
	b, err := broker.New(broker.Options{
		Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0", TLS: certs.ServerConfig(rl), ClientCAs: devCA.Pool(),
		DeviceAuth: broker.AuthCertificate, TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices: known, Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	const count = 3
	s := newSim(t, Config{BrokerURL: "ssl://" + b.TLSAddr(), TLS: &tls.Config{RootCAs: serverCA.Pool()},
		Certificates: cs, Units: units, Interval: 10 * time.Millisecond, Count: count, QoS: 1, Seed: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Connected != len(units) || st.Acked != uint64(count*len(units)) {
		t.Fatalf("stats %+v, want %d units connected and %d readings acked", st, len(units), count*len(units))
	}

	// Without the certificates the same units are refused.
	s = newSim(t, Config{BrokerURL: "ssl://" + b.TLSAddr(), TLS: &tls.Config{RootCAs: serverCA.Pool()},
		Units: units, Interval: 10 * time.Millisecond, Count: 1, QoS: 1, ConnectTimeout: 2 * time.Second})
	if err := s.Run(ctx); err == nil {
		t.Fatal("units without certificates connected")
	}
	if b.Refused(certs.ReasonNoCertificate) == 0 {
		t.Fatal("refusals not counted as no_certificate")
	}
}
