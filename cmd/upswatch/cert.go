package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/upswatch/upswatch/certs"
	"github.com/upswatch/upswatch/ups"
)

// unitCert issues a device certificate from the operator's CA files,
// offline: `upswatch unit cert SERIAL --ca-cert F --ca-key F --out DIR`.
// It writes DIR/SERIAL.crt and DIR/SERIAL.key and never overwrites.
func unitCert(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("unit cert", flag.ContinueOnError)
	caCert := fs.String("ca-cert", "", "CA certificate (PEM) that signs device certificates (required)")
	caKey := fs.String("ca-key", "", "the CA's private key (PEM) (required)")
	out := fs.String("out", ".", "directory for SERIAL.crt and SERIAL.key")
	days := fs.Int("days", 1826, "validity in days")
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 1 || *caCert == "" || *caKey == "" {
		return errors.New("usage: upswatch unit cert SERIAL --ca-cert FILE --ca-key FILE [--out DIR] [--days N]")
	}
	serial, err := ups.ParseSerial(positional[0])
	if err != nil {
		return err
	}
	if *days < 1 {
		return fmt.Errorf("--days must be at least 1, got %d", *days)
	}
	ca, err := certs.LoadCA(*caCert, *caKey)
	if err != nil {
		return err
	}
	certFile := filepath.Join(*out, string(serial)+".crt")
	keyFile := filepath.Join(*out, string(serial)+".key")
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err == nil {
			return fmt.Errorf("%s exists; a device certificate is never overwritten (move it away first)", f)
		}
	}
	d, err := ca.IssueDevice(string(serial), time.Now(), time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if err := os.WriteFile(keyFile, d.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("write device key: %w", err)
	}
	if err := os.WriteFile(certFile, d.CertPEM, 0o644); err != nil {
		return fmt.Errorf("write device certificate: %w", err)
	}
	fmt.Fprintf(stdout, "Device certificate for %s (valid until %s):\n  certificate: %s\n  key:         %s\n",
		serial, d.NotAfter.Format(time.DateOnly), certFile, keyFile)
	return nil
}
