package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// failingSink stores nothing, as the ingest does while the bus is down.
type failingSink struct{}

var errNotStored = errors.New("bus did not store the message")

func (failingSink) Offer(context.Context, string, []byte) error { return errNotStored }

func (failingSink) OfferAsync(_ string, _ []byte, done func(error)) { done(errNotStored) }

// records keeps every log record's message and attributes.
type records struct {
	mu   sync.Mutex
	msgs []map[string]any
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]any{"msg": rec.Message}
	rec.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.Any(); return true })
	r.mu.Lock()
	r.msgs = append(r.msgs, attrs)
	r.mu.Unlock()
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) unstored() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, m := range r.msgs {
		if m["msg"] == "device message not stored; withholding its ack so the device resends" {
			out = append(out, m)
		}
	}
	return out
}

// TestUnstoredMessagesLogSparsely: during a bus outage every device
// message fails its hand-off; the broker withholds every ack and counts
// every one, but logs one line per interval, with how many it held back.
func TestUnstoredMessagesLogSparsely(t *testing.T) {
	logs := &records{}
	b, err := New(Options{
		Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices: devices{"123456789012": "pw-a"}, Logger: slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	b.SetSink(failingSink{})
	now := time.Unix(1764000000, 0)
	b.hook.now = func() time.Time { return now }
	cl := b.srv.NewClient(nil, "test", "device", false)
	cl.Properties.Username = []byte("123456789012")
	publish := func() {
		t.Helper()
		_, err := b.hook.OnPublish(cl, packets.Packet{TopicName: "ups/123456789012/telemetry", Payload: []byte("{}")})
		if !errors.Is(err, packets.ErrRejectPacket) {
			t.Fatalf("OnPublish err = %v, want the packet rejected (no ack)", err)
		}
	}

	steps := []struct {
		advance   time.Duration
		messages  int
		wantLines int
		wantQuiet int64 // not_logged_since_last of the last line
	}{
		{0, 1, 1, 0},             // the first failure is logged at once
		{time.Second, 500, 1, 0}, // an outage's flood: held back
		{sinkFailLogEvery - time.Second, 1, 2, 500}, // next interval: one line, with the count
		{sinkFailLogEvery / 2, 100, 2, 500},
		{sinkFailLogEvery, 1, 3, 100},
	}
	total := 0
	for i, st := range steps {
		now = now.Add(st.advance)
		for range st.messages {
			publish()
		}
		total += st.messages
		lines := logs.unstored()
		if len(lines) != st.wantLines {
			t.Fatalf("step %d: %d warnings, want %d", i, len(lines), st.wantLines)
		}
		if q := lines[len(lines)-1]["not_logged_since_last"]; q != st.wantQuiet {
			t.Fatalf("step %d: not_logged_since_last = %v, want %d", i, q, st.wantQuiet)
		}
		if got := b.hook.sinkFails.Load(); got != int64(total) {
			t.Fatalf("step %d: unstored counter = %d, want every message (%d)", i, got, total)
		}
	}
}

// parkSink hands each asynchronous offer to the test, which settles it.
type parkSink struct{ offers chan parked }

type parked struct {
	topic string
	done  func(error)
}

func (s parkSink) Offer(context.Context, string, []byte) error { return nil }
func (s parkSink) OfferAsync(topic string, _ []byte, done func(error)) {
	s.offers <- parked{topic, done}
}

// TestAsyncHandOffAcksOnceStored: a device's QoS 1 telemetry is handed to
// the sink without waiting, its PUBACK is written once the sink says it is
// stored, and none is written for a message the sink did not store (the
// device resends it), while the connection goes on reading.
func TestAsyncHandOffAcksOnceStored(t *testing.T) {
	b, err := New(Options{
		Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices: devices{"123456789012": "pw-a"},
	})
	if err != nil {
		t.Fatal(err)
	}
	sink := parkSink{offers: make(chan parked, 4)}
	b.SetSink(sink)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang fails the test instead of stalling it
	if _, err := c.Write(connectPacket("dev", "123456789012", "pw-a")); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("connack %x: %v", ack, err)
	}
	topic := "ups/123456789012/telemetry"
	// Two messages in flight at once: the second is offered while the
	// first is still unsettled, so the connection did not wait.
	for id := uint16(1); id <= 2; id++ {
		if _, err := c.Write(publishPacket(topic, id, []byte(`{"battery.charge":50}`))); err != nil {
			t.Fatal(err)
		}
	}
	first, second := <-sink.offers, <-sink.offers
	if first.topic != topic || second.topic != topic {
		t.Fatalf("offered %q and %q", first.topic, second.topic)
	}
	first.done(errNotStored) // not stored: no PUBACK for 1
	second.done(nil)         // stored: PUBACK for 2
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatal(err)
	}
	if ack[0] != 0x40 || binary.BigEndian.Uint16(ack[2:]) != 2 {
		t.Fatalf("first ack %x, want the PUBACK of packet 2 (packet 1 was not stored)", ack)
	}
	if got := b.hook.sinkFails.Load(); got != 1 {
		t.Fatalf("unstored = %d, want 1", got)
	}
}

// pacedConn follows MQTT's framing across reads of any size: it waits for
// room only on a read that brings the start of a PUBLISH, never for a
// PINGREQ or PUBACK, nor inside a long payload that happens to hold the
// byte 0x3x where a header would be.
func TestPacedConnFindsPublishes(t *testing.T) {
	payload := bytes.Repeat([]byte{0x32}, 300) // looks like PUBLISH headers
	var stream []byte
	stream = append(stream, 0xC0, 0x00)          // PINGREQ
	stream = append(stream, 0x40, 0x02, 0x00, 1) // PUBACK
	pub := publishPacket("ups/123456789012/telemetry", 7, payload)
	stream = append(stream, pub...)
	stream = append(stream, 0xC0, 0x00)
	pubAt := 6 // offset of the PUBLISH's first byte
	for _, size := range []int{1, 2, 3, 7, 64, 512} {
		c := &pacedConn{}
		var got []int
		for off := 0; off < len(stream); off += size {
			end := min(off+size, len(stream))
			if c.publishes(stream[off:end]) {
				got = append(got, off)
			}
		}
		want := pubAt / size * size // the read holding the PUBLISH's first byte
		if len(got) != 1 || got[0] != want {
			t.Errorf("reads of %d bytes: a PUBLISH seen in the reads at %v, want only at %d", size, got, want)
		}
	}
}

// TestDevicesWaitForTheSink: with AwaitSink, a device that connects before
// the sink is set is refused as "server unavailable" (it keeps its
// readings and retries) rather than acked into a broker that routes them
// to no one; the ingest's account is let in; once the sink is set the
// device connects and its message reaches the sink.
func TestDevicesWaitForTheSink(t *testing.T) {
	b, err := New(Options{
		Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices: devices{"123456789012": "pw-a"}, AwaitSink: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	_, err = connect(t, b, "123456789012", "pw-a")
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "server unavailable") {
		t.Fatalf("device before the sink: err = %v, want server unavailable", err)
	}
	if got := b.Refused("starting"); got != 1 {
		t.Fatalf("refused starting = %d, want 1", got)
	}
	if _, err := connect(t, b, "svc", "svc-secret-1234"); err != nil {
		t.Fatalf("the ingest's account before the sink: %v", err)
	}

	sink := parkSink{offers: make(chan parked, 1)}
	b.SetSink(sink)
	c, err := connect(t, b, "123456789012", "pw-a")
	if err != nil {
		t.Fatalf("device after the sink: %v", err)
	}
	topic := "ups/123456789012/telemetry"
	tok := c.Publish(topic, 1, false, `{"battery.charge":50}`)
	got := <-sink.offers
	if got.topic != topic {
		t.Fatalf("offered %q, want %q", got.topic, topic)
	}
	got.done(nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish not acked once stored: %v", tok.Error())
	}
	if got := b.Refused("starting"); got != 1 {
		t.Fatalf("refused starting = %d after the sink, want still 1", got)
	}
}
