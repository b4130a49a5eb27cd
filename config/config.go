// Package config loads upswatch's configuration: built-in defaults, then a
// YAML file, then UPSWATCH_* environment variables, then validation.
//
// Every key has exactly one environment variable: UPSWATCH_ + the key
// upper-cased with dots as underscores (mqtt.url -> UPSWATCH_MQTT_URL).
// The mapping is derived from the yaml tags below, so a new key gets its
// variable for free.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/internal/yamlenv"
)

// DefaultPath is read when --config is not given and the file exists.
const DefaultPath = "configs/upswatch.yaml"

// EnvPrefix starts every environment variable upswatch reads.
const EnvPrefix = "UPSWATCH_"

// Config is the whole configuration of `upswatch serve`.
type Config struct {
	// DataDir holds the embedded NATS store, the SQLite history, the
	// generated admin token and ingest credentials.
	DataDir string `yaml:"data_dir"`
	// AdminToken authorises the admin API. Empty: generated on first
	// start into DataDir/admin.token and printed once.
	AdminToken string `yaml:"admin_token"`
	// MemoryLimit is serve's soft memory limit for the Go runtime (heap,
	// goroutine stacks and the runtime's own, not what SQLite allocates
	// outside the Go heap), in bytes with an
	// optional unit: 400MiB, 1GiB, 500MB. Near it the garbage collector
	// runs sooner and returns freed memory to the system sooner; it is
	// soft (live memory above it is kept, at the cost of collections one
	// after another). Empty: 90 % of the memory limit of serve's cgroup
	// (a container), if it has one; 0: none. GOMEMLIMIT in the
	// environment, when set, wins.
	MemoryLimit string   `yaml:"memory_limit"`
	Log         Log      `yaml:"log"`
	HTTP        HTTP     `yaml:"http"`
	MQTT        MQTT     `yaml:"mqtt"`
	NATS        NATS     `yaml:"nats"`
	Ingest      Ingest   `yaml:"ingest"`
	Store       Store    `yaml:"store"`
	Influx      Influx   `yaml:"influx"`
	Notify      Notify   `yaml:"notify"`
	Rules       Rules    `yaml:"rules"`
	Keys        Keyring  `yaml:"keys"`
	Products    Products `yaml:"products"`
	Report      Report   `yaml:"report"`
}

// Keyring locates the keyring that seals personal data at rest.
type Keyring struct {
	// File is the keyring file (JSON, mode 0600). Empty:
	// DataDir/keyring.json, generated on first start. The environment
	// variable UPSWATCH_KEYS, when set, holds the whole keyring instead
	// (see keyring.FromEnv) and File is not read. With NATS.URL set the
	// instances share the accounts: File or UPSWATCH_KEYS is required and
	// never generated.
	File string `yaml:"file"`
}

// Products locates the product catalog registrations are checked against.
type Products struct {
	// File is the catalog. Empty: configs/products.yaml when it exists,
	// else none (registrations by owners then check the serial's form
	// only).
	File string `yaml:"file"`
}

// Report configures what is sent of the power reports.
type Report struct {
	// Weekly sends each account a summary of its fleet's last week
	// (package report/weekly) on Monday at WeeklyAt in its time zone,
	// unless the account opted out (preferences.weekly_report_off).
	Weekly bool `yaml:"weekly"`
	// WeeklyAt is that time, "HH:MM".
	WeeklyAt string `yaml:"weekly_at"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// HTTP configures the API, health and metrics server.
type HTTP struct {
	Addr string `yaml:"addr"`
	// RatePerSecond and RateBurst limit the requests of each bearer token
	// (429 with Retry-After beyond them); 0 turns the limit off.
	RatePerSecond float64 `yaml:"rate_per_second"`
	RateBurst     int     `yaml:"rate_burst"`
	// CertFile and KeyFile (PEM), when set, make Addr serve HTTPS. They
	// are read again when they change (no restart for a renewal).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// MQTT configures the device-facing broker and the ingest's client.
type MQTT struct {
	// Listen is the embedded broker's TCP address, used when URL is empty.
	Listen string `yaml:"listen"`
	// URL of an external broker (tcp://, ssl://, ws://, wss://). Empty:
	// run the embedded broker.
	URL string `yaml:"url"`
	// Username and Password of the ingest on an external broker. With the
	// embedded broker they are generated into the data dir.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// ClientID of the ingest; it keeps a persistent session, so a restart
	// receives what the broker queued meanwhile. Default upswatch-<host>.
	ClientID string `yaml:"client_id"`
	// TopicPrefix is the first topic level: {prefix}/{serial}/telemetry.
	TopicPrefix string `yaml:"topic_prefix"`
	// SharedGroup, when set, subscribes through $share/<group>/... so
	// several instances split the devices' messages.
	SharedGroup string `yaml:"shared_group"`
	// MaxPendingWrites bounds the embedded broker's per-client outbound
	// queue; past it the broker drops QoS 1 messages (counted in
	// upswatch_mqtt_broker_dropped_total). Devices receive nothing and
	// the ingest takes their messages, wills included, before the broker
	// routes them, so the queue carries next to nothing; it is allocated
	// for every connected client (8 bytes a slot).
	MaxPendingWrites int `yaml:"max_pending_writes"`
	// DeviceRate (messages/s) and DeviceBurst bound one device's publishing
	// on the embedded broker, so a misbehaving unit cannot crowd out the
	// others. Messages over the budget are not acked (the device keeps and
	// retries them) and are counted. 0 disables the limit.
	DeviceRate  float64 `yaml:"device_rate"`
	DeviceBurst int     `yaml:"device_burst"`
	// CertFile and KeyFile (PEM), when set, start the embedded broker's
	// MQTT-over-TLS listener on TLSListen, and make WSListen use TLS.
	// They are read again when they change.
	CertFile  string `yaml:"cert_file"`
	KeyFile   string `yaml:"key_file"`
	TLSListen string `yaml:"tls_listen"`
	// WSListen serves MQTT over WebSocket (wss:// with CertFile); empty:
	// off.
	WSListen string `yaml:"ws_listen"`
	// ClientCA is a PEM bundle of the CAs that sign device certificates;
	// DeviceAuth says how devices authenticate: password, certificate,
	// or either (a certificate when the device presents one).
	ClientCA   string `yaml:"client_ca"`
	DeviceAuth string `yaml:"device_auth"`
	// Failed CONNECTs allowed per unit (username) and per source address
	// before further attempts are refused unchecked; one comes back per
	// ConnectFailureRefill (per address four times as fast). 0 turns the
	// limit off.
	ConnectFailuresPerUnit    int           `yaml:"connect_failures_per_unit"`
	ConnectFailuresPerAddress int           `yaml:"connect_failures_per_address"`
	ConnectFailureRefill      time.Duration `yaml:"connect_failure_refill"`
}

// NATS configures the bus.
type NATS struct {
	// URL of an external NATS cluster. Empty: run NATS in-process with
	// JetStream under DataDir/nats.
	URL string `yaml:"url"`
	// Credentials file for an external NATS (.creds), optional.
	CredsFile string `yaml:"creds_file"`
	// Listen makes the embedded server also accept TCP clients (for the
	// nats CLI); empty: in-process only.
	Listen string `yaml:"listen"`
	// Partitions of the readings stream, fixed for the stream's life. 0
	// (the default) takes the existing stream's count, or creates it with
	// bus.DefaultPartitions (4); a count that differs from the stream's
	// is refused at start.
	Partitions int `yaml:"partitions"`
	// Replicas of the streams and buckets on an external cluster.
	Replicas int `yaml:"replicas"`
	// StreamMaxAge and StreamMaxBytes bound the readings stream. When
	// full, new readings are refused (the ingest stops acking devices and
	// the broker queues) instead of old ones being discarded unread.
	StreamMaxAge   time.Duration `yaml:"stream_max_age"`
	StreamMaxBytes int64         `yaml:"stream_max_bytes"`
}

// Ingest configures MQTT -> bus.
type Ingest struct {
	// BatchSize readings per bus message at most.
	BatchSize int `yaml:"batch_size"`
	// FlushInterval: a partition's batch is published at the latest this
	// long after its first reading.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxInflight MQTT messages received but not yet stored on the bus.
	MaxInflight int `yaml:"max_inflight"`
	// MaxPayloadBytes: larger payloads are rejected as oversized.
	MaxPayloadBytes int `yaml:"max_payload_bytes"`
	// MaxReadings per payload (a JSON array replay).
	MaxReadings int `yaml:"max_readings"`
	// MaxFuture: a ts this far ahead of receipt is rejected.
	MaxFuture time.Duration `yaml:"max_future"`
}

// Store configures the embedded history store.
type Store struct {
	// Retention of readings in the embedded store; 0 keeps them forever.
	// With InfluxDB the bucket's own retention period applies instead
	// (serve says so at start).
	Retention time.Duration `yaml:"retention"`
}

// Rules configures the rule engine.
type Rules struct {
	// File is the alert catalog (thresholds, pending periods, overrides
	// per site and unit). Empty: configs/rules.yaml when it exists, else
	// the built-in catalog (which that file documents).
	File string `yaml:"file"`
}

// Influx selects InfluxDB as the history store when URL is set. Bucket
// is a 2.x bucket name (default "upswatch"); on 1.8 through its v2 API it
// is "database/retention-policy", or the database alone for its default
// policy, so the default also names database upswatch there.
type Influx struct {
	URL       string        `yaml:"url"`
	Token     string        `yaml:"token"`
	Org       string        `yaml:"org"`
	Bucket    string        `yaml:"bucket"`
	BatchSize int           `yaml:"batch_size"`
	Timeout   time.Duration `yaml:"timeout"`
}

// Notify configures the notifier (FCM, APNS, SMS). A provider whose
// identifying key is empty (fcm.project_id, apns.key_file, sms.account_sid)
// is off; with every provider off the notifier logs what it would send.
type Notify struct {
	FCM  NotifyFCM  `yaml:"fcm"`
	APNS NotifyAPNS `yaml:"apns"`
	SMS  NotifySMS  `yaml:"sms"`
	// TemplatesDir holds en.yaml, vi.yaml... overriding the built-in
	// message templates; empty: built-in only.
	TemplatesDir string `yaml:"templates_dir"`
	// ExpireAfter: a notification not delivered this long after its alert
	// is dropped (recorded as failed) rather than shown late.
	ExpireAfter time.Duration `yaml:"expire_after"`
	Retry       NotifyRetry   `yaml:"retry"`
}

// NotifyFCM configures Firebase Cloud Messaging.
type NotifyFCM struct {
	ProjectID string `yaml:"project_id"`
	// CredentialsFile is a service account JSON key; empty: Application
	// Default Credentials, or none at all with Endpoint (fakes only).
	CredentialsFile string `yaml:"credentials_file"`
	// Endpoint of an FCM-compatible server; empty: Google's.
	Endpoint string `yaml:"endpoint"`
	// ParallelBatches: SendEach calls (500 messages each) in flight.
	ParallelBatches int `yaml:"parallel_batches"`
}

// NotifyAPNS configures the Apple Push Notification service.
type NotifyAPNS struct {
	// KeyFile is the .p8 token-auth key.
	KeyFile string `yaml:"key_file"`
	KeyID   string `yaml:"key_id"`
	TeamID  string `yaml:"team_id"`
	// Topic is the app's bundle id.
	Topic string `yaml:"topic"`
	// Endpoint: empty means production (https://api.push.apple.com).
	Endpoint string `yaml:"endpoint"`
	// CAFile is trusted instead of the system roots (staging, fakes).
	CAFile string `yaml:"ca_file"`
}

// NotifySMS configures a Twilio-compatible SMS API.
type NotifySMS struct {
	// Endpoint: empty means https://api.twilio.com.
	Endpoint   string `yaml:"endpoint"`
	AccountSID string `yaml:"account_sid"`
	AuthToken  string `yaml:"auth_token"`
	// From is the sender number (E.164) or alphanumeric id; several,
	// comma separated, each with its own rate budget.
	From string `yaml:"from"`
	// SegmentsPerSecond each sender may send, and its burst.
	SegmentsPerSecond float64 `yaml:"segments_per_second"`
	Burst             int     `yaml:"burst"`
}

// NotifyRetry configures the backoff of transient provider failures.
type NotifyRetry struct {
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	// MaxAttempts per notification; 0: until notify.expire_after.
	MaxAttempts int `yaml:"max_attempts"`
}

// Default returns the built-in defaults: everything embedded, on loopback.
func Default() Config {
	return Config{
		DataDir: "./data",
		Log:     Log{Level: "info", Format: "text"},
		HTTP:    HTTP{Addr: "127.0.0.1:8080", RatePerSecond: 20, RateBurst: 100},
		MQTT: MQTT{
			Listen:           "127.0.0.1:1883",
			TopicPrefix:      "ups",
			MaxPendingWrites: 32,
			DeviceRate:       20,
			DeviceBurst:      200,
			TLSListen:        ":8883",
			DeviceAuth:       "password",

			ConnectFailuresPerUnit:    10,
			ConnectFailuresPerAddress: 100,
			ConnectFailureRefill:      time.Minute,
		},
		NATS: NATS{
			Replicas:       1,
			StreamMaxAge:   7 * 24 * time.Hour,
			StreamMaxBytes: 4 << 30,
		},
		Ingest: Ingest{
			BatchSize:       500,
			FlushInterval:   50 * time.Millisecond,
			MaxInflight:     4096,
			MaxPayloadBytes: 1 << 20,
			MaxReadings:     10000,
			MaxFuture:       time.Hour,
		},
		Store:  Store{Retention: 400 * 24 * time.Hour},
		Influx: Influx{Bucket: "upswatch", BatchSize: 5000, Timeout: 10 * time.Second},
		Notify: Notify{
			FCM:         NotifyFCM{ParallelBatches: 4},
			SMS:         NotifySMS{SegmentsPerSecond: 1, Burst: 1},
			ExpireAfter: time.Hour,
			Retry:       NotifyRetry{InitialBackoff: time.Second, MaxBackoff: 5 * time.Minute},
		},
		Report: Report{Weekly: true, WeeklyAt: "08:00"},
	}
}

// Load builds the configuration: defaults, then the YAML file at path
// (DefaultPath if path is empty and that file exists), then the
// environment (lookup is os.LookupEnv in production), then Validate.
func Load(path string, lookup func(string) (string, bool)) (Config, error) {
	c := Default()
	explicit := path != ""
	if !explicit {
		path = DefaultPath
	}
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
	return c, c.Validate()
}

// KeysEnv, when set, holds the whole keyring (see keyring.FromEnv) in
// place of keys.file. It is a secret with no key in the file, the one
// variable outside the one-key-one-variable scheme.
const KeysEnv = EnvPrefix + "KEYS"

// EnvOnly lists the environment variables that have no configuration key,
// each with what it holds (for `upswatch config keys`).
func EnvOnly() [][2]string {
	return [][2]string{{KeysEnv, "the whole keyring, in place of keys.file; environment only"}}
}

// envScheme is the one-key-one-variable scheme (internal/yamlenv, shared with
// the agent).
var envScheme = yamlenv.Scheme{Prefix: EnvPrefix}

// Keys lists every configuration key with its environment variable, in
// declaration order (for `upswatch config keys` and the docs).
func Keys() [][2]string { return envScheme.Keys(reflect.TypeOf(Config{})) }

// EnvName is the environment variable of a key.
func EnvName(key string) string { return envScheme.Name(key) }

// Validate checks every key and reports all problems at once, each naming
// its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if !oneOf(c.Log.Format, "text", "json") {
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	if n, err := ParseBytes(c.MemoryLimit); err != nil {
		bad("memory_limit", "%v", err)
	} else if n != 0 && n < 64<<20 {
		bad("memory_limit", "must be 0 (none) or at least 64MiB, got %q", c.MemoryLimit)
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("admin_token", "must be at least 16 characters (or empty to generate one)")
	}
	checkHostPort(bad, "http.addr", c.HTTP.Addr)
	checkPair(bad, "http", c.HTTP.CertFile, c.HTTP.KeyFile)
	if c.MQTT.URL == "" {
		checkHostPort(bad, "mqtt.listen", c.MQTT.Listen)
		c.MQTT.validateTLS(bad)
		if c.MQTT.MaxPendingWrites < 8 || c.MQTT.MaxPendingWrites > 1<<20 {
			bad("mqtt.max_pending_writes", "must be between 8 and 1048576, got %d", c.MQTT.MaxPendingWrites)
		}
		if c.MQTT.DeviceRate < 0 {
			bad("mqtt.device_rate", "must be 0 (no limit) or positive, got %g", c.MQTT.DeviceRate)
		}
		if c.MQTT.DeviceRate > 0 && c.MQTT.DeviceBurst < 1 {
			bad("mqtt.device_burst", "must be at least 1 with mqtt.device_rate, got %d", c.MQTT.DeviceBurst)
		}
	} else {
		checkURL(bad, "mqtt.url", c.MQTT.URL, "tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss")
		if c.MQTT.Username == "" {
			bad("mqtt.username", "is required with mqtt.url (the ingest's account on the external broker)")
		}
	}
	if c.MQTT.TopicPrefix == "" || strings.ContainsAny(c.MQTT.TopicPrefix, "+#") {
		bad("mqtt.topic_prefix", "must be a non-empty topic without wildcards, got %q", c.MQTT.TopicPrefix)
	}
	if strings.ContainsAny(c.MQTT.SharedGroup, "/+#") {
		bad("mqtt.shared_group", "must not contain / + or #, got %q", c.MQTT.SharedGroup)
	}
	if c.NATS.URL != "" {
		checkURL(bad, "nats.url", strings.Split(c.NATS.URL, ",")[0], "nats", "tls", "ws", "wss")
	}
	if c.NATS.Listen != "" {
		checkHostPort(bad, "nats.listen", c.NATS.Listen)
	}
	if c.NATS.Partitions < 0 || c.NATS.Partitions > 1024 {
		bad("nats.partitions", "must be between 1 and 1024 (or 0: the stream's own, 4 for a new one), got %d", c.NATS.Partitions)
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		bad("nats.replicas", "must be between 1 and 5, got %d", c.NATS.Replicas)
	}
	if c.NATS.StreamMaxAge < time.Minute {
		bad("nats.stream_max_age", "must be at least 1m, got %s", c.NATS.StreamMaxAge)
	}
	if c.NATS.StreamMaxBytes < 1<<20 {
		bad("nats.stream_max_bytes", "must be at least 1048576, got %d", c.NATS.StreamMaxBytes)
	}
	if c.Ingest.BatchSize < 1 || c.Ingest.BatchSize > 10000 {
		bad("ingest.batch_size", "must be between 1 and 10000, got %d", c.Ingest.BatchSize)
	}
	if c.Ingest.FlushInterval <= 0 || c.Ingest.FlushInterval > 10*time.Second {
		bad("ingest.flush_interval", "must be between 1ns and 10s, got %s", c.Ingest.FlushInterval)
	}
	if c.Ingest.MaxInflight < 1 || c.Ingest.MaxInflight > 65535 {
		bad("ingest.max_inflight", "must be between 1 and 65535, got %d", c.Ingest.MaxInflight)
	}
	if c.Ingest.MaxPayloadBytes < 1024 || c.Ingest.MaxPayloadBytes > 64<<20 {
		bad("ingest.max_payload_bytes", "must be between 1024 and 67108864, got %d", c.Ingest.MaxPayloadBytes)
	}
	if c.Ingest.MaxReadings < 1 {
		bad("ingest.max_readings", "must be at least 1, got %d", c.Ingest.MaxReadings)
	}
	if c.Ingest.MaxFuture < 0 {
		bad("ingest.max_future", "must not be negative, got %s", c.Ingest.MaxFuture)
	}
	if c.Store.Retention < 0 || (c.Store.Retention > 0 && c.Store.Retention < time.Hour) {
		bad("store.retention", "must be 0 (keep forever) or at least 1h, got %s", c.Store.Retention)
	}
	if c.Influx.URL != "" {
		checkURL(bad, "influx.url", c.Influx.URL, "http", "https")
		if c.Influx.Bucket == "" {
			bad("influx.bucket", "is required with influx.url")
		}
		if c.Influx.BatchSize < 1 {
			bad("influx.batch_size", "must be at least 1, got %d", c.Influx.BatchSize)
		}
		if c.Influx.Timeout <= 0 {
			bad("influx.timeout", "must be positive, got %s", c.Influx.Timeout)
		}
	}
	c.Notify.validate(bad)
	if !clock.MatchString(c.Report.WeeklyAt) {
		bad("report.weekly_at", "must be a time of day HH:MM, got %q", c.Report.WeeklyAt)
	}
	return errors.Join(errs...)
}

var (
	clock    = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	e164     = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	senderID = regexp.MustCompile(`^[A-Za-z0-9 ]{1,11}$`)
)

func (n *Notify) validate(bad func(string, string, ...any)) {
	if n.FCM.ProjectID == "" && (n.FCM.CredentialsFile != "" || n.FCM.Endpoint != "") {
		bad("notify.fcm.project_id", "is required with notify.fcm.credentials_file or notify.fcm.endpoint")
	}
	if n.FCM.Endpoint != "" {
		checkURL(bad, "notify.fcm.endpoint", n.FCM.Endpoint, "https", "http")
	}
	if n.FCM.ParallelBatches < 1 || n.FCM.ParallelBatches > 64 {
		bad("notify.fcm.parallel_batches", "must be between 1 and 64, got %d", n.FCM.ParallelBatches)
	}
	a := n.APNS
	if a.KeyFile != "" {
		for _, f := range []struct{ key, v string }{{"key_id", a.KeyID}, {"team_id", a.TeamID}, {"topic", a.Topic}} {
			if f.v == "" {
				bad("notify.apns."+f.key, "is required with notify.apns.key_file")
			}
		}
	} else if a.KeyID != "" || a.TeamID != "" || a.Topic != "" || a.Endpoint != "" || a.CAFile != "" {
		bad("notify.apns.key_file", "is required with the other notify.apns keys (the .p8 token-auth key)")
	}
	if a.Endpoint != "" {
		checkURL(bad, "notify.apns.endpoint", a.Endpoint, "https")
	}
	s := n.SMS
	if s.AccountSID != "" {
		if s.AuthToken == "" {
			bad("notify.sms.auth_token", "is required with notify.sms.account_sid")
		}
		if s.From == "" {
			bad("notify.sms.from", "is required with notify.sms.account_sid")
		}
		for _, f := range strings.Split(s.From, ",") {
			if f = strings.TrimSpace(f); f != "" && !e164.MatchString(f) && !senderID.MatchString(f) {
				bad("notify.sms.from", "each sender must be an E.164 number (+84901234567) or an alphanumeric id of up to 11 characters, got %q", f)
			}
		}
	} else if s.AuthToken != "" || s.From != "" || s.Endpoint != "" {
		bad("notify.sms.account_sid", "is required with the other notify.sms keys")
	}
	if s.Endpoint != "" {
		checkURL(bad, "notify.sms.endpoint", s.Endpoint, "https", "http")
	}
	if s.SegmentsPerSecond <= 0 || s.SegmentsPerSecond > 10000 {
		bad("notify.sms.segments_per_second", "must be above 0 and at most 10000, got %g", s.SegmentsPerSecond)
	}
	if s.Burst < 1 {
		bad("notify.sms.burst", "must be at least 1, got %d", s.Burst)
	}
	if n.ExpireAfter < time.Minute {
		bad("notify.expire_after", "must be at least 1m, got %s", n.ExpireAfter)
	}
	if n.Retry.InitialBackoff <= 0 {
		bad("notify.retry.initial_backoff", "must be positive, got %s", n.Retry.InitialBackoff)
	}
	if n.Retry.MaxBackoff < n.Retry.InitialBackoff {
		bad("notify.retry.max_backoff", "must be at least notify.retry.initial_backoff, got %s", n.Retry.MaxBackoff)
	}
	if n.Retry.MaxAttempts < 0 {
		bad("notify.retry.max_attempts", "must be 0 (until notify.expire_after) or positive, got %d", n.Retry.MaxAttempts)
	}
}

func (m *MQTT) validateTLS(bad func(string, string, ...any)) {
	checkPair(bad, "mqtt", m.CertFile, m.KeyFile)
	if m.CertFile != "" {
		checkHostPort(bad, "mqtt.tls_listen", m.TLSListen)
	}
	if m.WSListen != "" {
		checkHostPort(bad, "mqtt.ws_listen", m.WSListen)
	}
	if m.ClientCA != "" && m.CertFile == "" {
		bad("mqtt.client_ca", "needs mqtt.cert_file and mqtt.key_file (device certificates travel over TLS)")
	}
	switch m.DeviceAuth {
	case "password":
	case "certificate", "either":
		if m.ClientCA == "" {
			bad("mqtt.device_auth", "%s needs mqtt.client_ca (the CAs that sign device certificates)", m.DeviceAuth)
		}
	default:
		bad("mqtt.device_auth", "must be password, certificate or either, got %q", m.DeviceAuth)
	}
	if m.ConnectFailuresPerUnit < 0 || m.ConnectFailuresPerAddress < 0 {
		bad("mqtt.connect_failures_per_unit", "and mqtt.connect_failures_per_address must be 0 (no limit) or positive")
	}
	if (m.ConnectFailuresPerUnit > 0) != (m.ConnectFailuresPerAddress > 0) {
		bad("mqtt.connect_failures_per_address", "must be set with mqtt.connect_failures_per_unit (both 0 turns the limit off)")
	}
	if m.ConnectFailuresPerUnit > 0 && m.ConnectFailureRefill < time.Second {
		bad("mqtt.connect_failure_refill", "must be at least 1s, got %s", m.ConnectFailureRefill)
	}
}

// checkPair: a certificate file and its key come together.
func checkPair(bad func(string, string, ...any), section, cert, key string) {
	if (cert == "") != (key == "") {
		bad(section+".cert_file", "and %s.key_file must be set together", section)
	}
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}

// MemoryLimitBytes is MemoryLimit in bytes (0: none); the configuration
// is valid.
func (c *Config) MemoryLimitBytes() int64 {
	n, _ := ParseBytes(c.MemoryLimit)
	return n
}

// byteUnits are the units ParseBytes takes, as GOMEMLIMIT does, plus the
// decimal ones.
var byteUnits = map[string]int64{
	"": 1, "B": 1,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

// ParseBytes reads a size such as 400MiB, 1GiB, 500MB or 1048576 ("" is
// 0).
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	unit, ok := byteUnits[strings.TrimSpace(s[i:])]
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if !ok || err != nil || n > (1<<62)/unit {
		return 0, fmt.Errorf("must be a size like 400MiB, 1GiB or 500MB, got %q", s)
	}
	return n * unit, nil
}

func checkHostPort(bad func(string, string, ...any), key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		bad(key, "must be host:port, got %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad(key, "port must be 0-65535, got %q", port)
	}
}

func checkURL(bad func(string, string, ...any), key, raw string, schemes ...string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		bad(key, "must be a URL like %s://host:port, got %q", schemes[0], redact(raw))
		return
	}
	if !oneOf(u.Scheme, schemes...) {
		bad(key, "scheme must be one of %s, got %q", strings.Join(schemes, ", "), u.Scheme)
	}
}

// redact hides userinfo so an error never prints a password.
func redact(raw string) string {
	if i := strings.Index(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			return raw[:j+3] + "***" + raw[i:]
		}
	}
	return raw
}
