package nut_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/agent/nut"
	"github.com/upswatch/upswatch/internal/testenv"
)

const dump = `battery.charge: 100
battery.runtime: 1800
device.serial: 123456789012
input.voltage: 230.0
ups.mfr: Test Corp
ups.status: OL
`

// Against a real upsd with dummy-ups: listing, reading, logging in,
// errors, and seeing an upsrw change on the next read.
func TestClientAgainstUpsd(t *testing.T) {
	srv := testenv.NUT(t, testenv.NUTUnit{Name: "alpha", Dump: []byte(dump)}, testenv.NUTUnit{Name: "beta", Dump: []byte(dump)})
	ctx := context.Background()
	c, err := nut.Dial(ctx, srv.Addr, nut.Options{Username: srv.Username, Password: srv.Password, TLS: nut.TLSAuto})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.TLS() {
		t.Error("TLS on an upsd without a certificate")
	}
	list, err := c.ListUPS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "beta" || list[0].Description != "test unit alpha" {
		t.Fatalf("LIST UPS = %+v", list)
	}
	vars, err := c.ListVars(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, v := range vars {
		got[v.Name] = v.Value
	}
	for name, want := range map[string]string{
		"battery.charge": "100", "device.serial": "123456789012", "ups.status": "OL",
		"input.voltage": "230.0", "ups.mfr": "Test Corp",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	srv.Set(t, "alpha", "ups.status", "OB DISCHRG")
	srv.WaitVar(t, "alpha", "ups.status", "OB DISCHRG") // the driver applies it a moment after upsrw's OK
	if v, err := c.GetVar(ctx, "alpha", "ups.status"); err != nil || v != "OB DISCHRG" {
		t.Fatalf("GET VAR after upsrw = %q, %v", v, err)
	}
	if v, err := c.GetVar(ctx, "beta", "ups.status"); err != nil || v != "OL" {
		t.Fatalf("beta unchanged: %q, %v", v, err)
	}

	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"unknown ups", func() error { _, err := c.ListVars(ctx, "nosuch"); return err }, nut.ErrUnknownUPS},
		{"unknown var", func() error { _, err := c.GetVar(ctx, "alpha", "no.such.var"); return err }, nut.ErrVarNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// The connection still works after errors.
	if _, err := c.GetVar(ctx, "beta", "battery.charge"); err != nil {
		t.Fatal(err)
	}

	t.Run("require TLS without a certificate", func(t *testing.T) {
		_, err := nut.Dial(ctx, srv.Addr, nut.Options{TLS: nut.TLSRequire})
		if err == nil {
			t.Fatal("TLSRequire succeeded against an upsd without a certificate")
		}
	})
	t.Run("stopped upsd", func(t *testing.T) {
		if err := srv.StopUPSD(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListVars(ctx, "alpha"); err == nil {
			t.Fatal("read from a stopped upsd succeeded")
		}
		if _, err := nut.Dial(ctx, srv.Addr, nut.Options{}); err == nil {
			t.Fatal("dial to a stopped upsd succeeded")
		}
		if err := srv.StartUPSD(); err != nil {
			t.Fatal(err)
		}
	})
}

// fakeUpsd answers a scripted conversation on one connection: for each
// expected command line, the answer lines. It reports what differs.
func fakeUpsd(t *testing.T, script func(r *bufio.Reader, w net.Conn) error) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		l.Close()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		errc <- script(bufio.NewReader(c), c)
	}()
	t.Cleanup(func() {
		if err := <-errc; err != nil {
			t.Errorf("fake upsd: %v", err)
		}
	})
	return l.Addr().String()
}

func expect(r *bufio.Reader, want string) error {
	l, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSuffix(l, "\n") != want {
		return errors.New("got " + l + ", want " + want)
	}
	return nil
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upsd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// STARTTLS, scripted: the client upgrades the connection, verifies
// upsd's certificate with the CA given, and logs in inside TLS (the
// password, quoted, travels only inside TLS).
func TestStartTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	addr := fakeUpsd(t, func(r *bufio.Reader, w net.Conn) error {
		if err := expect(r, "STARTTLS"); err != nil {
			return err
		}
		if _, err := w.Write([]byte("OK STARTTLS\n")); err != nil {
			return err
		}
		tc := tls.Server(w, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := tc.Handshake(); err != nil {
			return err
		}
		tr := bufio.NewReader(tc)
		for _, step := range [][2]string{
			{"USERNAME monitor", "OK\n"},
			{`PASSWORD "pa ss\"word"`, "OK\n"},
			{"GET VAR ups1 ups.status", "VAR ups1 ups.status \"OB LB\"\n"},
			{"LOGOUT", "OK Goodbye\n"},
		} {
			if err := expect(tr, step[0]); err != nil {
				return err
			}
			if _, err := tc.Write([]byte(step[1])); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := context.Background()
	c, err := nut.Dial(ctx, addr, nut.Options{Username: "monitor", Password: `pa ss"word`, TLS: nut.TLSRequire, TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	if !c.TLS() {
		t.Fatal("not encrypted")
	}
	if v, err := c.GetVar(ctx, "ups1", "ups.status"); err != nil || v != "OB LB" {
		t.Fatalf("GET VAR = %q, %v", v, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// A certificate that does not verify fails TLSRequire.
func TestStartTLSUnverified(t *testing.T) {
	cert, _ := selfSigned(t)
	addr := fakeUpsd(t, func(r *bufio.Reader, w net.Conn) error {
		if err := expect(r, "STARTTLS"); err != nil {
			return err
		}
		if _, err := w.Write([]byte("OK STARTTLS\n")); err != nil {
			return err
		}
		// The client aborts the handshake: an error here is expected.
		_ = tls.Server(w, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
		return nil
	})
	_, err := nut.Dial(context.Background(), addr, nut.Options{TLS: nut.TLSRequire, TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}})
	if err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("err = %v, want a TLS handshake failure", err)
	}
}

// Malformed answers are errors, never panics or hangs; a cancelled
// context ends a read at once.
func TestMalformedAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
	}{
		{"no begin", "VAR ups1 a \"1\"\nEND LIST VAR ups1\n"},
		{"other ups", "BEGIN LIST VAR ups1\nVAR ups2 a \"1\"\nEND LIST VAR ups1\n"},
		{"unterminated quote", "BEGIN LIST VAR ups1\nVAR ups1 a \"1\nEND LIST VAR ups1\n"},
		{"missing value", "BEGIN LIST VAR ups1\nVAR ups1 a\nEND LIST VAR ups1\n"},
		{"closed early", "BEGIN LIST VAR ups1\nVAR ups1 a \"1\"\n"},
		{"huge line", "BEGIN LIST VAR ups1\nVAR ups1 a \"" + strings.Repeat("x", 10000) + "\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeUpsd(t, func(r *bufio.Reader, w net.Conn) error {
				if err := expect(r, "LIST VAR ups1"); err != nil {
					return err
				}
				_, err := w.Write([]byte(tc.answer))
				return err // and hang up
			})
			c, err := nut.Dial(context.Background(), addr, nut.Options{Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if vars, err := c.ListVars(context.Background(), "ups1"); err == nil {
				t.Fatalf("accepted %q: %v", tc.answer, vars)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		addr := fakeUpsd(t, func(r *bufio.Reader, w net.Conn) error {
			_, _ = r.ReadString('\n')
			_, _ = r.ReadString('\n') // never answers; waits for the close
			return nil
		})
		c, err := nut.Dial(context.Background(), addr, nut.Options{Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := c.ListVars(ctx, "ups1"); errc <- err }()
		cancel()
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("no error after cancel")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("cancel did not end the read")
		}
		c.Close()
	})
}

// Whatever upsd (or something pretending to be it) answers, the client
// returns a result or an error: no panic, no hang.
func FuzzAnswers(f *testing.F) {
	for _, s := range []string{
		"BEGIN LIST VAR ups1\nVAR ups1 ups.status \"OL\"\nEND LIST VAR ups1\n",
		"ERR DATA-STALE\n",
		"BEGIN LIST UPS\nUPS ups1 \"desc\"\nEND LIST UPS\n",
		"VAR ups1 ups.status \"OB \\\"x\\\"\"\n",
		"BEGIN LIST VAR ups1\n\x00\xff\nEND LIST VAR ups1\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, answer string) {
		for _, call := range []func(c *nut.Client) error{
			func(c *nut.Client) error { _, err := c.ListVars(context.Background(), "ups1"); return err },
			func(c *nut.Client) error { _, err := c.GetVar(context.Background(), "ups1", "ups.status"); return err },
			func(c *nut.Client) error { _, err := c.ListUPS(context.Background()); return err },
		} {
			client, server := net.Pipe()
			go func() {
				r := bufio.NewReader(server)
				if _, err := r.ReadString('\n'); err == nil {
					server.Write([]byte(answer))
				}
				server.Close()
			}()
			_ = call(nut.NewClient(client, 2*time.Second))
			client.Close()
		}
	})
}

// STARTTLS against Debian's real upsd with a certificate: require with
// the CA verifies it, auto encrypts, a foreign CA fails, off stays plain.
func TestStartTLSAgainstUpsd(t *testing.T) {
	srv := testenv.NUTWithTLS(t, testenv.NUTUnit{Name: "alpha", Dump: []byte(dump)})
	pemData, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatal("no certificate in the CA file")
	}
	_, foreign := selfSigned(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		opts    nut.Options
		wantTLS bool
		fail    bool
	}{
		{"require, verified", nut.Options{TLS: nut.TLSRequire, TLSConfig: &tls.Config{RootCAs: pool}, Username: srv.Username, Password: srv.Password}, true, false},
		{"auto", nut.Options{TLS: nut.TLSAuto}, true, false},
		{"off", nut.Options{TLS: nut.TLSOff}, false, false},
		{"require, foreign CA", nut.Options{TLS: nut.TLSRequire, TLSConfig: &tls.Config{RootCAs: foreign}}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := nut.Dial(ctx, srv.Addr, tc.opts)
			if tc.fail {
				if err == nil {
					c.Close()
					t.Fatal("connected")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.TLS() != tc.wantTLS {
				t.Errorf("TLS = %v, want %v", c.TLS(), tc.wantTLS)
			}
			if v, err := c.GetVar(ctx, "alpha", "ups.status"); err != nil || v != "OL" {
				t.Errorf("GET VAR = %q, %v", v, err)
			}
			if vars, err := c.ListVars(ctx, "alpha"); err != nil || len(vars) < 5 {
				t.Errorf("LIST VAR = %d vars, %v", len(vars), err)
			}
		})
	}
}
