package registry

import (
	"context"
	"testing"
	"time"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/ups"
)

// A revocation is in force at once where it was made, reaches another
// instance's view through the watch (calling its OnRevoke), and survives
// a new view.
func TestRevocationsConverge(t *testing.T) {
	ctx := context.Background()
	ns, _, js := bustest.Server(t)
	a, err := OpenRevocations(ctx, js, Options{})
	if err != nil {
		t.Fatal(err)
	}
	startWatch(t, a.Run, a.Ready)
	_, js2 := bustest.Connect(t, ns)
	b, err := OpenRevocations(ctx, js2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	revoked := make(chan ups.Serial, 4)
	b.OnRevoke(func(s ups.Serial, _ time.Time) { revoked <- s })
	startWatch(t, b.Run, b.Ready)

	if _, err := a.Revoke(ctx, "12345"); err == nil {
		t.Fatal("malformed serial revoked")
	}
	at, err := a.Revoke(ctx, "123456789012")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := a.RevokedAt("123456789012"); !ok || !got.Equal(at) {
		t.Fatalf("RevokedAt here = %v %v, want %v", got, ok, at)
	}
	select {
	case s := <-revoked:
		if s != "123456789012" {
			t.Fatalf("OnRevoke(%s)", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other view never learnt of the revocation")
	}
	if got, ok := b.RevokedAt("123456789012"); !ok || !got.Equal(at) {
		t.Fatalf("RevokedAt there = %v %v, want %v", got, ok, at)
	}
	if _, ok := b.RevokedAt("210987654321"); ok {
		t.Fatal("a serial never revoked is revoked")
	}
	c, err := OpenRevocations(ctx, js2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	startWatch(t, c.Run, c.Ready)
	if _, ok := c.RevokedAt("123456789012"); !ok {
		t.Fatal("a new view missed a stored revocation")
	}
}

func startWatch(t *testing.T, run func(context.Context) error, ready func() <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-ready():
	case <-time.After(10 * time.Second):
		t.Fatal("view not ready")
	}
}
