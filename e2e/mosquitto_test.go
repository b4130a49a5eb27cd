package e2e

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/testenv"
)

var ingestCred = testenv.Credential{Username: "upswatch-ingest", Password: "ingest-secret"}

// mosquittoFor starts a mosquitto whose password file and ACL know the
// given units (password "pw-<serial>") and the ingest.
func mosquittoFor(t *testing.T, units []string) *testenv.Broker {
	t.Helper()
	var devs []testenv.Credential
	for _, s := range units {
		devs = append(devs, testenv.Credential{Username: s, Password: "pw-" + s})
	}
	return testenv.Mosquitto(t, testenv.MosquittoOptions{Devices: devs, Ingest: ingestCred, Persistence: true})
}

func withBroker(c config.Config, b *testenv.Broker, clientID string) config.Config {
	c.MQTT.URL = b.URL
	c.MQTT.Username = ingestCred.Username
	c.MQTT.Password = ingestCred.Password
	c.MQTT.ClientID = clientID
	return c
}

// Mosquitto restarts under load: the ingest notices, reconnects and
// resubscribes on its own (readiness comes back), readings published
// after the restart land, and every reading the broker acknowledged,
// before or after the restart, is in the history exactly once.
func TestMosquittoRestartUnderLoad(t *testing.T) {
	const units, perUnit = 8, 250 // 2000 readings at about 200/s
	ss := serials(200, units)
	broker := mosquittoFor(t, ss)
	srv := startServer(t, "serve", withBroker(baseConfig(t), broker, "upswatch-e2e"))

	devs := map[string]paho.Client{}
	for i, serial := range ss {
		srv.register(serial)
		devs[serial] = connectDevice(t, broker.URL, fmt.Sprintf("dev-%d", i), serial, "pw-"+serial)
	}
	l := newLoad(readingBase(), perUnit, 40*time.Millisecond, devs)
	t.Cleanup(l.halt)
	l.start()

	eventually(t, "a third of the load published", 30*time.Second, func() bool { return l.acked() >= units*perUnit/3 })
	broker.Stop()
	eventually(t, "ingest reports not ready while the broker is down", 10*time.Second, func() bool { return !srv.ready() })
	time.Sleep(2 * time.Second) // the outage lasts
	beforeRestart := l.acked()
	broker.Start()
	restarted := time.Now()
	eventually(t, "ready again after the broker restart", 30*time.Second, srv.ready)
	t.Logf("ingest ready %s after the broker restart; %d readings acked before it", time.Since(restarted).Round(time.Millisecond), beforeRestart)
	accepted := srv.metric("upswatch_ingest_readings_accepted_total")
	eventually(t, "new readings accepted after the restart", 30*time.Second, func() bool {
		return srv.metric("upswatch_ingest_readings_accepted_total") > accepted
	})

	l.done(t, 60*time.Second)
	if l.acked() <= beforeRestart {
		t.Fatalf("no reading acked after the restart (%d before, %d in all)", beforeRestart, l.acked())
	}
	if f := l.failed(); f != 0 {
		t.Errorf("%d publishes not acked within %s across the restart", f, l.wait)
	}
	l.verify(t, srv.client, 60*time.Second, false)
	t.Logf("%d of %d readings acked by the broker, all in history", l.acked(), units*perUnit)
}
