package ingest

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/broker"
	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/ups"
)

// Thousands of devices on the embedded broker drop at once (their site's
// network, say): every device's will reaches the bus as one offline
// presence reading, through the broker's sink, although the broker's
// per-client outbound queues (the ingest's too) hold only a few messages
// and the ingest takes fewer messages at a time than there are wills.
func TestEmbeddedBrokerMassDropWills(t *testing.T) {
	const n = 3000
	_, _, js := bustest.Server(t)
	if _, _, err := bus.EnsureReadingsStream(context.Background(), js, bus.StreamConfig{Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	units := fakeUnits{}
	for i := range n {
		units[ups.Serial(fmt.Sprintf("%012d", 500000000000+i))] = "pw"
	}
	b, err := broker.New(broker.Options{Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc",
		ServicePassword: "svc-password-123", Devices: units, MaxPendingWrites: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	in, err := New(Config{BrokerURL: b.URL(), Username: "svc", Password: "svc-password-123", ClientID: "ingest-test",
		TopicPrefix: "ups", Partitions: partitions, BatchSize: 100, FlushInterval: 20 * time.Millisecond,
		MaxInflight: 256, Registerer: prometheus.NewRegistry()}, units, js)
	if err != nil {
		t.Fatal(err)
	}
	b.SetSink(in)
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, js: js, broker: b, in: in, units: units, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- in.Run(ctx) }()
	t.Cleanup(r.stop)
	for deadline := time.Now().Add(10 * time.Second); !in.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("ingest not ready")
		}
	}

	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for serial := range units {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(connectWithWill(string(serial), "ups/"+string(serial)+"/status", "offline")); err != nil {
			t.Fatal(err)
		}
		ack := make([]byte, 4)
		if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
			t.Fatalf("connack %x: %v", ack, err)
		}
	}
	for _, c := range conns { // dropped, no DISCONNECT: the broker sends the wills
		_ = c.Close()
	}

	offline := map[ups.Serial]int{}
	for _, rs := range r.readAll(n) {
		for _, rd := range rs {
			if rd.Presence != ups.PresenceOffline {
				t.Fatalf("reading of %s is not an offline presence: %+v", rd.Serial, rd)
			}
			offline[rd.Serial]++
		}
	}
	for serial := range units {
		if offline[serial] != 1 {
			t.Errorf("%s: %d offline presence readings, want 1", serial, offline[serial])
		}
	}
	// Nothing more comes later by the ingest's subscription (a will
	// delivered twice).
	time.Sleep(200 * time.Millisecond)
	r.readAll(n)
}

// connectWithWill encodes an MQTT 3.1.1 CONNECT (clean session) whose
// will is payload on topic, QoS 1, retained: what a device sends.
func connectWithWill(serial, topic, payload string) []byte {
	str := func(s string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
	}
	var body []byte
	body = append(body, str("MQTT")...)
	// level 4; flags: username, password, will retain, will QoS 1, will,
	// clean session; keepalive 60 s
	body = append(body, 4, 0x80|0x40|0x20|0x08|0x04|0x02, 0, 60)
	body = append(body, str("dev-"+serial)...)
	body = append(body, str(topic)...)
	body = append(body, str(payload)...)
	body = append(body, str(serial)...)
	body = append(body, str("pw")...)
	return append([]byte{0x10, byte(len(body))}, body...) // < 128 bytes: one length byte
}
