package ingest

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Writes are coalesced but never held: a burst of packets reaches the peer
// in one write flushDelay after the first, without any Close, and Close
// sends what is buffered. The bubble's clock moves only when every
// goroutine waits, so "not before flushDelay, all at flushDelay" is exact.
func TestBufferedConnDeliversWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := newBufferedConn(a)
		var (
			mu     sync.Mutex
			chunks [][]byte
			eof    bool
		)
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := b.Read(buf)
				mu.Lock()
				if n > 0 {
					chunks = append(chunks, append([]byte(nil), buf[:n]...))
				}
				eof = err != nil
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		peer := func() (got []byte, writes int, closed bool) {
			synctest.Wait() // the reader and any flush have done all they can
			mu.Lock()
			defer mu.Unlock()
			return bytes.Join(chunks, nil), len(chunks), eof
		}

		var want bytes.Buffer
		for i := range 100 {
			p := []byte{0x40, 0x02, 0x00, byte(i)} // a PUBACK
			if _, err := c.Write(p); err != nil {
				t.Fatal(err)
			}
			want.Write(p)
		}
		if got, _, _ := peer(); len(got) != 0 {
			t.Fatalf("peer has %d bytes before the flush delay: writes are not coalesced", len(got))
		}
		time.Sleep(flushDelay) // the bubble's clock: no real wait
		got, writes, _ := peer()
		if !bytes.Equal(got, want.Bytes()) || writes != 1 {
			t.Fatalf("after the flush delay the peer has %x in %d writes, want %x in one", got, writes, want.Bytes())
		}

		last := []byte{0xe0, 0x00} // DISCONNECT, sent by Close
		if _, err := c.Write(last); err != nil {
			t.Fatal(err)
		}
		want.Write(last)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		got, _, closed := peer()
		if !bytes.Equal(got, want.Bytes()) || !closed {
			t.Fatalf("after Close the peer has %x (closed %v), want %x and end of stream", got, closed, want.Bytes())
		}
		if _, err := c.Write([]byte{1}); err == nil {
			t.Fatal("write after close succeeded")
		}
		time.Sleep(flushDelay) // a flush scheduled after Close writes nothing
		if got, _, _ := peer(); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("peer has %x after Close, want %x", got, want.Bytes())
		}
	})
}
