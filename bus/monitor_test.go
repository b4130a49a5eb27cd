package bus_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/wait"
)

func TestStreamMonitorReportsFill(t *testing.T) {
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	if _, _, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{Partitions: 2, Replicas: 1, MaxAge: time.Hour, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	m, err := bus.NewStreamMonitor(js, bus.ReadingsStream, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 100<<10)
	for range 9 { // ~900 KiB of 1 MiB: past 80 %
		if _, err := js.Publish(ctx, bus.ReadingsSubject(0), payload); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- m.Run(runCtx) }()
	wait.Within(t, 5*time.Second, "the fill ratio at 0.8 or more", func() bool {
		return testutil.ToFloat64(m.FillGauge()) >= 0.8
	})
	cancel()
	<-done
	if !strings.Contains(logs.String(), "readings stream filling up") || !strings.Contains(logs.String(), "percent_full=8") {
		t.Fatalf("no fill warning logged: %s", logs.String())
	}
}

// Changing the partition count of an existing stream is refused.
func TestPartitionsFixed(t *testing.T) {
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	c := bus.StreamConfig{Partitions: 16, Replicas: 1, MaxAge: time.Hour, MaxBytes: 1 << 20}
	if _, _, err := bus.EnsureReadingsStream(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bus.EnsureReadingsStream(ctx, js, c); err != nil {
		t.Fatalf("same config again: %v", err)
	}
	c.Partitions = 8
	if _, _, err := bus.EnsureReadingsStream(ctx, js, c); err == nil || !strings.Contains(err.Error(), "stream has 16, config says 8") {
		t.Fatalf("err = %v, want a partitions change refused", err)
	}
	if n, err := bus.PartitionsOf(ctx, js); err != nil || n != 16 {
		t.Fatalf("PartitionsOf = %d, %v", n, err)
	}
	// Unset (0), an instance takes the stream's count, whatever it is.
	c.Partitions = 0
	if _, n, err := bus.EnsureReadingsStream(ctx, js, c); err != nil || n != 16 {
		t.Fatalf("partitions unset on a stream of 16: %d, %v", n, err)
	}
}

// Unset, a new stream gets DefaultPartitions.
func TestPartitionsDefault(t *testing.T) {
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	if _, n, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{Replicas: 1, MaxAge: time.Hour, MaxBytes: 1 << 20}); err != nil || n != bus.DefaultPartitions {
		t.Fatalf("new stream with partitions unset: %d, %v", n, err)
	}
	if n, err := bus.PartitionsOf(ctx, js); err != nil || n != bus.DefaultPartitions {
		t.Fatalf("PartitionsOf = %d, %v", n, err)
	}
}
