package e2e

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

// InfluxDB goes down for a while under load and comes back: the history
// writes fail and are retried, the readings wait in JetStream meanwhile,
// and at the end every reading the devices published is in InfluxDB
// exactly once, and the ingest accepted each of them once.
func TestInfluxOutageUnderLoad(t *testing.T) {
	influx := testenv.Influxd(t)
	c := baseConfig(t)
	c.Influx.URL = influx.URL
	c.Influx.Bucket = influx.Bucket
	c.Influx.Org = influx.Org
	c.Influx.Token = influx.Token
	c.Influx.Timeout = 2 * time.Second
	srv := startServer(t, "serve", c)

	const units, perUnit = 10, 300 // 3000 readings at about 300/s
	devs := map[string]paho.Client{}
	for i, serial := range serials(100, units) {
		r := srv.register(serial)
		devs[serial] = connectDevice(t, srv.app.MQTTURL(), fmt.Sprintf("dev-%d", i), r.MQTT.Username, r.MQTT.Password)
	}
	l := newLoad(readingBase(), perUnit, 33*time.Millisecond, devs)
	t.Cleanup(l.halt)
	l.start()

	wait.Within(t, 30*time.Second, "a third of the load published", func() bool { return l.acked() >= units*perUnit/3 })
	influx.Stop()
	outage := time.Now()
	// Let the outage last while the load goes on; the recorder must
	// notice it.
	wait.Within(t, 20*time.Second, "history writes failing", func() bool {
		return srv.metric("upswatch_history_write_errors_total") > 0
	})
	time.Sleep(3*time.Second - time.Since(outage))
	atStop := l.acked()
	influx.Start()
	t.Logf("influxd down for %s while %d readings were acked to devices", time.Since(outage).Round(time.Millisecond), atStop)

	l.done(t, 60*time.Second)
	if f := l.failed(); f != 0 || l.acked() != units*perUnit {
		t.Fatalf("devices: %d acked, %d failed; want all %d acked", l.acked(), f, units*perUnit)
	}
	l.verify(t, srv.client, 60*time.Second, true)
	if n := srv.metric("upswatch_ingest_readings_accepted_total"); n != units*perUnit {
		t.Errorf("ingest accepted %v readings, want %d", n, units*perUnit)
	}
	t.Logf("history: %v readings written, %v failed writes retried",
		srv.metric("upswatch_history_readings_written_total"), srv.metric("upswatch_history_write_errors_total"))
}
