package broker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// failingSink stores nothing, as the ingest does while the bus is down.
type failingSink struct{}

func (failingSink) Offer(context.Context, string, []byte) error {
	return errors.New("bus did not store the message")
}

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
