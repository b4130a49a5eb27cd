package wait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	var n atomic.Int32
	if !Poll(time.Second, func() bool { return n.Add(1) == 3 }) {
		t.Fatal("Poll gave up on a condition that became true")
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("cond called %d times, want 3", got)
	}
	start := time.Now()
	if Poll(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a false condition as true")
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("Poll gave up after %v, before its deadline", took)
	}
}
