package recorder

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// fakeStore is a History whose writes fail while down is set.
type fakeStore struct {
	mu     sync.Mutex
	down   bool
	calls  int
	stored map[ups.Serial]map[int64]bool
	wrote  chan struct{}
}

func (f *fakeStore) WriteReadings(_ context.Context, rs []ups.Reading) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return store.ErrUnavailable
	}
	for _, r := range rs {
		if f.stored[r.Serial] == nil {
			f.stored[r.Serial] = map[int64]bool{}
		}
		f.stored[r.Serial][r.Time.UnixMilli()] = true
	}
	select {
	case f.wrote <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.stored {
		n += len(m)
	}
	return n
}

func (f *fakeStore) Query(context.Context, store.Query) (store.Series, error) {
	return store.Series{}, errors.New("not used")
}
func (f *fakeStore) Latest(context.Context, ups.Serial) (ups.Reading, error) {
	return ups.Reading{}, store.ErrNotFound
}
func (f *fakeStore) DeleteUnit(context.Context, ups.Serial) error { return nil }
func (f *fakeStore) Close() error                                 { return nil }

// While the store is down nothing is acked; when it returns every reading
// is written, and the consumer has nothing left pending.
func TestStoreOutageLosesNothing(t *testing.T) {
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	if _, _, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{Partitions: 2, Replicas: 1, MaxAge: time.Hour, MaxBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	fs := &fakeStore{down: true, stored: map[ups.Serial]map[int64]bool{}, wrote: make(chan struct{}, 1)}
	rec, err := New(js, fs, Config{MaxReadings: 50, Linger: time.Millisecond, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	const batches, per = 20, 10
	for b := range batches {
		rs := make([]ups.Reading, per)
		for i := range rs {
			rs[i] = ups.Reading{Serial: "123456789012", Time: time.UnixMilli(int64(1764000000000 + b*per + i))}
			rs[i].SetNum("battery.charge", float64(i))
		}
		if _, err := js.Publish(ctx, bus.ReadingsSubject(b%2), ups.AppendBatch(nil, rs)); err != nil {
			t.Fatal(err)
		}
	}
	// A poison message is terminated, not retried forever.
	if _, err := js.Publish(ctx, bus.ReadingsSubject(0), []byte{9, 9, 9}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fs.mu.Lock()
		calls := fs.calls
		fs.mu.Unlock()
		if calls >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("recorder did not retry the failing store")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cons, err := js.Consumer(ctx, bus.ReadingsStream, Durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Consumer != 0 {
		t.Fatalf("acked %d messages while the store was down", info.AckFloor.Consumer)
	}
	fs.mu.Lock()
	fs.down = false
	fs.mu.Unlock()
	deadline = time.Now().Add(20 * time.Second)
	for fs.count() < batches*per {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d readings, want %d", fs.count(), batches*per)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		info, err = cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending %d, ack pending %d after recovery", info.NumPending, info.NumAckPending)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
