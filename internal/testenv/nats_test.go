package testenv

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestNATSClusterSurvivesANode: three nodes; an R3 stream keeps taking
// messages with one node killed, and the node rejoins on restart.
func TestNATSClusterSurvivesANode(t *testing.T) {
	c := NATS(t, 3)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	publish := func(n int) {
		for range n {
			sent++
			// A message id makes a retry after a lost ack a duplicate the
			// stream drops, so the count below stays exact.
			id := jetstream.WithMsgID("m-" + strconv.Itoa(sent))
			for {
				// Each try has its own short deadline: a publish whose
				// ack is lost in a leader election would otherwise wait
				// out the whole test's.
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "t.x", []byte("m"), id)
				pcancel()
				if err == nil {
					break
				} else if ctx.Err() != nil {
					t.Fatalf("publish: %v", err)
				}
				time.Sleep(50 * time.Millisecond) // a leader election in progress
			}
		}
	}
	publish(10)
	c.Nodes[0].Kill()
	publish(10)
	c.Nodes[0].Start(t)
	publish(10)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 30 || info.Config.Replicas != 3 {
		t.Fatalf("stream holds %d messages with %d replicas, want 30 with 3", info.State.Msgs, info.Config.Replicas)
	}
}
