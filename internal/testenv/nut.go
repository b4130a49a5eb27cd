package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// NUT binaries from Debian's nut-server and nut-client (scripts/deps.sh).
const (
	nutUpsd     = "/lib/nut/upsd"
	nutDummyUPS = "/lib/nut/dummy-ups"
)

// NUTUnit is one dummy UPS: its name on upsd and the `upsc`-style dump
// (name: value lines) dummy-ups serves.
type NUTUnit struct {
	Name string
	Dump []byte
}

// NUTServer is a real upsd with one dummy-ups driver per unit, on
// 127.0.0.1, with its own NUT_CONFPATH and NUT_STATEPATH.
type NUTServer struct {
	Addr     string // 127.0.0.1:port
	Username string // an upsd user allowed to SET variables
	Password string
	// CAFile is the PEM of upsd's self-signed certificate when it offers
	// STARTTLS (NUTWithTLS), else empty.
	CAFile string

	t       testing.TB
	confDir string
	env     []string
	upsd    *process
	drivers map[string]*process
	mu      sync.Mutex
}

// HaveNUT reports whether upsd, dummy-ups and upsrw are installed.
func HaveNUT() bool {
	_, err := exec.LookPath("upsrw")
	return isExecutable(nutUpsd) && isExecutable(nutDummyUPS) && err == nil
}

// RequireNUT fails the test when NUT is missing: `make deps` installs it.
func RequireNUT(t testing.TB) {
	t.Helper()
	if !HaveNUT() {
		t.Fatal("testenv: NUT not found (" + nutUpsd + ", " + nutDummyUPS + ", upsrw); run `make deps` (scripts/deps.sh) to install nut-server and nut-client")
	}
}

// NUT starts upsd serving units, each through its own dummy-ups, and
// waits until every unit answers with data. Everything stops when the
// test ends.
func NUT(t testing.TB, units ...NUTUnit) *NUTServer {
	t.Helper()
	return startNUT(t, false, units)
}

// NUTWithTLS is NUT with upsd offering STARTTLS, with a self-signed
// certificate for 127.0.0.1 in an NSS database (Debian's upsd is built
// with NSS; certutil comes from libnss3-tools). CAFile verifies it.
func NUTWithTLS(t testing.TB, units ...NUTUnit) *NUTServer {
	t.Helper()
	return startNUT(t, true, units)
}

// nssCertDB creates an NSS database in dir holding a self-signed
// certificate "upsd" for 127.0.0.1 and writes its PEM to caFile.
func nssCertDB(dir, caFile string) error {
	if _, err := exec.LookPath("certutil"); err != nil {
		return errors.New("certutil not found; run `make deps` (scripts/deps.sh) to install libnss3-tools")
	}
	db := "sql:" + dir
	noise := filepath.Join(dir, "noise")
	if err := os.WriteFile(noise, []byte(fmt.Sprint(time.Now().UnixNano(), os.Getpid(), dir)), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command("certutil", "-N", "-d", db, "--empty-password").CombinedOutput(); err != nil {
		return fmt.Errorf("certutil -N: %v: %s", err, out)
	}
	cmd := exec.Command("certutil", "-S", "-n", "upsd", "-s", "CN=127.0.0.1", "-x", "-t", "CT,C,C", "-d", db,
		"-z", noise, "-v", "12", "--keyUsage", "digitalSignature,keyEncipherment,certSigning",
		"-2", "--extSAN", "ip:127.0.0.1")
	// -2 asks: a CA certificate? path length? critical?
	cmd.Stdin = strings.NewReader("y\n0\nn\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("certutil -S: %v: %s", err, out)
	}
	pem, err := exec.Command("certutil", "-L", "-n", "upsd", "-d", db, "-a").Output()
	if err != nil {
		return fmt.Errorf("certutil -L: %w", err)
	}
	return os.WriteFile(caFile, pem, 0o600)
}

func startNUT(t testing.TB, withTLS bool, units []NUTUnit) *NUTServer {
	t.Helper()
	RequireNUT(t)
	dir := t.TempDir()
	n := &NUTServer{
		Username: "admin", Password: "upsd-test-secret",
		t: t, confDir: filepath.Join(dir, "conf"), drivers: map[string]*process{},
	}
	stateDir := filepath.Join(dir, "state")
	for _, d := range []string{n.confDir, stateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	n.env = []string{"NUT_CONFPATH=" + n.confDir, "NUT_STATEPATH=" + stateDir}
	var ups strings.Builder
	for _, u := range units {
		if err := os.WriteFile(filepath.Join(n.confDir, u.Name+".dev"), u.Dump, 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&ups, "[%s]\n\tdriver = dummy-ups\n\tport = %s.dev\n\tdesc = \"test unit %s\"\n", u.Name, u.Name, u.Name)
	}
	files := map[string]string{
		"nut.conf":   "MODE=standalone\n",
		"ups.conf":   ups.String(),
		"upsd.users": fmt.Sprintf("[%s]\n\tpassword = %s\n\tactions = SET\n\tinstcmds = ALL\n", n.Username, n.Password),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(n.confDir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(n.stopAll)
	// Drivers first, all at once: each takes a moment to come up.
	for _, u := range units {
		p := &process{name: "dummy-ups " + u.Name, args: n.cmd(nutDummyUPS, "-F", "-a", u.Name), logPath: filepath.Join(dir, "dummy-ups-"+u.Name+".log")}
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		n.drivers[u.Name] = p
	}
	tlsConf := ""
	if withTLS {
		certDir := filepath.Join(dir, "certdb")
		if err := os.MkdirAll(certDir, 0o700); err != nil {
			t.Fatal(err)
		}
		n.CAFile = filepath.Join(dir, "upsd-ca.pem")
		if err := nssCertDB(certDir, n.CAFile); err != nil {
			t.Fatalf("testenv: upsd certificate: %v", err)
		}
		tlsConf = "CERTPATH " + certDir + "\nCERTIDENT \"upsd\" \"\"\n"
	}
	var err error
	for range 5 {
		port := FreePort(t)
		n.Addr = net.JoinHostPort("127.0.0.1", itoa(port))
		upsdConf := "LISTEN 127.0.0.1 " + itoa(port) + "\nMAXAGE 15\n" + tlsConf
		if err = os.WriteFile(filepath.Join(n.confDir, "upsd.conf"), []byte(upsdConf), 0o600); err != nil {
			t.Fatal(err)
		}
		n.upsd = &process{name: "upsd", args: n.cmd(nutUpsd, "-F"), logPath: filepath.Join(dir, "upsd.log")}
		if err = n.StartUPSD(); err == nil || !errAddrInUse(n.upsd.logTail()) {
			break
		}
	}
	if err != nil {
		t.Fatalf("testenv: %v\nupsd log:\n%s", err, n.upsd.logTail())
	}
	for _, u := range units {
		if err := n.WaitData(u.Name, 30*time.Second); err != nil {
			t.Fatalf("testenv: %v\ndriver log:\n%s\nupsd log:\n%s", err, n.drivers[u.Name].logTail(), n.upsd.logTail())
		}
	}
	return n
}

func (n *NUTServer) cmd(bin string, args ...string) []string {
	// env(1) sets the NUT paths and execs the server in place, so signals
	// reach it directly.
	out := append([]string{"/usr/bin/env"}, n.env...)
	out = append(out, bin)
	out = append(out, args...)
	if os.Geteuid() == 0 {
		// As root NUT would switch to its own user, which cannot read the
		// test's temporary dirs.
		out = append(out, "-u", "root")
	}
	return out
}

// StartUPSD starts upsd (again, after StopUPSD) and waits until it
// accepts connections.
func (n *NUTServer) StartUPSD() error {
	if err := n.upsd.start(); err != nil {
		return err
	}
	return n.upsd.waitReady(15*time.Second, func() error {
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// StopUPSD stops upsd (SIGTERM); the drivers keep running.
func (n *NUTServer) StopUPSD() error { return n.upsd.stop(sigterm, 5*time.Second) }

// WaitData waits until upsd serves data for ups (driver connected, dump
// loaded, not stale).
func (n *NUTServer) WaitData(ups string, within time.Duration) error {
	end := time.Now().Add(within)
	var last error
	for time.Now().Before(end) {
		if last = n.loaded(ups); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("upsd has no data for %s after %v: %w", ups, within, last)
}

// loaded lists the unit's variables on a fresh connection: an ERR, or a
// status of WAIT (dummy-ups has not parsed its dump yet), is not loaded.
func (n *NUTServer) loaded(ups string) error {
	c, err := net.DialTimeout("tcp", n.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("LIST VAR " + ups + "\n")); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	vars := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "ERR"):
			return errors.New(line)
		case strings.HasPrefix(line, "END LIST"):
			if vars == 0 {
				return errors.New("no variables yet")
			}
			return nil
		case strings.HasPrefix(line, "VAR "):
			vars++
			if strings.Contains(line, " ups.status \"WAIT\"") {
				return errors.New("driver still starting: " + line)
			}
		}
	}
}

// Set changes a variable of a dummy UPS with upsrw, as an operator would
// script a power event: Set(t, "ups1", "ups.status", "OB DISCHRG").
func (n *NUTServer) Set(t testing.TB, ups, name, value string) {
	t.Helper()
	out, err := exec.Command("upsrw", "-s", name+"="+value, "-u", n.Username, "-p", n.Password, ups+"@"+n.Addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("upsrw -s %s=%s %s: %v: %s", name, value, ups, err, out)
	}
}

// WaitVar waits until upsd reports value for a variable: upsrw's OK means
// upsd passed the change on to the driver, which applies it a moment
// later.
func (n *NUTServer) WaitVar(t testing.TB, ups, name, value string) {
	t.Helper()
	want := fmt.Sprintf("VAR %s %s %q", ups, name, value)
	var got string
	end := time.Now().Add(15 * time.Second)
	for time.Now().Before(end) {
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Write([]byte("GET VAR " + ups + " " + name + "\n"))
			if err == nil {
				got, err = bufio.NewReader(c).ReadString('\n')
				got = strings.TrimSpace(got)
			}
			c.Close()
			if err == nil && got == want {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("upsd does not report %s=%q for %s within 15s (last answer %q)", name, value, ups, got)
}

// StopDriver stops one unit's dummy-ups: upsd then reports its data
// stale or the driver not connected.
func (n *NUTServer) StopDriver(ups string) error {
	n.mu.Lock()
	p := n.drivers[ups]
	n.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no driver %s", ups)
	}
	return p.stop(sigterm, 5*time.Second)
}

func (n *NUTServer) stopAll() {
	_ = n.upsd.stop(sigterm, 5*time.Second)
	for _, p := range n.drivers {
		_ = p.stop(sigterm, 5*time.Second)
	}
}
