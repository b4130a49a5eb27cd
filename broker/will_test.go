package broker

import (
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// With a sink, a device's will goes to it when the device drops (after
// MQTT 5's will delay, unless the device is back by then), never one on
// another unit's topic, and mochi routes no device topic to the ingest's
// subscription, which may still subscribe.
func TestWillsGoToTheSink(t *testing.T) {
	b, err := New(Options{
		Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices: devices{"123456789012": "pw-a", "210987654321": "pw-b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	svc := b.srv.NewClient(nil, "test", "ingest", false)
	svc.Properties.Username = []byte("svc")
	if !b.hook.OnACLCheck(svc, "ups/123456789012/status", false) {
		t.Fatal("without a sink the ingest does not read device topics")
	}
	sink := parkSink{offers: make(chan parked, 4)}
	b.SetSink(sink)
	if b.hook.OnACLCheck(svc, "ups/123456789012/status", false) {
		t.Error("with a sink mochi still routes a device topic to the ingest (a will would arrive twice)")
	}
	if !b.hook.OnACLCheck(svc, "ups/+/status", false) || !b.hook.OnACLCheck(svc, "$share/g/ups/+/telemetry", false) {
		t.Error("with a sink the ingest may not subscribe")
	}

	device := func(serial, id string) *mqtt.Client {
		cl := b.srv.NewClient(nil, "test", id, false)
		cl.Properties.Username = []byte(serial)
		return cl
	}
	offered := func(within time.Duration) (parked, bool) {
		select {
		case p := <-sink.offers:
			return p, true
		case <-time.After(within):
			return parked{}, false
		}
	}
	will := mqtt.Will{TopicName: "ups/123456789012/status", Payload: []byte("offline"), Qos: 1, Retain: true, Flag: 1}

	cl := device("123456789012", "dev-a")
	if got, err := b.hook.OnWill(cl, will); err != nil || got.TopicName != will.TopicName || !got.Retain {
		t.Fatalf("OnWill = %+v, %v; want the will unchanged (mochi still retains it)", got, err)
	}
	if p, ok := offered(time.Second); !ok || p.topic != will.TopicName {
		t.Fatalf("will offered: %v %q", ok, p.topic)
	}

	other := will
	other.TopicName = "ups/210987654321/status"
	_, _ = b.hook.OnWill(device("123456789012", "dev-a2"), other)
	if p, ok := offered(100 * time.Millisecond); ok {
		t.Fatalf("a will on another unit's topic was offered: %q", p.topic)
	}

	delayed := will
	delayed.WillDelayInterval = 1
	start := time.Now()
	_, _ = b.hook.OnWill(device("123456789012", "dev-a3"), delayed)
	if p, ok := offered(3 * time.Second); !ok || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("delayed will offered %v after %v (%q), want after 1 s", ok, time.Since(start), p.topic)
	}
	gone := device("123456789012", "dev-a4")
	_, _ = b.hook.OnWill(gone, delayed)
	b.srv.Clients.Add(device("123456789012", "dev-a4")) // back within the delay
	if p, ok := offered(1500 * time.Millisecond); ok {
		t.Fatalf("the will of a device back within the delay was offered: %q", p.topic)
	}
}
