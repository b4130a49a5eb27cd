package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ingest/payload"
	"github.com/upswatch/upswatch/ups"
)

// holdSink decodes each message as the ingest does, then holds it until
// release is closed, as the ingest holds a device's message until the bus
// stored its batch (up to ingest.flush_interval): under load that is the
// state the GC finds the connections in.
type holdSink struct {
	d       *payload.Decoder
	in      chan struct{}
	release chan struct{}

	mu      sync.Mutex
	pending []func(error)
}

func (s *holdSink) Offer(_ context.Context, _ string, body []byte) error {
	_, err := s.d.Decode("123456789012", body, time.Now(), nil)
	s.in <- struct{}{}
	<-s.release
	return err
}

func (s *holdSink) OfferAsync(_ string, body []byte, done func(error)) {
	_, err := s.d.Decode("123456789012", body, time.Now(), nil)
	s.mu.Lock()
	s.pending = append(s.pending, func(error) { done(err) })
	s.mu.Unlock()
	s.in <- struct{}{}
}

// settle releases every held message.
func (s *holdSink) settle() {
	close(s.release)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, done := range s.pending {
		done(nil)
	}
}

// BenchmarkConnectionMemory is the broker's memory per connected device:
// 2,000 raw MQTT 3.1.1 clients (no client library in this process)
// connect and each publishes one QoS 1 reading, which the sink holds (as
// the ingest does until the bus has it); it reports the growth of the Go
// heap and of the goroutine stacks, per connection, after a GC taken
// while every message is held, then releases them and reads the PUBACKs.
//
//	go test -run '^$' -bench ConnectionMemory -benchtime 1x ./broker
func BenchmarkConnectionMemory(b *testing.B) {
	const n = 2000
	devs := devices{}
	for i := range n {
		devs[ups.Serial(fmt.Sprintf("%012d", 100000000000+i))] = "pw"
	}
	for b.Loop() {
		br, err := New(Options{Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc",
			ServicePassword: "svc-secret-1234", Devices: devs, MaxPendingWrites: 32}) // serve's default
		if err != nil {
			b.Fatal(err)
		}
		sink := &holdSink{d: payload.New(payload.Limits{}), in: make(chan struct{}, n), release: make(chan struct{})}
		br.SetSink(sink)
		if err := br.Start(); err != nil {
			b.Fatal(err)
		}
		before := memNow()
		conns := make([]net.Conn, 0, n)
		body := []byte(`{"ups.status":"OL","battery.charge":100,"input.voltage":230.1,"ups.load":23}`)
		for serial := range devs {
			c, err := net.Dial("tcp", br.Addr())
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			if _, err := c.Write(connectPacket("m-"+string(serial), string(serial), "pw")); err != nil {
				b.Fatal(err)
			}
			ack := make([]byte, 4)
			if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
				b.Fatalf("connack %x: %v", ack, err)
			}
			if _, err := c.Write(publishPacket("ups/"+string(serial)+"/telemetry", 1, body)); err != nil {
				b.Fatal(err)
			}
		}
		for range n {
			<-sink.in // every device's message is being offered
		}
		after := memNow()
		sink.settle()
		for _, c := range conns {
			ack := make([]byte, 4)
			if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x40 {
				b.Fatalf("puback %x: %v", ack, err)
			}
		}
		b.ReportMetric(float64(after.heap-before.heap)/n/1024, "heap-KiB/conn")
		b.ReportMetric(float64(after.stack-before.stack)/n/1024, "stack-KiB/conn")
		b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/conn")
		for _, c := range conns {
			_ = c.Close()
		}
		_ = br.Close()
	}
}

type memSample struct {
	heap, stack uint64
	goroutines  int
}

func memNow() memSample {
	runtime.GC()
	runtime.GC() // the second sweeps what the first freed
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{heap: m.HeapInuse, stack: m.StackInuse, goroutines: runtime.NumGoroutine()}
}

// publishPacket encodes an MQTT 3.1.1 PUBLISH at QoS 1 with packet id.
func publishPacket(topic string, id uint16, payload []byte) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, uint16(len(topic)))
	body = append(body, topic...)
	body = binary.BigEndian.AppendUint16(body, id)
	body = append(body, payload...)
	pkt := []byte{0x32}
	for l := len(body); ; { // remaining length, variable byte integer
		d := byte(l % 128)
		l /= 128
		if l > 0 {
			d |= 0x80
		}
		pkt = append(pkt, d)
		if l == 0 {
			break
		}
	}
	return append(pkt, body...)
}
