package testenv

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Credential is an MQTT username and password.
type Credential struct {
	Username string
	Password string
}

// MosquittoOptions configures Mosquitto.
type MosquittoOptions struct {
	// Prefix is the telemetry topic root; "ups" when empty.
	Prefix string
	// Devices may each publish only under <Prefix>/<Username>/#, as the
	// production ACL binds a device's serial to its credentials.
	Devices []Credential
	// Ingest, when its Username is set, may subscribe to <Prefix>/#.
	Ingest Credential
	// Persistence keeps sessions and queued messages across Stop/Start.
	Persistence bool
	// MaxQueuedMessages per client; 100000 when zero. Mosquitto's default
	// of 1000 silently drops QoS 1 messages for a slow subscriber.
	MaxQueuedMessages int
}

// Broker is a running mosquitto broker.
type Broker struct {
	URL  string // tcp://127.0.0.1:port
	Addr string // 127.0.0.1:port

	t    testing.TB
	proc *process
}

// MosquittoBinary returns the path of mosquitto, failing the test when it
// is not installed: `make deps` installs it.
func MosquittoBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	// Debian installs it in /usr/sbin, often not on a user's PATH.
	if isExecutable("/usr/sbin/mosquitto") {
		return "/usr/sbin/mosquitto"
	}
	t.Fatal("testenv: mosquitto not found on PATH nor in /usr/sbin; run `make deps` (scripts/deps.sh) to install it")
	return ""
}

// Mosquitto starts a broker on 127.0.0.1 with password and ACL files
// built from opts; anonymous clients are refused. It is stopped when the
// test ends.
func Mosquitto(t testing.TB, opts MosquittoOptions) *Broker {
	t.Helper()
	bin := MosquittoBinary(t)
	dir := t.TempDir()
	if opts.Prefix == "" {
		opts.Prefix = "ups"
	}
	if opts.MaxQueuedMessages == 0 {
		opts.MaxQueuedMessages = 100000
	}
	users := append([]Credential(nil), opts.Devices...)
	var acl strings.Builder
	for _, d := range opts.Devices {
		fmt.Fprintf(&acl, "user %s\ntopic write %s/%s/#\n\n", d.Username, opts.Prefix, d.Username)
	}
	if opts.Ingest.Username != "" {
		users = append(users, opts.Ingest)
		fmt.Fprintf(&acl, "user %s\ntopic read %s/#\n\n", opts.Ingest.Username, opts.Prefix)
	}
	pwPath := filepath.Join(dir, "passwd")
	if err := WritePasswordFile(pwPath, users); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	aclPath := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclPath, []byte(acl.String()), 0o600); err != nil {
		t.Fatalf("testenv: write acl: %v", err)
	}
	persistence := "persistence false\n"
	if opts.Persistence {
		persistence = "persistence true\npersistence_location " + filepath.Join(dir, "data") + "/\n"
		if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	conf := func(port int) string {
		return "listener " + itoa(port) + " 127.0.0.1\n" +
			"allow_anonymous false\n" +
			"password_file " + pwPath + "\n" +
			"acl_file " + aclPath + "\n" +
			"max_queued_messages " + itoa(opts.MaxQueuedMessages) + "\n" +
			persistence +
			"log_dest stderr\n" +
			"log_type error\nlog_type warning\nlog_type notice\n" +
			runAsUser()
	}
	return startMosquitto(t, bin, dir, conf)
}

// runAsUser keeps mosquitto as the current user. Run as root it would
// switch to the "mosquitto" user, which cannot read t.TempDir().
func runAsUser() string {
	if os.Geteuid() == 0 {
		return "user root\n"
	}
	return ""
}

// startMosquitto writes conf(port) into dir and starts mosquitto with it,
// trying new ports when one was taken meanwhile.
func startMosquitto(t testing.TB, bin, dir string, conf func(port int) string) *Broker {
	t.Helper()
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		confPath := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(confPath, []byte(conf(port)), 0o600); err != nil {
			t.Fatalf("testenv: write mosquitto.conf: %v", err)
		}
		addr := "127.0.0.1:" + itoa(port)
		m := &Broker{
			URL:  "tcp://" + addr,
			Addr: addr,
			t:    t,
			proc: &process{
				name:    "mosquitto",
				args:    []string{bin, "-c", confPath},
				logPath: filepath.Join(dir, "mosquitto.log"),
			},
		}
		if lastErr = m.start(); lastErr == nil {
			t.Cleanup(m.Kill)
			return m
		}
		if !errAddrInUse(lastErr.Error()) {
			break
		}
	}
	t.Fatalf("testenv: %v", lastErr)
	return nil
}

func (m *Broker) start() error {
	if err := m.proc.start(); err != nil {
		return err
	}
	// Mosquitto reads its password and ACL files before it listens, so an
	// accepted TCP connection means it is ready for clients.
	err := m.proc.waitReady(10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", m.Addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		_ = m.proc.stop(os.Kill, time.Second)
		return fmt.Errorf("%w\nmosquitto log:\n%s", err, m.proc.logTail())
	}
	return nil
}

// Stop shuts the broker down cleanly (saving its persistence file when
// enabled), keeping its port for Start.
func (m *Broker) Stop() {
	m.t.Helper()
	if err := m.proc.stop(sigterm, 10*time.Second); err != nil {
		m.t.Fatalf("testenv: stop mosquitto: %v", err)
	}
}

// Start starts a stopped broker again on the same port and files.
func (m *Broker) Start() {
	m.t.Helper()
	if err := m.start(); err != nil {
		m.t.Fatalf("testenv: restart mosquitto: %v", err)
	}
}

// Kill stops the broker abruptly (SIGKILL), as a crash would.
func (m *Broker) Kill() {
	_ = m.proc.stop(os.Kill, 0)
}

// Log returns the broker's log so far.
func (m *Broker) Log() string {
	data, _ := os.ReadFile(m.proc.logPath)
	return string(data)
}

// WritePasswordFile writes a mosquitto password file in the format
// mosquitto_passwd produces for mosquitto 2.x:
//
//	username:$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512 hash>
//
// Writing it directly avoids one mosquitto_passwd process per user.
func WritePasswordFile(path string, users []Credential) error {
	var b strings.Builder
	for _, u := range users {
		if u.Username == "" || strings.ContainsAny(u.Username, ":\n") {
			return fmt.Errorf("password file: invalid username %q", u.Username)
		}
		line, err := passwordLine(u)
		if err != nil {
			return err
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write password file: %w", err)
	}
	return nil
}

// mosquitto_passwd's defaults: 101 iterations, 12-byte salt, a hash as
// long as SHA-512's output.
const (
	pwIterations = 101
	pwSaltLen    = 12
)

func passwordLine(u Credential) (string, error) {
	salt := make([]byte, pwSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	hash, err := pbkdf2.Key(sha512.New, u.Password, salt, pwIterations, sha512.Size)
	if err != nil {
		return "", fmt.Errorf("password hash: %w", err)
	}
	enc := base64.StdEncoding
	return fmt.Sprintf("%s:$7$%d$%s$%s", u.Username, pwIterations, enc.EncodeToString(salt), enc.EncodeToString(hash)), nil
}
