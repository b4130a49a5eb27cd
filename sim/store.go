package sim

import (
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// resumeSafeStore is paho's memory store, except that Put keeps a copy of
// a PUBLISH rather than the packet itself. On reconnect paho's resume sets
// the DUP flag on every stored PUBLISH, including one published a moment
// before (the online status from OnConnect, or a reading) that the writer
// goroutine is encoding at that instant, and encoding writes to the
// packet too: a data race, reported upstream as
// eclipse-paho/paho.mqtt.golang#703. With a copy in the store, resume
// and the writer never share a packet; at worst the message goes out
// twice, which QoS 1 allows. Put runs in Publish before the packet is
// handed to the writer, so taking the copy there is itself race-free.
type resumeSafeStore struct {
	*mqtt.MemoryStore
}

func newResumeSafeStore() *resumeSafeStore {
	return &resumeSafeStore{mqtt.NewMemoryStore()}
}

func (s *resumeSafeStore) Put(key string, m packets.ControlPacket) {
	if pub, ok := m.(*packets.PublishPacket); ok {
		cp := *pub
		m = &cp
	}
	s.MemoryStore.Put(key, m)
}
