package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
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

// watch polls conds until the returned stop is called (which waits for
// the poller to end).
func (f *firstTime) watch(from time.Time, conds map[string]func() bool) (stop func()) {
	f.at = map[string]time.Duration{}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
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
			case <-quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { close(quit); <-done }
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
// clusterStack is two serve instances (a, b) on a three-node NATS cluster
// (R3), Mosquitto with the shared group "upswatch" and InfluxDB, with
// units registered, the first outageUnits owned by accounts pushed by
// FCM (token "tok-<serial>"), and their devices connected.
type clusterStack struct {
	cluster *testenv.NATSCluster
	a, b    *daemon
	fcm     *fcmfake.Server
	serials []string
	outage  map[string]bool
	devs    map[string]paho.Client
}

const clusterPartitions = 4

func newClusterStack(t *testing.T, units, outageUnits int) *clusterStack {
	const partitions = clusterPartitions
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
		d.client.Token = token
		return d
	}
	a, b := instance("a"), instance("b")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("instance a's log ends:\n%s\ninstance b's log ends:\n%s", a.logTail(), b.logTail())
		}
	})
	a.start()
	b.start()

	devs := map[string]paho.Client{}
	outage := map[string]bool{}
	for i, serial := range ss {
		a.register(serial)
		if i < outageUnits {
			outage[serial] = true
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
	wait.Within(t, 20*time.Second, "b's registry knows every unit", func() bool {
		for _, s := range ss {
			if !b.known(s) {
				return false
			}
		}
		return true
	})
	return &clusterStack{cluster: cluster, a: a, b: b, fcm: fcm, serials: ss, outage: outage, devs: devs}
}

// mainsLost switches the outage units of l to battery.
func (cs *clusterStack) mainsLost(l *load) {
	for _, u := range l.units {
		if cs.outage[u.serial] {
			u.mainsLost.Store(true)
		}
	}
}

// pushedOnce checks that each outage unit's owner got exactly one push.
func (cs *clusterStack) pushedOnce(t *testing.T, reqs []fcmfake.Request) {
	t.Helper()
	perToken := map[string]int{}
	for _, r := range reqs {
		perToken[r.Token]++
	}
	for s := range cs.outage {
		if perToken["tok-"+s] != 1 {
			t.Errorf("owner of %s pushed %d times, want once: %v", s, perToken["tok-"+s], perToken)
		}
	}
	if len(reqs) != len(cs.outage) {
		t.Errorf("%d pushes, want %d", len(reqs), len(cs.outage))
	}
}

// settled waits until the rule engine's and the notifier's consumers are
// idle: every reading evaluated, every alert routed and sent.
func (cs *clusterStack) settled(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect(cs.cluster.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	wait.Within(t, 60*time.Second, "rule engine and notifier consumers idle", func() bool {
		return consumersIdle(t, js, clusterPartitions)
	})
}

func TestClusterLosesNothing(t *testing.T) {
	const units, outageUnits, perUnit, partitions = 40, 20, 45, clusterPartitions
	cs := newClusterStack(t, units, outageUnits)
	a, b, devs, cluster, fcm := cs.a, cs.b, cs.devs, cs.cluster, cs.fcm
	l := newLoad(time.Now().Truncate(time.Second), perUnit, time.Second, devs)
	t.Cleanup(l.halt)
	l.start()
	const owned = "upswatch_rules_owned_partitions"
	wait.Within(t, 20*time.Second, "both instances ingesting, every partition owned", func() bool {
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
	stopWatch := times.watch(killed, map[string]func() bool{
		"MQTT session taken over":    func() bool { return survivor.metric("upswatch_ingest_session_takeovers_total") >= 1 },
		"rule partitions taken over": func() bool { return survivor.metric(owned) == partitions },
	})
	defer stopWatch()
	cs.mainsLost(l)
	lost := time.Now()

	reqs, err := fcm.WaitRequests(outageUnits, 45*time.Second)
	if err != nil {
		t.Fatalf("on_battery pushes within 45 s of the mains loss: %v (got %d)", err, len(fcm.Requests()))
	}
	pushed := time.Since(lost)
	cluster.Nodes[1].Start(t)
	cs.pushedOnce(t, reqs)

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
	cs.settled(t)
	cs.pushedOnce(t, fcm.Requests())
}

// TestClusterRollingRestart restarts both instances one by one (SIGTERM,
// start, ready) under load, with 20 units losing mains in between: every
// acked reading is stored once and each owner pushed once within 45 s
// (a partition left pinned to a stopped instance would wait out the rule
// consumers' ack wait, a minute).
func TestClusterRollingRestart(t *testing.T) {
	const units, outageUnits, perUnit = 40, 20, 40
	cs := newClusterStack(t, units, outageUnits)
	l := newLoad(time.Now().Truncate(time.Second), perUnit, time.Second, cs.devs)
	t.Cleanup(l.halt)
	l.start()
	restart := func(d *daemon) {
		began := time.Now()
		d.terminate()
		d.start()
		t.Logf("%s restarted and ready in %s", d.http, time.Since(began).Round(100*time.Millisecond))
	}
	wait.Within(t, 20*time.Second, "some load through", func() bool { return l.acked() >= units*3 })
	restart(cs.a)
	cs.mainsLost(l)
	lost := time.Now()
	restart(cs.b)
	reqs, err := cs.fcm.WaitRequests(outageUnits, 45*time.Second)
	if err != nil {
		t.Fatalf("on_battery pushes within 45 s of the mains loss: %v (got %d)", err, len(cs.fcm.Requests()))
	}
	t.Logf("all %d owners pushed %s after the mains loss", outageUnits, time.Since(lost).Round(100*time.Millisecond))
	cs.pushedOnce(t, reqs)
	l.done(t, 90*time.Second)
	if f := l.failed(); f != 0 {
		t.Logf("%d publishes not acked by the broker within %s", f, l.wait)
	}
	l.verify(t, cs.a.client, 90*time.Second, false)
	cs.settled(t)
	cs.pushedOnce(t, cs.fcm.Requests())
	t.Logf("%d readings acked, all stored once", l.acked())
}

// terminate stops serve with SIGTERM and waits for it to exit.
func (d *daemon) terminate() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.exited
	d.cmd = nil
}
