package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/keyring"
	"github.com/upswatch/upswatch/notify/fcm/fcmfake"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/rules/engine"
)

// firstTime records when each named condition first held.
type firstTime struct {
	mu sync.Mutex
	at map[string]time.Duration
}

func (f *firstTime) watch(stop <-chan struct{}, from time.Time, conds map[string]func() bool) {
	f.at = map[string]time.Duration{}
	go func() {
		for {
			for name, cond := range conds {
				f.mu.Lock()
				_, seen := f.at[name]
				f.mu.Unlock()
				if !seen && cond() {
					f.mu.Lock()
					f.at[name] = time.Since(from)
					f.mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

func (f *firstTime) get(name string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.at[name]
	return d, ok
}

// consumersIdle reports whether the rule engine's and the notifier's
// consumers have nothing pending or unacked.
func consumersIdle(t *testing.T, js jetstream.JetStream, partitions int) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	type cons struct{ stream, name string }
	all := []cons{{pipeline.AlertsStream, pipeline.IntakeConsumer}, {pipeline.OutboxStream, pipeline.SenderConsumerPrefix + "fcm"}}
	for p := range partitions {
		all = append(all, cons{bus.ReadingsStream, engine.ConsumerPrefix + strconv.Itoa(p)})
	}
	for _, c := range all {
		info, err := js.Consumer(ctx, c.stream, c.name)
		if err != nil {
			return false
		}
		ci, err := info.Info(ctx)
		if err != nil || ci.NumPending != 0 || ci.NumAckPending != 0 {
			return false
		}
	}
	return true
}

// TestClusterLosesNothing runs two serve instances on a three-node NATS
// cluster (streams and buckets R3), Mosquitto with a shared subscription
// and InfluxDB, under load from 40 units. One NATS node and the instance
// owning the most rule partitions are killed with SIGKILL; the node comes
// back, the instance only at the end. Right after the kill 20 units lose mains. Every reading a device
// got a PUBACK for is stored exactly once, each of the 20 owners is
// pushed on_battery once within 45 s, and nothing is pushed twice once the
// killed instance is back and everything is processed. It logs how long
// the survivor took to take over the dead instance's MQTT session and
// rule partitions and how many messages it drained.
func TestClusterLosesNothing(t *testing.T) {
	const units, outageUnits, perUnit, partitions = 40, 20, 45, 4
	ss := serials(500, units)
	cluster := testenv.NATS(t, 3)
	broker := mosquittoFor(t, ss)
	influx := testenv.Influxd(t)
	fcm := fcmfake.New()
	t.Cleanup(fcm.Close)
	keys, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	keysEnv, err := keys.EnvValue()
	if err != nil {
		t.Fatal(err)
	}
	const token = "cluster-admin-token-0123456789"
	instance := func(id string) *daemon {
		d := newDaemon(t,
			"UPSWATCH_ADMIN_TOKEN="+token, "UPSWATCH_KEYS="+keysEnv,
			"UPSWATCH_NATS_URL="+cluster.URLs(), "UPSWATCH_NATS_REPLICAS=3",
			"UPSWATCH_NATS_PARTITIONS="+strconv.Itoa(partitions),
			"UPSWATCH_MQTT_URL="+broker.URL, "UPSWATCH_MQTT_USERNAME="+ingestCred.Username,
			"UPSWATCH_MQTT_PASSWORD="+ingestCred.Password, "UPSWATCH_MQTT_SHARED_GROUP=upswatch",
			"UPSWATCH_MQTT_CLIENT_ID=upswatch-"+id,
			"UPSWATCH_INFLUX_URL="+influx.URL, "UPSWATCH_INFLUX_BUCKET="+influx.Bucket, "UPSWATCH_INFLUX_ORG="+influx.Org,
			"UPSWATCH_NOTIFY_FCM_PROJECT_ID=upswatch-test", "UPSWATCH_NOTIFY_FCM_ENDPOINT="+fcm.URL(),
		)
		d.client.token = token
		return d
	}
	a, b := instance("a"), instance("b")
	a.start()
	b.start()

	devs := map[string]paho.Client{}
	for i, serial := range ss {
		a.register(serial)
		if i < outageUnits {
			code, body := a.call("POST", "/v1/accounts", map[string]any{
				"id": "owner-" + serial, "contacts": map[string]any{"fcm_tokens": []string{"tok-" + serial}},
				"preferences": map[string]any{"channels": map[string][]string{"critical": {"fcm"}, "warning": {"fcm"}}},
				"units":       []string{serial},
			}, nil)
			if code != http.StatusCreated {
				t.Fatalf("create account: %d %s", code, body)
			}
		}
		devs[serial] = connectDevice(t, broker.URL, fmt.Sprintf("dev-%d", i), serial, "pw-"+serial)
	}
	eventually(t, "b's registry knows every unit", 20*time.Second, func() bool {
		for _, s := range ss {
			if !b.known(s) {
				return false
			}
		}
		return true
	})

	l := newLoad(time.Now().Truncate(time.Second), perUnit, time.Second, devs)
	t.Cleanup(l.halt)
	l.start()
	const owned = "upswatch_rules_owned_partitions"
	eventually(t, "both instances ingesting, every partition owned", 20*time.Second, func() bool {
		return a.metric("upswatch_ingest_readings_accepted_total") > 0 && b.metric("upswatch_ingest_readings_accepted_total") > 0 &&
			a.metric(owned)+b.metric(owned) == partitions
	})
	// The victim is the instance owning the most partitions, so that the
	// survivor has partitions as well as a session to take over.
	victim, survivor := a, b
	if b.metric(owned) > a.metric(owned) {
		victim, survivor = b, a
	}
	victimOwned := victim.metric(owned)

	cluster.Nodes[1].Kill()
	victim.kill()
	killed := time.Now()
	var times firstTime
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	times.watch(stopWatch, killed, map[string]func() bool{
		"MQTT session taken over":    func() bool { return survivor.metric("upswatch_ingest_session_takeovers_total") >= 1 },
		"rule partitions taken over": func() bool { return survivor.metric(owned) == partitions },
	})
	for _, u := range l.units {
		if strings.Compare(u.serial, ss[outageUnits-1]) <= 0 {
			u.mainsLost.Store(true)
		}
	}
	lost := time.Now()

	reqs, err := fcm.WaitRequests(outageUnits, 45*time.Second)
	if err != nil {
		t.Fatalf("on_battery pushes within 45 s of the mains loss: %v (got %d)", err, len(fcm.Requests()))
	}
	pushed := time.Since(lost)
	cluster.Nodes[1].Start(t)
	perToken := map[string]int{}
	for _, r := range reqs {
		perToken[r.Token]++
	}
	for _, s := range ss[:outageUnits] {
		if perToken["tok-"+s] != 1 {
			t.Errorf("owner of %s pushed %d times, want once: %v", s, perToken["tok-"+s], perToken)
		}
	}

	l.done(t, 90*time.Second)
	if f := l.failed(); f != 0 {
		t.Logf("%d publishes not acked by the broker within %s", f, l.wait)
	}
	l.verify(t, survivor.client, 90*time.Second, false)

	takeover, okT := times.get("MQTT session taken over")
	parts, okP := times.get("rule partitions taken over")
	if !okT || !okP {
		t.Errorf("taken over: MQTT session %v, the %v rule partitions of the dead instance %v", okT, victimOwned, okP)
	}
	t.Logf("after the kill: MQTT session taken over in %s, its %v rule partitions in %s; %v messages drained from the session; all %d owners pushed %s after the mains loss; %d readings acked, all stored once",
		takeover.Round(100*time.Millisecond), victimOwned, parts.Round(100*time.Millisecond),
		survivor.metric("upswatch_ingest_session_drained_messages_total"), outageUnits, pushed.Round(100*time.Millisecond), l.acked())

	// The killed instance returns; once every consumer is idle, still
	// exactly one push per owner.
	victim.start()
	nc, err := nats.Connect(cluster.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "rule engine and notifier consumers idle", 60*time.Second, func() bool { return consumersIdle(t, js, partitions) })
	if n := len(fcm.Requests()); n != outageUnits {
		t.Fatalf("%d pushes after the instance returned, want %d", n, outageUnits)
	}
}
