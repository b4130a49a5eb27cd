package broker

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/ups"
)

type devices map[ups.Serial]string

func (d devices) Authenticate(s ups.Serial, pw string) bool { p, ok := d[s]; return ok && p == pw }
func (d devices) Registered(s ups.Serial) bool              { _, ok := d[s]; return ok }

func start(t *testing.T) *Broker {
	t.Helper()
	b, err := New(Options{
		Listen: "127.0.0.1:0", TopicPrefix: "ups",
		ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices:    devices{"123456789012": "pw-a", "210987654321": "pw-b"},
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func connect(t *testing.T, b *Broker, user, pass string) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(b.URL()).SetUsername(user).SetPassword(pass).
		SetClientID(fmt.Sprintf("%s-%d", user, time.Now().UnixNano())).SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("connect timed out")
	}
	if tok.Error() == nil {
		t.Cleanup(func() { c.Disconnect(0) })
	}
	return c, tok.Error()
}

func TestAuthentication(t *testing.T) {
	b := start(t)
	tests := []struct {
		user, pass string
		ok         bool
	}{
		{"", "", false},
		{"123456789012", "pw-a", true},
		{"123456789012", "pw-b", false},
		{"999999999999", "pw-a", false},
		{"svc", "svc-secret-1234", true},
		{"svc", "wrong", false},
	}
	for _, tt := range tests {
		_, err := connect(t, b, tt.user, tt.pass)
		if (err == nil) != tt.ok {
			t.Errorf("connect(%q, %q) err = %v, want ok=%v", tt.user, tt.pass, err, tt.ok)
		}
	}
	if b.Rejected() != 4 {
		t.Errorf("Rejected = %d, want 4", b.Rejected())
	}
}

// A device's message reaches the service account only from its own topic.
func TestTopicACL(t *testing.T) {
	b := start(t)
	svc, err := connect(t, b, "svc", "svc-secret-1234")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	if tok := svc.Subscribe("ups/#", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// Forbidden publishes: another unit's topic, outside the prefix. For
	// MQTT 3.1.1 the broker answers by closing the connection.
	for _, topic := range []string{"ups/210987654321/telemetry", "other/123456789012/telemetry"} {
		dev, err := connect(t, b, "123456789012", "pw-a")
		if err != nil {
			t.Fatal(err)
		}
		dev.Publish(topic, 1, false, "{}").WaitTimeout(2 * time.Second)
	}
	dev, err := connect(t, b, "123456789012", "pw-a")
	if err != nil {
		t.Fatal(err)
	}
	dev.Publish("ups/123456789012/telemetry", 1, false, "{}").WaitTimeout(5 * time.Second)
	select {
	case topic := <-got:
		if topic != "ups/123456789012/telemetry" {
			t.Fatalf("forbidden publish delivered on %s", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("own-topic publish not delivered")
	}
	// The service account may not publish.
	svc2, err := connect(t, b, "svc", "svc-secret-1234")
	if err != nil {
		t.Fatal(err)
	}
	svc2.Publish("ups/123456789012/telemetry", 1, false, "{}").WaitTimeout(2 * time.Second)
	dev2, err := connect(t, b, "210987654321", "pw-b")
	if err != nil {
		t.Fatal(err)
	}
	dev2.Publish("ups/210987654321/status", 1, true, "online").WaitTimeout(5 * time.Second)
	select {
	case topic := <-got:
		if topic != "ups/210987654321/status" {
			t.Fatalf("service account publish delivered on %s", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("status publish not delivered")
	}
}

// A device over its publish budget gets the excess refused (not acked),
// counted, and the others are unaffected.
func TestDeviceRateLimit(t *testing.T) {
	b, err := New(Options{
		Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices: devices{"123456789012": "pw-a", "210987654321": "pw-b"}, DeviceRate: 0.001, DeviceBurst: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	svc, err := connect(t, b, "svc", "svc-secret-1234")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 100)
	svc.Subscribe("ups/#", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }).WaitTimeout(5 * time.Second)
	flood, err := connect(t, b, "123456789012", "pw-a")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		flood.Publish("ups/123456789012/telemetry", 0, false, "{}") // QoS 0: no ack to wait for
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.hook.limited.Load() < 7 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // QoS 0 writes are asynchronous in paho
	}
	other, err := connect(t, b, "210987654321", "pw-b")
	if err != nil {
		t.Fatal(err)
	}
	other.Publish("ups/210987654321/telemetry", 1, false, "{}").WaitTimeout(5 * time.Second)
	counts := map[string]int{}
	for counts["ups/210987654321/telemetry"] == 0 {
		select {
		case topic := <-got:
			counts[topic]++
		case <-time.After(5 * time.Second):
			t.Fatalf("other unit's message not delivered; got %v", counts)
		}
	}
	// Everything the flooder got through was routed before the other
	// unit's message (the broker had processed all 10 by then).
	for len(got) > 0 {
		counts[<-got]++
	}
	if counts["ups/123456789012/telemetry"] != 3 {
		t.Fatalf("flooding device delivered %d messages, want its burst of 3", counts["ups/123456789012/telemetry"])
	}
	if b.hook.limited.Load() != 7 {
		t.Fatalf("limited = %d, want 7", b.hook.limited.Load())
	}
}

// A device's bucket starts full, refills at the rate up to the burst, and
// never holds more.
func TestBucket(t *testing.T) {
	const sec = int64(time.Second)
	b := bucket{tokens: 2, last: 0}
	for i, want := range []bool{true, true, false} {
		if got := b.take(0, 1, 2); got != want {
			t.Fatalf("take %d at 0 s = %v, want %v", i, got, want)
		}
	}
	if b.take(sec/2, 1, 2) {
		t.Fatal("half a token taken")
	}
	if !b.take(sec, 1, 2) || b.take(sec, 1, 2) {
		t.Fatal("after 1 s at 1/s: want exactly one token")
	}
	if !b.take(100*sec, 1, 2) || !b.take(100*sec, 1, 2) || b.take(100*sec, 1, 2) {
		t.Fatal("after a long pause: want the burst (2), no more")
	}
	if b.take(99*sec, 1, 2) {
		t.Fatal("a take dated before the last one gave a token")
	}
}
