package testenv

import (
	"encoding/csv"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func TestInfluxdWriteAndFluxQuery(t *testing.T) {
	inf := Influxd(t)

	write := func(t *testing.T, line string) {
		t.Helper()
		u := inf.URL + "/api/v2/write?" + url.Values{"bucket": {inf.Bucket}, "org": {inf.Org}, "precision": {"ms"}}.Encode()
		resp, err := http.Post(u, "text/plain; charset=utf-8", strings.NewReader(line))
		if err != nil {
			t.Fatalf("write: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("write: %s: %s", resp.Status, body)
		}
	}
	query := func(t *testing.T, flux string) [][]string {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, inf.URL+"/api/v2/query?org="+inf.Org, strings.NewReader(flux))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/vnd.flux")
		req.Header.Set("Accept", "application/csv")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("query: %s: %s", resp.Status, body)
		}
		r := csv.NewReader(strings.NewReader(string(body)))
		r.FieldsPerRecord = -1
		rows, err := r.ReadAll()
		if err != nil {
			t.Fatalf("query csv: %v\n%s", err, body)
		}
		return rows
	}

	write(t, "ups_reading,serial=123456789012 battery.charge=87.5 1764000000000")
	rows := query(t, `from(bucket: "`+inf.Bucket+`")
  |> range(start: 2025-11-24T00:00:00Z, stop: 2025-11-25T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "ups_reading" and r.serial == "123456789012")`)
	v := csvColumn(t, rows, "_value")
	if len(v) != 1 || v[0] != "87.5" {
		t.Fatalf("_value column = %q, want [87.5]; rows %q", v, rows)
	}
	if f := csvColumn(t, rows, "_field"); len(f) != 1 || f[0] != "battery.charge" {
		t.Fatalf("_field column = %q, want [battery.charge]", f)
	}

	// An outage and recovery keep port and data.
	inf.Stop()
	if _, err := http.Get(inf.URL + "/ping"); err == nil {
		t.Fatal("ping succeeded while influxd is stopped")
	}
	inf.Start()
	if v := csvColumn(t, query(t, `from(bucket: "`+inf.Bucket+`") |> range(start: 2025-11-24T00:00:00Z, stop: 2025-11-25T00:00:00Z)`), "_value"); len(v) != 1 || v[0] != "87.5" {
		t.Fatalf("after restart _value = %q, want [87.5]", v)
	}
}

// csvColumn returns the values of a column in Flux's annotated CSV,
// skipping annotation rows and repeated headers.
func csvColumn(t *testing.T, rows [][]string, name string) []string {
	t.Helper()
	var out []string
	col := -1
	for _, row := range rows {
		if len(row) == 0 || (len(row) == 1 && row[0] == "") || strings.HasPrefix(row[0], "#") {
			col = -1
			continue
		}
		if col < 0 {
			for i, c := range row {
				if c == name {
					col = i
				}
			}
			if col < 0 {
				t.Fatalf("no column %q in %q", name, row)
			}
			continue
		}
		out = append(out, row[col])
	}
	return out
}

const (
	serialA = "123456789012"
	serialB = "1234567890123456"
)

func TestMosquittoAuthAndACL(t *testing.T) {
	b := Mosquitto(t, MosquittoOptions{
		Devices: []Credential{{serialA, "pw-a"}, {serialB, "pw-b"}},
		Ingest:  Credential{"upswatch", "pw-ingest"},
	})
	checkBroker(t, b, serialA, "pw-a", serialB, Credential{"upswatch", "pw-ingest"}, "ups/#")
}

// TestProductionMosquittoConfig runs configs/mosquitto.conf and its ACL,
// with only paths and the port rewritten, and checks the ACL does what
// its comments say, shared subscriptions included.
func TestProductionMosquittoConfig(t *testing.T) {
	root := RepoRoot(t)
	conf, err := os.ReadFile(filepath.Join(root, "configs", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	acl, err := os.ReadFile(filepath.Join(root, "configs", "mosquitto.acl"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	aclPath := filepath.Join(dir, "upswatch.acl")
	if err := os.WriteFile(aclPath, acl, 0o600); err != nil {
		t.Fatal(err)
	}
	pwPath := filepath.Join(dir, "upswatch.passwd")
	if err := WritePasswordFile(pwPath, []Credential{{serialA, "pw-a"}, {serialB, "pw-b"}, {"upswatch", "pw-ingest"}}); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	rewrite := func(port int) string {
		seen := map[string]bool{}
		var out strings.Builder
		for line := range strings.Lines(string(conf)) {
			key, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch key {
			case "listener":
				line = "listener " + itoa(port) + " 127.0.0.1\n"
			case "password_file":
				line = "password_file " + pwPath + "\n"
			case "acl_file":
				line = "acl_file " + aclPath + "\n"
			case "persistence_location":
				line = "persistence_location " + dataDir + "/\n"
			case "log_dest":
				line = "log_dest stderr\n"
			}
			seen[key] = true
			out.WriteString(line)
		}
		for _, k := range []string{"listener", "allow_anonymous", "password_file", "acl_file", "max_queued_messages", "persistence"} {
			if !seen[k] {
				t.Errorf("configs/mosquitto.conf has no %s line", k)
			}
		}
		out.WriteString(runAsUser())
		return out.String()
	}
	b := startMosquitto(t, MosquittoBinary(t), dir, rewrite)
	checkBroker(t, b, serialA, "pw-a", serialB, Credential{"upswatch", "pw-ingest"}, "$share/upswatch/ups/+/telemetry")

	// Persistence on: a clean stop writes the database.
	b.Stop()
	entries, err := os.ReadDir(dataDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("persistence dir after stop: %v entries, err %v; log:\n%s", len(entries), err, b.Log())
	}
}

// checkBroker checks, against a running broker: anonymous clients and
// wrong passwords are refused; the ingest user receives a device's
// message on its own topic; a message the device publishes under another
// serial never reaches the ingest.
func checkBroker(t *testing.T, b *Broker, device, password, other string, ingest Credential, filter string) {
	t.Helper()
	for _, c := range []struct {
		name string
		cred Credential
	}{
		{"anonymous", Credential{}},
		{"wrong password", Credential{device, "nope"}},
		{"unknown user", Credential{"999999999999", password}},
	} {
		if err := wantRefused(b, c.cred); err != nil {
			t.Errorf("%s client: %v", c.name, err)
		}
	}

	sub := connect(t, b, "ingest", ingest)
	got := make(chan mqtt.Message, 16)
	if tok := sub.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}

	dev := connect(t, b, "dev", Credential{device, password})
	// QoS 1 from one client is delivered in order: when the allowed
	// message arrives, the forbidden one before it would have arrived
	// first had the broker let it through.
	for _, m := range []struct{ topic, payload string }{
		{"ups/" + other + "/telemetry", "forged"},
		{"ups/" + device + "/telemetry", "own"},
	} {
		if tok := dev.Publish(m.topic, 1, false, m.payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", m.topic, tok.Error())
		}
	}
	select {
	case m := <-got:
		if m.Topic() != "ups/"+device+"/telemetry" || string(m.Payload()) != "own" {
			t.Fatalf("ingest received %s %q, want the device's own message only", m.Topic(), m.Payload())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ingest received nothing; broker log:\n%s", b.Log())
	}
}

func clientOptions(b *Broker, id string, c Credential) *mqtt.ClientOptions {
	return mqtt.NewClientOptions().
		AddBroker(b.URL).
		SetClientID(id).
		SetUsername(c.Username).
		SetPassword(c.Password).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second)
}

// wantRefused returns nil when the broker refuses c's connection.
func wantRefused(b *Broker, c Credential) error {
	cl := mqtt.NewClient(clientOptions(b, "refused", c))
	tok := cl.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("no CONNACK within 10s")
	}
	if tok.Error() != nil {
		return nil
	}
	cl.Disconnect(0)
	return errors.New("connected, want refused")
}

func connect(t *testing.T, b *Broker, id string, c Credential) mqtt.Client {
	t.Helper()
	cl := mqtt.NewClient(clientOptions(b, id, c))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+itoa(p))
	if err != nil {
		t.Fatalf("FreePort = %d, cannot listen on it: %v", p, err)
	}
	l.Close()
}
