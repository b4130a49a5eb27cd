package ingest

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// Writes are coalesced but never held: every byte reaches the peer
// shortly after it was written, and Close sends what is buffered.
func TestBufferedConnDeliversWrites(t *testing.T) {
	a, b := net.Pipe()
	c := newBufferedConn(a)
	got := make(chan []byte, 1)
	go func() {
		buf, _ := io.ReadAll(b)
		got <- buf
	}()
	var want bytes.Buffer
	for i := range 100 {
		p := []byte{0x40, 0x02, 0x00, byte(i)} // a PUBACK
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		want.Write(p)
	}
	time.Sleep(10 * flushDelay) // past the flush: the peer has it without Close
	last := []byte{0xe0, 0x00}  // DISCONNECT, sent by Close
	if _, err := c.Write(last); err != nil {
		t.Fatal(err)
	}
	want.Write(last)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case buf := <-got:
		if !bytes.Equal(buf, want.Bytes()) {
			t.Fatalf("peer read %d bytes, want %d", len(buf), want.Len())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("peer never got the bytes")
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Fatal("write after close succeeded")
	}
}
