package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/upswatch/upswatch/sim"
	"github.com/upswatch/upswatch/ups"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func simCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	cf := addClientFlags(fs)
	n := fs.Int("units", 3, "number of simulated units")
	first := fs.Uint64("first-serial", 900000000001, "serial of the first unit (12 digits); the others follow")
	credsFile := fs.String("creds", "", "file of 'serial password' lines to use instead of registering (default DATA_DIR/sim-units.txt, created by registering the units through the API)")
	broker := fs.String("broker", "", "MQTT broker URL (default tcp:// + mqtt.listen; ssl://host:8883 for TLS)")
	caFile := fs.String("cafile", "", "PEM CA bundle to trust for an ssl:// broker (default: the system roots)")
	certDir := fs.String("cert-dir", "", "directory of device certificates SERIAL.crt and SERIAL.key (as `upswatch unit cert` writes them); units with one present it")
	interval := fs.Duration("interval", 5*time.Second, "time between two readings of one unit")
	rate := fs.Float64("rate", 0, "total readings per second over all units (overrides --interval)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until Ctrl-C)")
	count := fs.Int("count", 0, "readings per unit (0: unlimited)")
	qos := fs.Int("qos", 1, "MQTT QoS of telemetry")
	format := fs.String("format", "json", "payload form: json or upsc")
	seed := fs.Int64("seed", 1, "random seed (same seed, same readings)")
	site := fs.String("site", "sim", "site of the units this run registers")
	var events, dumps multiFlag
	fs.Var(&events, "event", "scripted event kind@at[+for][:serial,...|:site=NAME], e.g. outage@30s+10m, flicker@45s, overload@0s+2m, lowbattery@1m, commloss@2m+30s, blackout@30s+5m:site=hq (repeatable)")
	fs.Var(&dumps, "dump", "upsc dump file (or directory of them) to model units on (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, cfg, err := cf.client()
	if err != nil && *credsFile == "" {
		return err
	}
	if *broker == "" {
		*broker = "tcp://" + cfg.MQTT.Listen
	}
	path := *credsFile
	if path == "" {
		path = filepath.Join(cfg.DataDir, "sim-units.txt")
	}
	units, err := simUnits(c, path, *n, *first, *credsFile != "", *site, stdout)
	if err != nil {
		return err
	}
	var evs []sim.Event
	for _, e := range events {
		ev, err := sim.ParseEvent(e)
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	if slices.ContainsFunc(evs, func(e sim.Event) bool { return e.Site != "" }) {
		// An event of a site: the API knows each unit's site.
		if c == nil {
			return errors.New("an event of a site needs the API to learn the units' sites")
		}
		var out struct {
			Units []unitInfo `json:"units"`
		}
		if err := c.do("GET", "/v1/units", nil, &out); err != nil {
			return fmt.Errorf("units' sites: %w", err)
		}
		sites := make(map[ups.Serial]string, len(out.Units))
		for _, u := range out.Units {
			sites[ups.Serial(u.Serial)] = u.Site
		}
		for i := range units {
			units[i].Site = sites[units[i].Serial]
		}
	}
	files, err := expandDumps(dumps)
	if err != nil {
		return err
	}
	tlsConf, certs, err := simTLS(*caFile, *certDir, units)
	if err != nil {
		return err
	}
	s, err := sim.New(sim.Config{
		TLS: tlsConf, Certificates: certs,
		BrokerURL: *broker, Prefix: cfg.MQTT.TopicPrefix, Units: units, Interval: *interval, Rate: *rate,
		Duration: *duration, Count: *count, QoS: byte(*qos), Format: *format, Dumps: files, Events: evs,
		Seed: *seed, Logger: newLogger(cfg, stderr),
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "Simulating %d units on %s (Ctrl-C to stop)\n", len(units), *broker)
	err = s.Run(ctx)
	st := s.Stats()
	fmt.Fprintf(stdout, "published %d readings (acked %d, errors %d, skipped %d) from %d connected units\n",
		st.Published, st.Acked, st.Errors, st.Skipped, st.Connected)
	return err
}

// simUnits loads unit credentials from path, registering (through the API)
// and appending whatever units are missing unless fixed is set.
func simUnits(c *apiClient, path string, n int, first uint64, fixed bool, site string, stdout io.Writer) ([]sim.Unit, error) {
	var units []sim.Unit
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			serial, pw, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
			if !ok || strings.HasPrefix(serial, "#") {
				continue
			}
			units = append(units, sim.Unit{Serial: ups.Serial(serial), Password: strings.TrimSpace(pw)})
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	} else if fixed || !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if fixed || len(units) >= n {
		if len(units) > n && !fixed {
			units = units[:n]
		}
		return units, nil
	}
	if c == nil {
		return nil, errors.New("cannot register units: no API client")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	have := map[ups.Serial]bool{}
	for _, u := range units {
		have[u.Serial] = true
	}
	for s := first; len(units) < n; s++ {
		serial := ups.Serial(fmt.Sprintf("%012d", s))
		if have[serial] {
			continue
		}
		var u unitInfo
		err := c.do("POST", "/v1/units", map[string]string{"serial": string(serial), "name": "simulated " + strconv.Itoa(len(units)+1), "site": site}, &u)
		if err != nil {
			if strings.Contains(err.Error(), "already_registered") {
				continue // registered earlier without saving the password: skip it
			}
			return nil, fmt.Errorf("register %s: %w", serial, err)
		}
		if _, err := fmt.Fprintf(f, "%s %s\n", serial, u.MQTT.Password); err != nil {
			return nil, err
		}
		units = append(units, sim.Unit{Serial: serial, Password: u.MQTT.Password})
	}
	fmt.Fprintf(stdout, "Registered simulated units; credentials saved in %s\n", path)
	return units, nil
}

func expandDumps(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".dev") {
				out = append(out, path)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// simTLS reads the CA bundle to trust and the units' certificates found
// in certDir (either may be empty).
func simTLS(caFile, certDir string, units []sim.Unit) (*tls.Config, map[ups.Serial]*tls.Certificate, error) {
	var conf *tls.Config
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--cafile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--cafile %s holds no PEM certificate", caFile)
		}
		conf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if certDir == "" {
		return conf, nil, nil
	}
	out := map[ups.Serial]*tls.Certificate{}
	for _, u := range units {
		base := filepath.Join(certDir, string(u.Serial))
		c, err := tls.LoadX509KeyPair(base+".crt", base+".key")
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("certificate of %s: %w", u.Serial, err)
		}
		out[u.Serial] = &c
	}
	return conf, out, nil
}
