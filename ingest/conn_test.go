package ingest

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// Writes are coalesced but never held: the peer gets every byte soon after
// it was written without any Close, and Close sends what is buffered.
func TestBufferedConnDeliversWrites(t *testing.T) {
	a, b := net.Pipe()
	c := newBufferedConn(a)
	chunks := make(chan []byte, 1024)
	go func() {
		defer close(chunks)
		buf := make([]byte, 4096)
		for {
			n, err := b.Read(buf)
			if n > 0 {
				chunks <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				return
			}
		}
	}()
	var got bytes.Buffer
	readUntil := func(n int) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for got.Len() < n {
			select {
			case p, ok := <-chunks:
				if !ok {
					t.Fatalf("peer closed after %d of %d bytes", got.Len(), n)
				}
				got.Write(p)
			case <-timeout:
				t.Fatalf("peer has %d of %d bytes: a write was held", got.Len(), n)
			}
		}
	}
	var want bytes.Buffer
	for i := range 100 {
		p := []byte{0x40, 0x02, 0x00, byte(i)} // a PUBACK
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		want.Write(p)
	}
	readUntil(want.Len())      // flushed by the timer, no Close
	last := []byte{0xe0, 0x00} // DISCONNECT, sent by Close
	if _, err := c.Write(last); err != nil {
		t.Fatal(err)
	}
	want.Write(last)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	readUntil(want.Len())
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("peer read %x, want %x", got.Bytes(), want.Bytes())
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Fatal("write after close succeeded")
	}
}
