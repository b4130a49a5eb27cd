package certs_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/upswatch/upswatch/certs"
	"github.com/upswatch/upswatch/internal/testcerts"
)

func leafCN(t *testing.T, r *certs.Reloader) string {
	t.Helper()
	c, err := x509.ParseCertificate(r.Certificate().Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c.Subject.CommonName
}

func TestReloaderFollowsTheFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "test CA")
	certFile, keyFile := testcerts.WritePair(t, dir, "server", ca.Server(t, "first"))
	r, err := certs.NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := leafCN(t, r); got != "first" {
		t.Fatalf("CN = %q, want first", got)
	}

	// A half-written renewal (new certificate, old key) keeps the old pair.
	second := ca.Server(t, "second")
	testcerts.Write(t, dir, "server.crt", second.CertPEM)
	if got := leafCN(t, r); got != "first" {
		t.Fatalf("with a mismatched pair CN = %q, want first still", got)
	}
	testcerts.Write(t, dir, "server.key", second.KeyPEM)
	if got := leafCN(t, r); got != "second" {
		t.Fatalf("after renewal CN = %q, want second", got)
	}
	if r.Loads() != 2 {
		t.Errorf("loads = %d, want 2 (unchanged files are not read again)", r.Loads())
	}
	leafCN(t, r)
	if r.Loads() != 2 {
		t.Errorf("loads = %d after an unchanged handshake, want 2", r.Loads())
	}

	if _, err := certs.NewReloader(certFile, dir+"/missing.key", nil); err == nil {
		t.Error("NewReloader with a missing key succeeded")
	}
}

func TestVerifyDeviceReasons(t *testing.T) {
	ca := testcerts.NewCA(t, "device CA")
	other := testcerts.NewCA(t, "another CA")
	now := time.Now()
	parse := func(p testcerts.Pair) []*x509.Certificate {
		b, _ := pem.Decode(p.CertPEM)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{c}
	}
	tests := []struct {
		name   string
		chain  []*x509.Certificate
		reason string
	}{
		{"good", parse(ca.Client(t, "123456789012", now.Add(-time.Hour), now.Add(time.Hour))), ""},
		{"none", nil, certs.ReasonNoCertificate},
		{"expired", parse(ca.Client(t, "123456789012", now.Add(-2*time.Hour), now.Add(-time.Hour))), certs.ReasonExpired},
		{"other CA", parse(other.Client(t, "123456789012", now.Add(-time.Hour), now.Add(time.Hour))), certs.ReasonUntrusted},
		{"server certificate", parse(ca.Server(t, "123456789012")), certs.ReasonInvalid},
	}
	for _, tt := range tests {
		err := certs.VerifyDevice(tt.chain, ca.Pool(), now)
		var re *certs.RefusedError
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.reason != "" && (!errors.As(err, &re) || re.Reason != tt.reason):
			t.Errorf("%s: err = %v, want reason %s", tt.name, err, tt.reason)
		}
	}
}

func TestIssueDevice(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "factory CA")
	caCert, caKey := testcerts.WritePair(t, dir, "ca", testcerts.Pair{CertPEM: ca.CertPEM, KeyPEM: ca.KeyPEM})
	issuer, err := certs.LoadCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	d, err := issuer.IssueDevice("1234567890123456", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(d.CertPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.VerifyDevice([]*x509.Certificate{c}, ca.Pool(), now.Add(time.Second)); err != nil {
		t.Fatalf("issued certificate does not verify: %v", err)
	}
	if names := certs.Names(c); len(names) != 1 || names[0] != "1234567890123456" {
		t.Errorf("names = %v", names)
	}
	if c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v, want ECDSA", c.PublicKeyAlgorithm)
	}

	// A leaf certificate is no CA.
	leafCert, leafKey := testcerts.WritePair(t, dir, "leaf", testcerts.Pair{CertPEM: d.CertPEM, KeyPEM: d.KeyPEM})
	if _, err := certs.LoadCA(leafCert, leafKey); err == nil {
		t.Error("LoadCA accepted a device certificate")
	}
}
