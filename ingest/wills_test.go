package ingest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/ups"
)

// Thousands of devices on the embedded broker drop at once (their site's
// network, say): every device's will reaches the bus as one offline
// presence reading, through the broker's sink, although the broker's
// per-client outbound queues (the ingest's too) hold only a few messages
// and the ingest takes fewer messages at a time than there are wills.
func TestEmbeddedBrokerMassDropWills(t *testing.T) {
	const n = 3000
	units := fakeUnits{}
	for i := range n {
		units[ups.Serial(fmt.Sprintf("%012d", 500000000000+i))] = "pw"
	}
	r := newRigWith(t, rigConfig{stream: bus.StreamConfig{Partitions: partitions}, flush: 20 * time.Millisecond,
		units: units, maxPendingWrites: 8, maxInflight: 256, sink: true})
	b := r.broker

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
	// None comes twice: with a sink the broker routes no device topic to
	// the ingest's subscription (TestWillsGoToTheSink in the broker
	// checks that rule), so readAll's exact count is the whole story.
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
