package ingest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
	"unsafe"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/upswatch/upswatch/broker"
	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/ups"
)

type fakeUnits map[ups.Serial]string

func (f fakeUnits) Registered(s ups.Serial) bool { _, ok := f[s]; return ok }
func (f fakeUnits) Authenticate(s ups.Serial, pw string) bool {
	p, ok := f[s]
	return ok && p == pw
}

type rig struct {
	t      *testing.T
	js     jetstream.JetStream
	broker *broker.Broker
	in     *Ingest
	units  fakeUnits
	cancel context.CancelFunc
	done   chan error
}

const partitions = 4

func newRig(t *testing.T, stream bus.StreamConfig) *rig {
	t.Helper()
	return newRigFlush(t, stream, 2*time.Millisecond)
}

func newRigFlush(t *testing.T, stream bus.StreamConfig, flush time.Duration) *rig {
	t.Helper()
	return newRigWith(t, rigConfig{stream: stream, flush: flush})
}

// rigConfig varies a rig; zero values take newRig's.
type rigConfig struct {
	stream bus.StreamConfig
	flush  time.Duration
	units  fakeUnits // default: two units
	// maxPendingWrites is the broker's per-client queue.
	maxPendingWrites int
	maxInflight      int // the ingest's; default 1000
	// sink: the broker hands device messages (and wills) to the ingest
	// directly, as in serve, not through the ingest's subscription.
	sink bool
}

func newRigWith(t *testing.T, c rigConfig) *rig {
	t.Helper()
	if c.units == nil {
		c.units = fakeUnits{"111111111111": "a", "222222222222": "b"}
	}
	if c.maxInflight == 0 {
		c.maxInflight = 1000
	}
	_, _, js := bustest.Server(t)
	if _, _, err := bus.EnsureReadingsStream(context.Background(), js, c.stream); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc",
		ServicePassword: "svc-password-123", Devices: c.units, MaxPendingWrites: c.maxPendingWrites})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	in, err := New(Config{BrokerURL: b.URL(), Username: "svc", Password: "svc-password-123", ClientID: "ingest-test",
		TopicPrefix: "ups", Partitions: partitions, BatchSize: 100, FlushInterval: c.flush,
		MaxInflight: c.maxInflight, Registerer: prometheus.NewRegistry()}, c.units, js)
	if err != nil {
		t.Fatal(err)
	}
	if c.sink {
		b.SetSink(in)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, js: js, broker: b, in: in, units: c.units, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- in.Run(ctx) }()
	t.Cleanup(r.stop)
	wait.Within(t, 10*time.Second, "ingest ready", in.Ready)
	return r
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		r.t.Errorf("Run: %v", err)
	}
}

func (r *rig) device(serial string) paho.Client {
	r.t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(r.broker.URL()).SetClientID("dev-" + serial).
		SetUsername(serial).SetPassword(r.units[ups.Serial(serial)]).SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		r.t.Fatalf("connect: %v", tok.Error())
	}
	r.t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// readAll returns every reading stored on the bus, per partition subject.
func (r *rig) readAll(want int) map[string][]ups.Reading {
	r.t.Helper()
	out := map[string][]ups.Reading{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out = map[string][]ups.Reading{}
		n := 0
		s, err := r.js.Stream(context.Background(), bus.ReadingsStream)
		if err != nil {
			r.t.Fatal(err)
		}
		info, _ := s.Info(context.Background())
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(context.Background(), seq)
			if err != nil {
				continue
			}
			rs, err := ups.DecodeBatch(m.Data, nil)
			if err != nil {
				r.t.Fatalf("bad batch on the bus: %v", err)
			}
			out[m.Subject] = append(out[m.Subject], rs...)
			n += len(rs)
		}
		if n >= want || time.Now().After(deadline) {
			if n != want {
				r.t.Fatalf("bus holds %d readings, want %d", n, want)
			}
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Readings of a unit land on its partition's subject in publish order,
// batched (fewer bus messages than readings).
func TestBatchesPerPartitionInOrder(t *testing.T) {
	r := newRig(t, bus.StreamConfig{Partitions: partitions, Replicas: 1, MaxAge: time.Hour, MaxBytes: 64 << 20})
	a, b := r.device("111111111111"), r.device("222222222222")
	const n = 200
	for i := range n {
		a.Publish("ups/111111111111/telemetry", 1, false, fmt.Sprintf(`{"ts":%d,"battery.charge":%d}`, 1764000000000+i, i%100))
		b.Publish("ups/222222222222/telemetry", 1, false, fmt.Sprintf(`{"ts":%d,"ups.load":%d}`, 1764000000000+i, i%100))
	}
	a.Publish("ups/111111111111/status", 1, true, "offline").WaitTimeout(5 * time.Second)
	b.Publish("ups/222222222222/telemetry", 1, false, "{}").WaitTimeout(5 * time.Second) // rejected: empty
	all := r.readAll(2*n + 1)
	for serial, subject := range map[ups.Serial]string{
		"111111111111": bus.ReadingsSubject(ups.Partition("111111111111", partitions)),
		"222222222222": bus.ReadingsSubject(ups.Partition("222222222222", partitions)),
	} {
		var last time.Time
		count := 0
		for _, rd := range all[subject] {
			if rd.Serial != serial || rd.Presence != ups.PresenceNone {
				continue
			}
			if !rd.Time.After(last) {
				t.Fatalf("%s: reading at %v after %v: out of order", serial, rd.Time, last)
			}
			last = rd.Time
			count++
		}
		if count != n {
			t.Fatalf("%s: %d readings on %s, want %d", serial, count, subject, n)
		}
	}
	if got := testutil.ToFloat64(r.in.m.batches); got >= 2*n {
		t.Fatalf("%v bus messages for %d readings: not batched", got, 2*n)
	}
	if got := testutil.ToFloat64(r.in.m.rejected.WithLabelValues("empty")); got != 1 {
		t.Fatalf("rejected{empty} = %v", got)
	}
}

// The alert fast lane: with a flush interval of an hour, only a change of
// a unit's status flags, a reading of a unit on battery, or a presence
// message gets its partition's batch out; everything before it goes
// along, in order, and readings that change nothing (or only the
// charging flag) of a unit on line keep waiting for the batch.
func TestStatusChangeFlushesAtOnce(t *testing.T) {
	r := newRigFlush(t, bus.StreamConfig{Partitions: partitions, Replicas: 1, MaxAge: time.Hour, MaxBytes: 64 << 20}, time.Hour)
	a := r.device("111111111111")
	send := func(topic, body string) {
		t.Helper()
		if tok := a.Publish("ups/111111111111/"+topic, 1, false, body); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	expect := func(readings int, batches, fast float64) []ups.Reading {
		t.Helper()
		got := r.readAll(readings)
		// The counters move just after the bus has the batch.
		deadline := time.Now().Add(5 * time.Second)
		for testutil.ToFloat64(r.in.m.batches) < batches && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if b, f := testutil.ToFloat64(r.in.m.batches), testutil.ToFloat64(r.in.m.fastFlushes); b != batches || f != fast {
			t.Fatalf("after %d readings: %v batches, %v fast; want %v and %v", readings, b, f, batches, fast)
		}
		return got[bus.ReadingsSubject(ups.Partition("111111111111", partitions))]
	}
	// First seen on line: no news, held. Charging ends: still no news.
	// The mains fail: out at once, with the two readings before it.
	send("telemetry", `{"ts":1764000000000,"ups.status":"OL CHRG","battery.charge":90}`)
	send("telemetry", `{"ts":1764000001000,"ups.status":"OL","battery.charge":100}`)
	send("telemetry", `{"ts":1764000002000,"ups.status":"OB DISCHRG","battery.charge":99}`)
	if rs := expect(3, 1, 1); len(rs) != 3 || rs[2].Status.Raw != "OB DISCHRG" {
		t.Fatalf("readings on the bus: %+v", rs)
	}
	// Still on battery: each reading may end a pending period, out at once.
	send("telemetry", `{"ts":1764000003000,"ups.status":"OB DISCHRG","battery.charge":98}`)
	expect(4, 2, 2)
	// Mains back: a change.
	send("telemetry", `{"ts":1764000004000,"ups.status":"OL CHRG","battery.charge":98}`)
	expect(5, 3, 3)
	// Charging only, on line: held until the device's presence message
	// (urgent by itself) brings it out in the same batch.
	send("telemetry", `{"ts":1764000005000,"ups.status":"OL","battery.charge":100}`)
	send("status", "online")
	expect(7, 4, 4)
}

// While the bus refuses batches, messages stay unacked and in flight; once
// it takes them again they are stored and acked, none lost.
func TestBusRefusalHoldsMessagesUntilStored(t *testing.T) {
	r := newRig(t, bus.StreamConfig{Partitions: partitions, Replicas: 1, MaxAge: time.Hour, MaxBytes: 64 << 20})
	ctx := context.Background()
	// A full stream refuses new messages (DiscardNew): cap it at zero room.
	s, _ := r.js.Stream(ctx, bus.ReadingsStream)
	cfg := s.CachedInfo().Config
	full := cfg
	full.MaxMsgs = 1
	if _, err := r.js.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	a := r.device("111111111111")
	a.Publish("ups/111111111111/telemetry", 1, false, `{"battery.charge":1}`).WaitTimeout(5 * time.Second)
	r.readAll(1) // fills the stream
	for i := 2; i <= 5; i++ {
		a.Publish("ups/111111111111/telemetry", 1, false, fmt.Sprintf(`{"battery.charge":%d}`, i)).WaitTimeout(5 * time.Second)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(r.in.m.publishErrors) == 0 || testutil.ToFloat64(r.in.m.inflight) != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("publish errors %v, inflight %v: want refusals with 4 messages held",
				testutil.ToFloat64(r.in.m.publishErrors), testutil.ToFloat64(r.in.m.inflight))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := r.js.UpdateStream(ctx, cfg); err != nil { // room again
		t.Fatal(err)
	}
	all := r.readAll(5)
	got := 0
	for _, rs := range all {
		got += len(rs)
	}
	if got != 5 {
		t.Fatalf("%d readings stored, want 5", got)
	}
	deadline = time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(r.in.m.inflight) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("messages still in flight after the bus took them")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseTopic(t *testing.T) {
	in := &Ingest{cfg: Config{TopicPrefix: "ups"}}
	tests := []struct {
		topic, serial, kind string
		ok                  bool
	}{
		{"ups/123456789012/telemetry", "123456789012", "telemetry", true},
		{"ups/1234567890123456/status", "1234567890123456", "status", true},
		{"ups/12345/telemetry", "", "", false},
		{"ups/123456789012/other", "", "", false},
		{"other/123456789012/telemetry", "", "", false},
		{"ups/123456789012/telemetry/extra", "", "", false},
	}
	for _, tt := range tests {
		s, k, ok := in.parseTopic(tt.topic)
		if ok != tt.ok || string(s) != tt.serial || (ok && k != tt.kind) {
			t.Errorf("parseTopic(%q) = %q, %q, %v", tt.topic, s, k, ok)
		}
	}
}

// A message of a serial the registry does not know (an external broker
// with a stale ACL let it through) is rejected as unregistered, for good:
// Offer answers nil so the broker acks it and the device moves on.
func TestUnregisteredRejected(t *testing.T) {
	r := newRig(t, bus.StreamConfig{Partitions: partitions})
	if err := r.in.Offer(context.Background(), "ups/333333333333/telemetry", []byte(`{"battery.charge":50}`)); err != nil {
		t.Fatalf("Offer: %v", err)
	}
	if got := testutil.ToFloat64(r.in.m.rejected.WithLabelValues("unregistered")); got != 1 {
		t.Fatalf("rejected{unregistered} = %v, want 1", got)
	}
}

// OfferAsync settles each message once: a good one only after its batch
// is on the bus, a bad one at once (rejected for good, so the broker acks
// it), and after shutdown with ErrStopping (the broker withholds the ack).
func TestOfferAsync(t *testing.T) {
	r := newRig(t, bus.StreamConfig{Partitions: partitions})
	offer := func(topic, body string) error {
		t.Helper()
		done := make(chan error, 2)
		r.in.OfferAsync(topic, []byte(body), func(err error) { done <- err })
		select {
		case err := <-done:
			if len(done) != 0 {
				t.Fatalf("done called twice for %s", topic)
			}
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never settled", topic)
			return nil
		}
	}
	if err := offer("ups/111111111111/telemetry", `{"battery.charge":50}`); err != nil {
		t.Fatalf("good message settled with %v", err)
	}
	// Settled means stored: the reading is on the bus now, not later.
	s, err := r.js.Stream(context.Background(), bus.ReadingsStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.Msgs != 1 {
		t.Fatalf("bus holds %v batches after the message settled (%v), want 1", info.State.Msgs, err)
	}
	for _, bad := range []struct{ topic, body, reason string }{
		{"ups/333333333333/telemetry", `{"battery.charge":50}`, "unregistered"},
		{"ups/111111111111/telemetry", `{"battery.charge":`, "malformed"},
	} {
		if err := offer(bad.topic, bad.body); err != nil {
			t.Fatalf("%s message settled with %v, want nil (rejected for good)", bad.reason, err)
		}
		if got := testutil.ToFloat64(r.in.m.rejected.WithLabelValues(bad.reason)); got != 1 {
			t.Fatalf("rejected{%s} = %v, want 1", bad.reason, got)
		}
	}
	r.stop()
	if err := offer("ups/111111111111/telemetry", `{"battery.charge":51}`); !errors.Is(err, ErrStopping) {
		t.Fatalf("after shutdown: %v, want ErrStopping", err)
	}
}

// WaitRoom returns at once while the ingest has room, else when a slot is
// freed (a token) or at shutdown.
func TestWaitRoom(t *testing.T) {
	for _, tc := range []struct {
		name   string
		full   bool
		settle func(in *Ingest)
	}{
		{name: "room", settle: func(*Ingest) {}},
		{name: "full, then a slot freed", full: true, settle: func(in *Ingest) { <-in.slots; in.room <- struct{}{} }},
		{name: "full, then shutdown", full: true, settle: func(in *Ingest) { close(in.stopping) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &Ingest{slots: make(chan struct{}, 2), room: make(chan struct{}, roomTokens), stopping: make(chan struct{})}
			in.slots <- struct{}{}
			if tc.full {
				in.slots <- struct{}{}
			}
			returned := make(chan struct{})
			go func() { in.WaitRoom(); close(returned) }()
			tc.settle(in)
			select {
			case <-returned:
			case <-time.After(5 * time.Second):
				t.Fatal("WaitRoom did not return")
			}
		})
	}
}

// The partition's memory of each unit's status does not keep the
// message's buffer: the serial came from the topic, which the embedded
// broker hands over as a view into its packet.
func TestStatusKeysOwnTheirSerial(t *testing.T) {
	buf := []byte("ups/123456789012/telemetry")
	serial := ups.Serial(unsafe.String(&buf[4], 12))
	p := &partition{status: map[ups.Serial]ups.Flag{}}
	p.add(item{readings: []ups.Reading{{Serial: serial, HasStatus: true, Status: ups.Status{Flags: ups.OL}}}})
	copy(buf[4:], "999999999999") // the broker reuses or frees the packet
	if _, ok := p.status["123456789012"]; !ok {
		t.Fatalf("status keys %v: the key changed with the packet's buffer", p.status)
	}
}
