package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The Telegraf the comparison runs: the release and the plugins the issue
// names, built from source (a prebuilt download is not possible here, and
// a binary on PATH could be any version with any plugins).
const (
	telegrafVersion = "v1.37.2"
	telegrafPkg     = "github.com/influxdata/telegraf/cmd/telegraf"
	telegrafTags    = "custom,inputs.mqtt_consumer,outputs.influxdb_v2,parsers.json_v2"
)

// telegrafBinary returns <tools>/telegraf-<version>, building it first
// when missing (about 90 s and a few hundred MB of module downloads the
// first time). The version in the name makes a version bump rebuild it.
func telegrafBinary(ctx context.Context, root string) (string, error) {
	dir := toolsDir(root)
	bin := filepath.Join(dir, "telegraf-"+telegrafVersion)
	if fi, err := os.Stat(bin); err == nil && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("tools dir: %w", err)
	}
	build, err := os.MkdirTemp(dir, "build.")
	if err != nil {
		return "", fmt.Errorf("telegraf build dir: %w", err)
	}
	defer os.RemoveAll(build)
	fmt.Printf("building telegraf %s into %s (about 90 s, once)...\n", telegrafVersion, dir)
	t := time.Now()
	cmd := exec.CommandContext(ctx, "go", "install", "-tags", telegrafTags, telegrafPkg+"@"+telegrafVersion)
	// Outside this module, with no workspace or flags of ours: a foreign
	// main package at a version builds on its own go.mod.
	cmd.Dir = build
	cmd.Env = append(os.Environ(), "GOBIN="+build, "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install telegraf %s: %w\n%s", telegrafVersion, err, out)
	}
	// Rename is atomic: a concurrent run never sees half a binary.
	if err := os.Rename(filepath.Join(build, "telegraf"), bin); err != nil {
		return "", fmt.Errorf("install telegraf: %w", err)
	}
	fmt.Printf("built telegraf in %v\n", time.Since(t).Round(time.Second))
	return bin, nil
}

// telegrafConfig is the comparison the issue names: mqtt_consumer with
// json_v2 into influxdb_v2, QoS 1, batches of 5000, on the same broker
// and InfluxDB (database "telegraf") as serve. The serial comes from the
// topic; every payload key but ts becomes a field.
func telegrafConfig(m *mosquitto, inf *influx) string {
	q := strconv.Quote
	return `[agent]
  interval = "10s"
  flush_interval = "1s"
  flush_jitter = "0s"
  metric_batch_size = 5000
  metric_buffer_limit = 1000000
  omit_hostname = true
  quiet = false

[[inputs.mqtt_consumer]]
  servers = [` + q(m.url) + `]
  topics = ["ups/+/telemetry"]
  qos = 1
  client_id = "telegraf-bench"
  persistent_session = true
  username = ` + q(m.telegraf.Username) + `
  password = ` + q(m.telegraf.Password) + `
  max_undelivered_messages = 5000
  data_format = "json_v2"

  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "ups/+/telemetry"
    tags = "_/serial/_"

  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "ups_reading"
    timestamp_path = "ts"
    timestamp_format = "unix_ms"
    [[inputs.mqtt_consumer.json_v2.object]]
      path = "@this"
      excluded_keys = ["ts"]

[[outputs.influxdb_v2]]
  urls = [` + q(inf.url) + `]
  token = ""
  organization = ""
  bucket = "telegraf/autogen"
`
}

func runTelegraf(ctx context.Context, o options, telegraf, bin, dir string, m *mosquitto, inf *influx, credsFile string) (result, error) {
	conf := filepath.Join(dir, "telegraf.conf")
	if err := os.WriteFile(conf, []byte(telegrafConfig(m, inf)), 0o600); err != nil {
		return result{}, err
	}
	logPath := filepath.Join(dir, "telegraf.log")
	p, err := startProc("telegraf", dir, logPath, nil, nil, telegraf, "--config", conf)
	if err != nil {
		return result{}, err
	}
	defer p.stop(30 * time.Second)
	// Telegraf logs "Connected [tcp://...]" once subscribed.
	err = waitFor(ctx, p, 60*time.Second, func() error {
		data, _ := os.ReadFile(logPath)
		if strings.Contains(string(data), "Connected") {
			return nil
		}
		return errors.New("mqtt_consumer not connected yet")
	})
	if err != nil {
		return result{}, err
	}
	version, _ := os.ReadFile(logPath)
	if i := strings.Index(string(version), "Starting Telegraf"); i >= 0 {
		line, _, _ := strings.Cut(string(version[i:]), "\n")
		fmt.Printf("telegraf: %s\n", strings.TrimSpace(line))
	}
	ld := load{
		name: "telegraf + mosquitto + influxdb 1.8", kind: kindTelegraf, bin: bin, dir: dir, broker: m.url,
		credsFile: credsFile, units: o.units, count: o.count, rate: o.rate, timeout: o.timeout,
		consumer: p, others: []*proc{m.p, inf.p},
		stored: func() (int64, error) {
			n, err := inf.query("telegraf", `SELECT count("ups.status") FROM "ups_reading"`)
			return int64(n), err
		},
	}
	fmt.Printf("run: %s (%d units x %d readings)\n", ld.name, o.units, o.count)
	return ld.run(ctx)
}
