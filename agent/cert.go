package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Certificate is a unit's client certificate as read from its files.
type Certificate struct {
	Pair tls.Certificate
	Leaf *x509.Certificate
}

// LoadCertificate reads a client certificate and its key (PEM).
func LoadCertificate(certFile, keyFile string) (Certificate, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return Certificate{}, fmt.Errorf("client certificate %s: %w", certFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return Certificate{}, fmt.Errorf("client certificate %s: %w", certFile, err)
	}
	pair.Leaf = leaf
	return Certificate{Pair: pair, Leaf: leaf}, nil
}

// Names are the identities the certificate claims (its CN and DNS
// names); the broker takes a unit whose serial is one of them.
func (c Certificate) Names() []string {
	var out []string
	if c.Leaf.Subject.CommonName != "" {
		out = append(out, c.Leaf.Subject.CommonName)
	}
	return append(out, c.Leaf.DNSNames...)
}

// Problem says why the broker will refuse the certificate for serial at
// now, as far as the agent can tell without the broker's CAs; "" when
// it sees nothing wrong.
func (c Certificate) Problem(serial string, now time.Time) string {
	switch {
	case now.After(c.Leaf.NotAfter):
		return fmt.Sprintf("the certificate expired at %s", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.Leaf.NotBefore):
		return fmt.Sprintf("the certificate is valid only from %s", c.Leaf.NotBefore.UTC().Format(time.RFC3339))
	case serial != "" && !slices.Contains(c.Names(), serial):
		return fmt.Sprintf("the certificate names %s, not the unit's serial %s", strings.Join(c.Names(), ", "), serial)
	}
	return ""
}

// UnitTLS is base (BrokerTLS) with the client certificate in certFile and
// keyFile, read again at each handshake so that a renewed pair on disk
// is used without a restart. Without a certificate it returns base.
func UnitTLS(base *tls.Config, certFile, keyFile string) *tls.Config {
	if certFile == "" {
		return base
	}
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12} // the system's roots
	}
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cert, err := LoadCertificate(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		return &cert.Pair, nil
	}
	return c
}

// Refused reports whether a connection error is the broker refusing the
// credentials (password or certificate), not a network failure.
func Refused(err error) bool {
	return err != nil && (errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword))
}

// ExplainRefusal adds what the agent knows of a unit's credentials to a
// failed connection (err, returned as is when the broker did not refuse
// them): the broker tells only "not authorized".
func ExplainRefusal(err error, certFile, keyFile, serial string, now time.Time) error {
	if !Refused(err) {
		return err
	}
	if certFile == "" {
		return fmt.Errorf("the broker refused the unit's password: %w", err)
	}
	cert, lerr := LoadCertificate(certFile, keyFile)
	switch {
	case lerr != nil:
		return fmt.Errorf("the broker refused the unit (%w): %w", lerr, err)
	case cert.Problem(serial, now) != "":
		return fmt.Errorf("the broker refused the unit's certificate %s: %s: %w", certFile, cert.Problem(serial, now), err)
	}
	return fmt.Errorf("the broker refused the unit's certificate %s (CN %s; is its CA the broker's mqtt.client_ca, is it revoked, is the unit registered?): %w",
		certFile, cert.Leaf.Subject.CommonName, err)
}
