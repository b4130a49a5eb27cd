package agent_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	agentconfig "github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/testcerts"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

// Against serve's TLS listener under mqtt.device_auth: certificate, a
// unit with a client certificate for its serial and no password
// publishes and its reading is stored; a unit whose certificate names
// another serial is refused by the broker, and the agent says why.
func TestClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA := testcerts.NewCA(t, "server CA")
	caFile := testcerts.Write(t, dir, "server-ca.crt", serverCA.CertPEM)
	serverCert, serverKey := testcerts.WritePair(t, dir, "server", serverCA.Server(t, "upswatch"))
	factory := testcerts.NewCA(t, "factory CA")
	factoryFile := testcerts.Write(t, dir, "factory.crt", factory.CertPEM)
	s := startServe(t, filepath.Join(dir, "data"), "", "", func(c *config.Config) {
		c.MQTT.TLSListen = "127.0.0.1:0"
		c.MQTT.CertFile, c.MQTT.KeyFile = serverCert, serverKey
		c.MQTT.ClientCA, c.MQTT.DeviceAuth = factoryFile, "certificate"
	})
	t.Cleanup(s.stop)

	good, bad, other := newSerial(), newSerial(), newSerial()
	s.register(t, good)
	s.register(t, bad)
	now := time.Now()
	goodCert, goodKey := testcerts.WritePair(t, dir, good, factory.Client(t, good, now.Add(-time.Hour), now.Add(time.Hour)))
	otherCert, otherKey := testcerts.WritePair(t, dir, other, factory.Client(t, other, now.Add(-time.Hour), now.Add(time.Hour)))
	n := testenv.NUT(t, testenv.NUTUnit{Name: "good", Dump: baseDump(good, 100)}, testenv.NUTUnit{Name: "bad", Dump: baseDump(bad, 90)})
	c := agentConfig(t, n, s,
		agentconfig.Unit{UPS: "good", Serial: good, CertFile: goodCert, KeyFile: goodKey},
		agentconfig.Unit{UPS: "bad", Serial: bad, CertFile: otherCert, KeyFile: otherKey})
	c.Broker.URL, c.Broker.CAFile = "ssl://"+s.app.MQTTTLSAddr(), caFile
	ra := runAgent(t, c)

	wait.Within(t, 10*time.Second, "the certified unit's reading stored", func() bool { return s.latest(good) != nil })
	if st := ra.stats(good); st.BrokerError != "" {
		t.Errorf("certified unit: broker error %q", st.BrokerError)
	}
	wait.Within(t, 10*time.Second, "the refusal of another serial's certificate", func() bool { return ra.stats(bad).BrokerError != "" })
	st := ra.stats(bad)
	for _, w := range []string{"the broker refused the unit's certificate", "names " + other + ", not the unit's serial " + bad, "not Authorized"} {
		if !strings.Contains(st.BrokerError, w) {
			t.Errorf("refusal %q lacks %q", st.BrokerError, w)
		}
	}
	if st.Published != 0 || s.latest(bad) != nil {
		t.Errorf("the unit with another serial's certificate published %d readings", st.Published)
	}
}
