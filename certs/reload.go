// Package certs holds upswatch's TLS plumbing: server certificates that
// reload when their files change, the server TLS configuration, and the
// device certificates (issuing them from an operator's CA, and reading a
// device's serial out of one).
package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Reloader serves a certificate and key pair from files and loads them
// again when either file changes (mtime or size), so a renewal by certbot
// or cert-manager needs no restart. The files are looked at on every TLS
// handshake (two stat calls); a pair that does not load (a renewal caught
// half written) leaves the previous certificate in service and is retried
// once the files change again.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu     sync.Mutex
	cert   *tls.Certificate
	stamp  stamp // of the files cert was loaded from
	failed stamp // of the files that last failed to load
	loads  int
}

type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// NewReloader loads the pair once; an error names the files.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	st, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	r.cert, r.stamp, r.loads = &cert, st, 1
	return r, nil
}

func (r *Reloader) stat() (stamp, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return stamp{}, fmt.Errorf("certificate file: %w", err)
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return stamp{}, fmt.Errorf("key file: %w", err)
	}
	return stamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// Certificate returns the current certificate, loading the files again
// first if they changed since.
func (r *Reloader) Certificate() *tls.Certificate {
	st, err := r.stat()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || st == r.stamp || st == r.failed {
		return r.cert
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.failed = st
		r.log.Warn("renewed certificate does not load; still serving the previous one",
			"cert_file", r.certFile, "key_file", r.keyFile, "err", err)
		return r.cert
	}
	r.cert, r.stamp, r.failed = &cert, st, stamp{}
	r.loads++
	r.log.Info("certificate reloaded", "cert_file", r.certFile)
	return r.cert
}

// Loads counts the loads of the pair (1 after NewReloader).
func (r *Reloader) Loads() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loads
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := r.Certificate(); c != nil {
		return c, nil
	}
	return nil, errors.New("no certificate")
}

// ServerConfig is the TLS configuration of upswatch's listeners: TLS 1.2
// at least, the certificate from r.
func ServerConfig(r *Reloader) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
