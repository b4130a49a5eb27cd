// Package config loads upswatch-agent's configuration: built-in
// defaults, then a YAML file, then UPSWATCH_AGENT_* environment
// variables, then validation that names every bad key.
//
// Every scalar key has one environment variable: UPSWATCH_AGENT_ + the
// key upper-cased with dots as underscores (broker.url ->
// UPSWATCH_AGENT_BROKER_URL). The units list is one variable,
// UPSWATCH_AGENT_UNITS, holding the list in YAML (flow style works:
// `[{ups: myups, serial: "123456789012", password: ...}]`).
package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/upswatch/upswatch/internal/yamlenv"
)

// DefaultPath is read when --config is not given.
const DefaultPath = "/etc/upswatch/agent.yaml"

// EnvPrefix starts every environment variable the agent reads.
const EnvPrefix = "UPSWATCH_AGENT_"

// Config is the whole configuration of upswatch-agent.
type Config struct {
	Broker Broker `yaml:"broker"`
	NUT    NUT    `yaml:"nut"`
	// Poll is how often upsd is read; a change of ups.status is published
	// at the next poll.
	Poll time.Duration `yaml:"poll"`
	// Interval is how often the full reading is published when nothing
	// changes.
	Interval time.Duration `yaml:"interval"`
	// StaleAfter failed or stale polls in a row make a unit `offline`.
	StaleAfter int    `yaml:"stale_after"`
	Buffer     Buffer `yaml:"buffer"`
	Log        Log    `yaml:"log"`
	// API is upswatch's HTTP API, used by `register`.
	API   string `yaml:"api"`
	Units []Unit `yaml:"units"`
}

// Broker is the MQTT broker of upswatch.
type Broker struct {
	// URL: tcp://host:1883, or ssl://host:8883 (also tls://, mqtts://).
	URL string `yaml:"url"`
	// CAFile verifies the broker's certificate (PEM); empty: the system
	// roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile (PEM) are the client certificate every unit
	// without its own presents over TLS: the broker takes a unit whose
	// serial is the certificate's CN or one of its DNS names. They are
	// read at each connection, so a renewed pair needs no restart.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// TopicPrefix is the first topic level: {prefix}/{serial}/telemetry.
	TopicPrefix string `yaml:"topic_prefix"`
	// AckTimeout: a publish not acknowledged within it goes to the
	// buffer (the broker "stopped acknowledging").
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// ReconnectMax caps the wait between reconnection attempts.
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// KeepAlive of the MQTT connection: the broker declares the agent
	// dead (and publishes its last will) after 1.5 times this.
	KeepAlive time.Duration `yaml:"keepalive"`
}

// NUT is the upsd the agent reads.
type NUT struct {
	Addr     string `yaml:"addr"`
	Username string `yaml:"username"`
	// Password of the upsd user (never logged).
	Password string `yaml:"password"`
	// TLS: off, auto (STARTTLS when upsd offers it) or require.
	TLS string `yaml:"tls"`
	// CAFile verifies upsd's certificate with STARTTLS.
	CAFile string `yaml:"ca_file"`
}

// Buffer bounds the on-disk store-and-forward buffer: one directory per
// unit (Dir/<serial>), each bounded by MaxBytes and MaxAge.
type Buffer struct {
	Dir      string        `yaml:"dir"`
	MaxBytes int64         `yaml:"max_bytes"`
	MaxAge   time.Duration `yaml:"max_age"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Unit is one UPS on upsd and its identity at upswatch.
type Unit struct {
	// UPS is the UPS's name on upsd (as in `upsc NAME@host`).
	UPS string `yaml:"ups"`
	// Serial at upswatch (12 or 16 digits). Empty: the UPS's own
	// ups.serial or device.serial when that has 12 or 16 digits.
	Serial string `yaml:"serial"`
	// Password of the unit's MQTT account, from registration; optional
	// when the unit has a client certificate.
	Password string `yaml:"password"`
	// CertFile and KeyFile: the unit's own client certificate (see
	// Broker.CertFile), in place of the broker's.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Certificate returns the client certificate and key files unit u
// presents: its own, else the broker section's ("" when none).
func (c *Config) Certificate(u Unit) (certFile, keyFile string) {
	if u.CertFile != "" || u.KeyFile != "" {
		return u.CertFile, u.KeyFile
	}
	return c.Broker.CertFile, c.Broker.KeyFile
}

// Default is the configuration with no file and no environment.
func Default() Config {
	return Config{
		Broker: Broker{URL: "tcp://127.0.0.1:1883", TopicPrefix: "ups", AckTimeout: 10 * time.Second,
			ReconnectMax: 30 * time.Second, KeepAlive: 30 * time.Second},
		NUT:        NUT{Addr: "127.0.0.1:3493", TLS: "auto"},
		Poll:       2 * time.Second,
		Interval:   30 * time.Second,
		StaleAfter: 3,
		Buffer:     Buffer{Dir: "./agent-buffer", MaxBytes: 64 << 20, MaxAge: 168 * time.Hour},
		Log:        Log{Level: "info", Format: "text"},
	}
}

// Read builds the configuration from defaults, the YAML file at path
// (required when explicit is true; else read when it exists) and the
// environment (lookup is os.LookupEnv in production), without
// validating it.
func Read(path string, explicit bool, lookup func(string) (string, bool)) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := yamlenv.Decode(data, &c); err != nil {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	case explicit || !errors.Is(err, os.ErrNotExist):
		return c, fmt.Errorf("config: %w", err)
	}
	if lookup != nil {
		if err := envScheme.Apply(&c, lookup); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Load is Read then Validate.
func Load(path string, explicit bool, lookup func(string) (string, bool)) (Config, error) {
	c, err := Read(path, explicit, lookup)
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

// envScheme is the one-key-one-variable scheme (internal/yamlenv, shared with
// the server's configuration).
var envScheme = yamlenv.Scheme{Prefix: EnvPrefix}

// EnvName is the environment variable of a key.
func EnvName(key string) string { return envScheme.Name(key) }

// Keys lists every key with its environment variable.
func Keys() [][2]string { return envScheme.Keys(reflect.TypeOf(Config{})) }

var serialRe = regexp.MustCompile(`^(\d{12}|\d{16})$`)

// ValidSerial reports whether s is a serial upswatch accepts (12 or 16
// digits). The agent keeps its own copy of the rule so that it imports
// none of the server's packages.
func ValidSerial(s string) bool { return serialRe.MatchString(s) }

// Validate checks every key and reports all problems at once, each
// naming its key.
func (c *Config) Validate() error {
	errs := c.validateCommon()
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(c.Units) == 0 {
		bad("units", "lists no UPS; add one (upswatch-agent register does it)")
	}
	seenUPS, seenSerial := map[string]bool{}, map[string]bool{}
	for i, u := range c.Units {
		key := fmt.Sprintf("units[%d]", i)
		if u.UPS == "" || strings.ContainsAny(u.UPS, " \t\"@") {
			bad(key+".ups", "must be the UPS's name on upsd (no spaces, quotes or @), got %q", u.UPS)
		} else if seenUPS[u.UPS] {
			bad(key+".ups", "%q is listed twice", u.UPS)
		}
		seenUPS[u.UPS] = true
		if u.Serial != "" {
			if !ValidSerial(u.Serial) {
				bad(key+".serial", "must be 12 or 16 digits (or empty to use the UPS's own), got %q", u.Serial)
			} else if seenSerial[u.Serial] {
				bad(key+".serial", "%s is listed twice", u.Serial)
			}
			seenSerial[u.Serial] = true
		}
		if u.CertFile != "" || u.KeyFile != "" {
			errs = append(errs, c.checkPair(key+".cert_file", key+".key_file", u.CertFile, u.KeyFile)...)
		}
		if cert, _ := c.Certificate(u); u.Password == "" && cert == "" {
			bad(key+".password", "is required unless the unit has a client certificate (%s.cert_file or broker.cert_file): "+
				"the unit's MQTT password from registration (upswatch-agent register writes it)", key)
		}
	}
	return errors.Join(errs...)
}

// ValidateConnection checks what `register` and `check` need: everything
// but the units.
func (c *Config) ValidateConnection() error { return errors.Join(c.validateCommon()...) }

func (c *Config) validateCommon() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	if u, err := url.Parse(c.Broker.URL); err != nil || u.Host == "" || !oneOf(u.Scheme, "tcp", "mqtt", "ssl", "tls", "mqtts") {
		bad("broker.url", "must be tcp://host:port or ssl://host:port (also mqtt, tls, mqtts), got %q", c.Broker.URL)
	}
	if c.Broker.CAFile != "" {
		if _, err := os.Stat(c.Broker.CAFile); err != nil {
			bad("broker.ca_file", "%v", err)
		}
	}
	if c.Broker.CertFile != "" || c.Broker.KeyFile != "" {
		errs = append(errs, c.checkPair("broker.cert_file", "broker.key_file", c.Broker.CertFile, c.Broker.KeyFile)...)
	}
	if c.Broker.TopicPrefix == "" || strings.ContainsAny(c.Broker.TopicPrefix, "+#") {
		bad("broker.topic_prefix", "must be a non-empty topic without wildcards, got %q", c.Broker.TopicPrefix)
	}
	if c.Broker.AckTimeout < 100*time.Millisecond {
		bad("broker.ack_timeout", "must be at least 100ms, got %s", c.Broker.AckTimeout)
	}
	if c.Broker.ReconnectMax < 100*time.Millisecond {
		bad("broker.reconnect_max", "must be at least 100ms, got %s", c.Broker.ReconnectMax)
	}
	if c.Broker.KeepAlive < time.Second {
		bad("broker.keepalive", "must be at least 1s, got %s", c.Broker.KeepAlive)
	}
	if _, port, err := net.SplitHostPort(c.NUT.Addr); err != nil || port == "" {
		bad("nut.addr", "must be host:port (upsd listens on 3493), got %q", c.NUT.Addr)
	}
	if !oneOf(c.NUT.TLS, "off", "auto", "require") {
		bad("nut.tls", "must be off, auto or require, got %q", c.NUT.TLS)
	}
	if c.NUT.Password != "" && c.NUT.Username == "" {
		bad("nut.username", "is required with nut.password")
	}
	if c.NUT.CAFile != "" {
		if _, err := os.Stat(c.NUT.CAFile); err != nil {
			bad("nut.ca_file", "%v", err)
		}
	}
	if c.Poll < 100*time.Millisecond || c.Poll > time.Hour {
		bad("poll", "must be between 100ms and 1h, got %s", c.Poll)
	}
	if c.Interval < c.Poll {
		bad("interval", "must be at least poll (%s), got %s", c.Poll, c.Interval)
	}
	if c.StaleAfter < 1 {
		bad("stale_after", "must be at least 1, got %d", c.StaleAfter)
	}
	if c.Buffer.Dir == "" {
		bad("buffer.dir", "must not be empty")
	}
	if c.Buffer.MaxBytes < 64<<10 {
		bad("buffer.max_bytes", "must be at least 65536, got %d", c.Buffer.MaxBytes)
	}
	if c.Buffer.MaxAge < time.Minute {
		bad("buffer.max_age", "must be at least 1m, got %s", c.Buffer.MaxAge)
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if !oneOf(c.Log.Format, "text", "json") {
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	if c.API != "" {
		if u, err := url.Parse(c.API); err != nil || u.Host == "" || !oneOf(u.Scheme, "http", "https") {
			bad("api", "must be an http:// or https:// URL, got %q", c.API)
		}
	}
	return errs
}

// tlsSchemes are the broker.url schemes of MQTT over TLS.
var tlsSchemes = []string{"ssl", "tls", "mqtts"}

// TLS reports whether the broker URL asks for TLS.
func (b Broker) TLS() bool {
	u, err := url.Parse(b.URL)
	return err == nil && oneOf(u.Scheme, tlsSchemes...)
}

// checkPair checks a client certificate and its key: both given, a
// matching PEM pair, and a TLS broker to present it to.
func (c *Config) checkPair(certKey, keyKey, certFile, keyFile string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch {
	case certFile == "":
		bad(certKey, "is required with %s", keyKey)
	case keyFile == "":
		bad(keyKey, "is required with %s", certKey)
	default:
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			bad(certKey, "not a usable certificate and key (%s): %v", keyKey, err)
		}
	}
	if !c.Broker.TLS() {
		bad(certKey, "a client certificate needs TLS: broker.url must be ssl://, tls:// or mqtts://, got %q", c.Broker.URL)
	}
	return errs
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}

// SaveUnit writes u into the YAML file at path, replacing the entry with
// the same ups (or adding one to units), keeping the file's other keys
// and comments, and leaves the file with mode 0600: it holds passwords.
// A missing file is created.
func SaveUnit(path string, u Unit) error {
	var doc yaml.Node
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return fmt.Errorf("config: %w", err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: the top level is not a mapping", path)
	}
	var units *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "units" {
			units = root.Content[i+1]
		}
	}
	if units == nil || units.Kind != yaml.SequenceNode {
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if units == nil {
			root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "units"}, seq)
		} else {
			*units = *seq // units: (null) or units: []
		}
		units = seq
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "units" {
				units = root.Content[i+1]
			}
		}
	}
	units.Style = 0 // block style, even if it was written []
	str := func(v string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Style: yaml.DoubleQuotedStyle}
	}
	entry := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: "ups"}, str(u.UPS),
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: "serial"}, str(u.Serial),
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: "password"}, str(u.Password),
	}}
	replaced := false
	for i, n := range units.Content {
		if n.Kind != yaml.MappingNode {
			continue
		}
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == "ups" && n.Content[j+1].Value == u.UPS {
				entry.HeadComment = n.HeadComment
				// Keys register does not write (cert_file, key_file) stay.
				for k := 0; k+1 < len(n.Content); k += 2 {
					if !oneOf(n.Content[k].Value, "ups", "serial", "password") {
						entry.Content = append(entry.Content, n.Content[k], n.Content[k+1])
					}
				}
				units.Content[i] = entry
				replaced = true
			}
		}
	}
	if !replaced {
		units.Content = append(units.Content, entry)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return writeFileAtomic(path, buf.Bytes())
}

// writeFileAtomic replaces path with data, mode 0600, through a
// temporary file in the same directory: a crash leaves the old file or
// the new one, never half of one.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".agent-config-*")
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("config: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
