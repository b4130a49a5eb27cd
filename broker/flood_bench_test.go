package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/ups"
)

// BenchmarkPublishLatencyUnderConnectFlood measures the QoS 1 publish
// round trip (PUBLISH to PUBACK) of 1,000 connected devices taking turns,
// on a quiet broker and while one address (127.0.0.2) sends 1,000 CONNECTs
// a second with wrong passwords. Failed CONNECTs are limited per address
// and username (the serve defaults), so the flood is mostly refused
// unchecked, or dropped at accept once the address is over its budget.
// It reports the p50 and p99 latency and the attempts the flood made per
// second.
//
//	go test -run '^$' -bench PublishLatencyUnderConnectFlood -benchtime 20000x ./broker
func BenchmarkPublishLatencyUnderConnectFlood(b *testing.B) {
	const devicesN = 1000
	devs := devices{}
	for i := range devicesN {
		devs[ups.Serial(fmt.Sprintf("%012d", 100000000000+i))] = "pw"
	}
	br, err := New(Options{
		Listen: "127.0.0.1:0", TopicPrefix: "ups", ServiceUser: "svc", ServicePassword: "svc-secret-1234",
		Devices: devs, Failures: access.NewFailureLimiter(10, 100, time.Minute),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Close() })
	clients := make([]paho.Client, 0, devicesN)
	topics := make([]string, 0, devicesN)
	for serial := range devs {
		o := paho.NewClientOptions().AddBroker(br.URL()).SetUsername(string(serial)).SetPassword("pw").
			SetClientID("bench-" + string(serial)).SetAutoReconnect(false).SetProtocolVersion(4)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("connect %s: %v", serial, tok.Error())
		}
		b.Cleanup(func() { c.Disconnect(0) })
		clients = append(clients, c)
		topics = append(topics, "ups/"+string(serial)+"/telemetry")
	}
	payload := []byte(`{"ups.status":"OL","input.voltage":230,"battery.charge":100}`)

	run := func(b *testing.B, flood bool) {
		var attempts atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		if flood {
			wg.Add(1)
			go func() {
				defer wg.Done()
				floodConnects(ctx, br.Addr(), 1000, &attempts)
			}()
		}
		lat := make([]time.Duration, 0, b.N)
		i := 0
		start := time.Now()
		for b.Loop() {
			c := clients[i%devicesN]
			t0 := time.Now()
			tok := c.Publish(topics[i%devicesN], 1, false, payload)
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				b.Fatalf("publish: %v", tok.Error())
			}
			lat = append(lat, time.Since(t0))
			i++
		}
		elapsed := time.Since(start)
		cancel()
		wg.Wait()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
		if flood {
			b.ReportMetric(float64(attempts.Load())/elapsed.Seconds(), "bad-connects/s")
		}
	}
	b.Run("quiet", func(b *testing.B) { run(b, false) })
	b.Run("flood-1000-per-s", func(b *testing.B) {
		before := br.Refused("throttled") + br.Refused("bad_password")
		run(b, true)
		if br.Refused("throttled")+br.Refused("bad_password") == before {
			b.Fatal("the flood was not refused")
		}
		if c := br.srv.Info.ClientsConnected; c != devicesN {
			b.Fatalf("%d clients connected, want the %d devices only", c, devicesN)
		}
	})
}

// floodConnects opens rate connections a second from 127.0.0.2, each a
// CONNECT with a wrong password, and counts them.
func floodConnects(ctx context.Context, addr string, rate int, attempts *atomic.Int64) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	pkt := connectPacket("flood-client", "100000000000", "wrong-password")
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	start, launched := time.Now(), 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Keep to the schedule even when ticks are late or dropped.
		due := int(time.Since(start).Seconds() * float64(rate))
		for ; launched < due; launched++ {
			wg.Add(1)
			go attempt(ctx, &wg, d, addr, pkt, attempts)
		}
	}
}

// attempt makes one bad CONNECT and counts it once the broker answered
// or closed the connection.
func attempt(ctx context.Context, wg *sync.WaitGroup, d net.Dialer, addr string, pkt []byte, attempts *atomic.Int64) {
	defer wg.Done()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		return
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err == nil && ack[3] == 0 {
		return // accepted: not counted, and the benchmark fails
	}
	attempts.Add(1)
}

// connectPacket encodes an MQTT 3.1.1 CONNECT with username and password.
func connectPacket(clientID, user, pass string) []byte {
	str := func(s string) []byte {
		out := binary.BigEndian.AppendUint16(nil, uint16(len(s)))
		return append(out, s...)
	}
	var body []byte
	body = append(body, str("MQTT")...)
	body = append(body, 4, 0xC2, 0, 60) // level 4; username, password, clean session; keepalive 60
	body = append(body, str(clientID)...)
	body = append(body, str(user)...)
	body = append(body, str(pass)...)
	return append([]byte{0x10, byte(len(body))}, body...) // < 128 bytes: one length byte
}
