package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// Why a device certificate is refused (stable: they label a metric).
const (
	ReasonNoCertificate = "no_certificate"
	ReasonUntrusted     = "certificate_untrusted"
	ReasonExpired       = "certificate_expired"
	ReasonInvalid       = "certificate_invalid"
	ReasonOtherSerial   = "certificate_other_serial"
	ReasonRevoked       = "certificate_revoked"
)

// RefusedError tells why a device certificate was refused.
type RefusedError struct {
	Reason string // one of the Reason constants
	Err    error
}

func (e *RefusedError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *RefusedError) Unwrap() error { return e.Err }

// LoadPool reads a PEM bundle of CA certificates (mqtt.client_ca).
func LoadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", file)
	}
	return pool, nil
}

// VerifyDevice checks a device's certificate chain (leaf first, as the
// TLS handshake received it) against roots at time now, for client
// authentication. A refusal is a *RefusedError.
func VerifyDevice(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	if len(chain) == 0 {
		return &RefusedError{Reason: ReasonNoCertificate}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err == nil {
		return nil
	}
	var inv x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return &RefusedError{Reason: ReasonExpired, Err: err}
	case errors.As(err, &unknown):
		return &RefusedError{Reason: ReasonUntrusted, Err: err}
	}
	return &RefusedError{Reason: ReasonInvalid, Err: err}
}

// Names are the identities a device certificate claims: its subject CN
// and its DNS subject alternative names. A device's serial must be one.
func Names(c *x509.Certificate) []string {
	out := []string{}
	if c.Subject.CommonName != "" {
		out = append(out, c.Subject.CommonName)
	}
	return append(out, c.DNSNames...)
}

// CA is an operator's certificate authority that signs device
// certificates.
type CA struct {
	cert   *x509.Certificate
	signer crypto.Signer
}

// LoadCA reads the CA certificate and its private key (PEM; PKCS#8,
// SEC 1 or PKCS#1).
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load CA %s and key %s: %w", certFile, keyFile, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate %s: %w", certFile, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s is not a CA certificate allowed to sign certificates", certFile)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key %s cannot sign", keyFile)
	}
	return &CA{cert: cert, signer: signer}, nil
}

// Device is an issued device certificate and its key, PEM encoded.
type Device struct {
	CertPEM, KeyPEM []byte
	NotAfter        time.Time
}

// IssueDevice signs a client certificate for the device serial: a new
// ECDSA P-256 key, subject CN = serial, valid from now (to the second)
// for validity.
func (ca *CA) IssueDevice(serial string, now time.Time, validity time.Duration) (Device, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Device{}, fmt.Errorf("device key: %w", err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return Device{}, fmt.Errorf("certificate serial number: %w", err)
	}
	now = now.Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: serial},
		NotBefore:    now,
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.signer)
	if err != nil {
		return Device{}, fmt.Errorf("sign device certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Device{}, fmt.Errorf("encode device key: %w", err)
	}
	return Device{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		NotAfter: tmpl.NotAfter,
	}, nil
}
