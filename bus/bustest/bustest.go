// Package bustest starts a real in-process NATS server with JetStream for
// tests.
package bustest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
)

// Server starts an embedded NATS server storing under a temp dir and
// returns it with a connected client; both stop at test cleanup.
func Server(t testing.TB) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, js := Connect(t, ns)
	return ns, nc, js
}

// Dial connects a client to the NATS server at url (a real server, a
// cluster node, serve's embedded one on its port); the test's cleanup
// closes it.
func Dial(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Connect opens another in-process client to ns.
func Connect(t testing.TB, ns *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect("", bus.InProcess(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
