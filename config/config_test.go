package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "upswatch.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsWithoutFile(t *testing.T) {
	t.Chdir(t.TempDir()) // no configs/upswatch.yaml here
	c, err := Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Addr != "127.0.0.1:8080" || c.MQTT.Listen != "127.0.0.1:1883" || c.DataDir != "./data" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestFileThenEnv(t *testing.T) {
	p := writeFile(t, "data_dir: /var/lib/upswatch\nmqtt:\n  url: tcp://broker:1883\n  username: ingest\nnats:\n  partitions: 8\ningest:\n  flush_interval: 20ms\n")
	c, err := Load(p, env(map[string]string{
		"UPSWATCH_NATS_PARTITIONS":   "32",
		"UPSWATCH_HTTP_ADDR":         "0.0.0.0:9000",
		"UPSWATCH_STORE_RETENTION":   "720h",
		"UPSWATCH_INFLUX_URL":        "http://127.0.0.1:8086",
		"UPSWATCH_MQTT_SHARED_GROUP": "upswatch",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/upswatch" || c.MQTT.URL != "tcp://broker:1883" {
		t.Fatalf("file not applied: %+v", c)
	}
	if c.NATS.Partitions != 32 || c.HTTP.Addr != "0.0.0.0:9000" || c.Store.Retention != 720*time.Hour {
		t.Fatalf("env not applied: %+v", c)
	}
	if c.Ingest.FlushInterval != 20*time.Millisecond || c.MQTT.SharedGroup != "upswatch" {
		t.Fatalf("got %+v", c)
	}
}

func TestEnvNames(t *testing.T) {
	want := map[string]string{
		"mqtt.url":    "UPSWATCH_MQTT_URL",
		"data_dir":    "UPSWATCH_DATA_DIR",
		"admin_token": "UPSWATCH_ADMIN_TOKEN",
		"influx.url":  "UPSWATCH_INFLUX_URL",
		"nats.url":    "UPSWATCH_NATS_URL",
		"mqtt.listen": "UPSWATCH_MQTT_LISTEN",
		"http.addr":   "UPSWATCH_HTTP_ADDR",
	}
	got := map[string]string{}
	for _, kv := range Keys() {
		got[kv[0]] = kv[1]
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("env for %s = %q, want %q", k, got[k], v)
		}
	}
}

// Each bad configuration gets an error naming its key and the problem.
func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want string
	}{
		{"unknown key", "mqtt:\n  urll: tcp://x:1\n", nil, "field urll not found"},
		{"bad yaml", "mqtt: [\n", nil, "config "},
		{"bad http addr", "http:\n  addr: localhost\n", nil, `config: http.addr: must be host:port, got "localhost"`},
		{"bad mqtt scheme", "mqtt:\n  url: http://b:1883\n  username: u\n", nil, `config: mqtt.url: scheme must be one of tcp, ssl, tls, mqtt, mqtts, ws, wss, got "http"`},
		{"external mqtt needs user", "mqtt:\n  url: tcp://b:1883\n", nil, "config: mqtt.username: is required with mqtt.url"},
		{"partitions", "", map[string]string{"UPSWATCH_NATS_PARTITIONS": "-1"}, "config: nats.partitions: must be between 1 and 1024 (or 0: the stream's own, 4 for a new one), got -1"},
		{"memory limit unit", "memory_limit: 400M\n", nil, `config: memory_limit: must be a size like 400MiB, 1GiB or 500MB, got "400M"`},
		{"memory limit small", "", map[string]string{"UPSWATCH_MEMORY_LIMIT": "1MiB"}, `config: memory_limit: must be 0 (none) or at least 64MiB, got "1MiB"`},
		{"max pending writes", "mqtt:\n  max_pending_writes: 4\n", nil, "config: mqtt.max_pending_writes: must be between 8 and 1048576, got 4"},
		{"env not int", "", map[string]string{"UPSWATCH_NATS_PARTITIONS": "many"}, `config: nats.partitions (from UPSWATCH_NATS_PARTITIONS): not an integer: "many"`},
		{"env not duration", "", map[string]string{"UPSWATCH_INGEST_FLUSH_INTERVAL": "5"}, `config: ingest.flush_interval (from UPSWATCH_INGEST_FLUSH_INTERVAL): not a duration like 10s or 5m: "5"`},
		{"short admin token", "admin_token: abc\n", nil, "config: admin_token: must be at least 16 characters"},
		{"log level", "log:\n  level: loud\n", nil, `config: log.level: must be debug, info, warn or error, got "loud"`},
		{"influx url", "influx:\n  url: influx:8086\n", nil, "config: influx.url: "},
		{"url password not echoed", "nats:\n  url: nats://user:secret@\n", nil, "nats://***@"},
		{"retention", "store:\n  retention: 5m\n", nil, "config: store.retention: must be 0 (keep forever) or at least 1h, got 5m0s"},
		{"shared group", "mqtt:\n  shared_group: a/b\n", nil, "config: mqtt.shared_group: must not contain"},
		{"fcm endpoint needs project", "notify:\n  fcm:\n    endpoint: http://127.0.0.1:1\n", nil, "config: notify.fcm.project_id: is required with notify.fcm.credentials_file or notify.fcm.endpoint"},
		{"fcm endpoint scheme", "notify:\n  fcm:\n    project_id: p\n    endpoint: ftp://x:1\n", nil, `config: notify.fcm.endpoint: scheme must be one of https, http, got "ftp"`},
		{"apns needs key id", "notify:\n  apns:\n    key_file: k.p8\n    team_id: T\n    topic: com.x\n", nil, "config: notify.apns.key_id: is required with notify.apns.key_file"},
		{"apns needs key file", "notify:\n  apns:\n    topic: com.x\n", nil, "config: notify.apns.key_file: is required with the other notify.apns keys"},
		{"apns endpoint https", "notify:\n  apns:\n    key_file: k\n    key_id: K\n    team_id: T\n    topic: t\n    endpoint: http://x:1\n", nil, `config: notify.apns.endpoint: scheme must be one of https, got "http"`},
		{"sms needs token", "notify:\n  sms:\n    account_sid: AC1\n    from: \"+15550001111\"\n", nil, "config: notify.sms.auth_token: is required with notify.sms.account_sid"},
		{"sms bad from", "notify:\n  sms:\n    account_sid: AC1\n    auth_token: secret\n    from: \"+1555,0084901234567\"\n", nil, `config: notify.sms.from: each sender must be an E.164 number (+84901234567) or an alphanumeric id of up to 11 characters, got "0084901234567"`},
		{"sms rate", "", map[string]string{"UPSWATCH_NOTIFY_SMS_SEGMENTS_PER_SECOND": "0"}, "config: notify.sms.segments_per_second: must be above 0 and at most 10000, got 0"},
		{"expire", "notify:\n  expire_after: 10s\n", nil, "config: notify.expire_after: must be at least 1m, got 10s"},
		{"http cert without key", "http:\n  cert_file: c.pem\n", nil, "config: http.cert_file: and http.key_file must be set together"},
		{"mqtt key without cert", "", map[string]string{"UPSWATCH_MQTT_KEY_FILE": "k.pem"}, "config: mqtt.cert_file: and mqtt.key_file must be set together"},
		{"tls listen", "mqtt:\n  cert_file: c\n  key_file: k\n  tls_listen: 8883\n", nil, `config: mqtt.tls_listen: must be host:port, got "8883"`},
		{"client ca needs tls", "mqtt:\n  client_ca: ca.pem\n", nil, "config: mqtt.client_ca: needs mqtt.cert_file and mqtt.key_file"},
		{"device auth needs ca", "mqtt:\n  cert_file: c\n  key_file: k\n  device_auth: certificate\n", nil, "config: mqtt.device_auth: certificate needs mqtt.client_ca"},
		{"device auth value", "", map[string]string{"UPSWATCH_MQTT_DEVICE_AUTH": "token"}, `config: mqtt.device_auth: must be password, certificate or either, got "token"`},
		{"failure limits together", "mqtt:\n  connect_failures_per_unit: 0\n", nil, "config: mqtt.connect_failures_per_address: must be set with mqtt.connect_failures_per_unit"},
		{"weekly at", "", map[string]string{"UPSWATCH_REPORT_WEEKLY_AT": "8am"}, `config: report.weekly_at: must be a time of day HH:MM, got "8am"`},
		{"backoff order", "notify:\n  retry:\n    initial_backoff: 1m\n    max_backoff: 1s\n", nil, "config: notify.retry.max_backoff: must be at least notify.retry.initial_backoff, got 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tt.yaml), env(tt.env))
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q\nwant it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error leaks a password: %q", err)
			}
		})
	}
}

func TestMissingExplicitFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v", err)
	}
}

// The sample file documents the defaults: it must parse and change nothing.
func TestSampleConfigIsTheDefaults(t *testing.T) {
	c, err := Load("../configs/upswatch.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c != Default() {
		t.Fatalf("configs/upswatch.yaml differs from Default():\n got %+v\nwant %+v", c, Default())
	}
}

func TestNotifyProvidersValid(t *testing.T) {
	body := `notify:
  fcm:
    project_id: upswatch-prod
    endpoint: http://127.0.0.1:9099
  apns:
    key_file: /etc/upswatch/AuthKey.p8
    key_id: ABC123DEFG
    team_id: TEAM123456
    topic: com.example.upswatch
  sms:
    account_sid: AC123
    auth_token: tok
    from: "+15550001111, UPSWATCH"
    segments_per_second: 10
`
	c, err := Load(writeFile(t, body), env(map[string]string{"UPSWATCH_NOTIFY_SMS_BURST": "5"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Notify.SMS.Burst != 5 || c.Notify.SMS.SegmentsPerSecond != 10 || c.Notify.APNS.Topic != "com.example.upswatch" {
		t.Fatalf("notify = %+v", c.Notify)
	}
}

// memory_limit takes GOMEMLIMIT's units and the decimal ones.
func TestMemoryLimitBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "400MiB": 400 << 20, "1GiB": 1 << 30, "500MB": 500e6,
		"1073741824": 1 << 30, " 2 GiB ": 2 << 30} {
		c := Default()
		c.MemoryLimit = in
		if err := c.Validate(); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got := c.MemoryLimitBytes(); got != want {
			t.Errorf("%q: %d bytes, want %d", in, got, want)
		}
	}
}
