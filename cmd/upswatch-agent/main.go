// Command upswatch-agent runs beside a UPS on a NUT host: it reads upsd
// and publishes to upswatch over MQTT (see package agent). main only
// parses flags and calls the packages.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/agent"
	"github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/agent/nut"
)

const usage = `upswatch-agent: reports the UPS of a NUT host to upswatch

Usage:
  upswatch-agent [run] [--config FILE]     read upsd and publish (the service)
  upswatch-agent register --api URL --token TOKEN --ups NAME [--serial S] [--name N] [--site S] [--config FILE]
                                          register a UPS with upswatch and add it,
                                          with its MQTT password, to the config (mode 0600)
  upswatch-agent check [--config FILE]    show what upsd reports for each unit, its client
                                          certificate if any, and whether the broker
                                          accepts its credentials
  upswatch-agent config keys              list every config key and its env variable

The configuration is FILE (default ` + config.DefaultPath + `), then
UPSWATCH_AGENT_* variables.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runCmd(args, stderr)
	case "register":
		err = registerCmd(args, stdout)
	case "check":
		err = checkCmd(args, stdout)
	case "config":
		if len(args) == 1 && args[0] == "keys" {
			for _, k := range config.Keys() {
				fmt.Fprintf(stdout, "%-24s %s\n", k[0], k[1])
			}
			return 0
		}
		fmt.Fprint(stderr, usage)
		return 2
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "upswatch-agent: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "upswatch-agent %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "configuration file (default "+config.DefaultPath+")")
}

func read(path string) (config.Config, string, error) {
	explicit := path != ""
	if !explicit {
		path = config.DefaultPath
	}
	c, err := config.Read(path, explicit, os.LookupEnv)
	return c, path, err
}

func logger(c config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, _, err := read(*path)
	if err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	a, err := agent.New(c, logger(c, stderr))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}

func registerCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	path := configFlag(fs)
	api := fs.String("api", "", "upswatch's HTTP API, e.g. https://upswatch.example (default: the config's api)")
	token := fs.String("token", "", "API token: the admin token, or an owner account's token (default $UPSWATCH_AGENT_TOKEN)")
	upsName := fs.String("ups", "", "the UPS's name on upsd (required)")
	serial := fs.String("serial", "", "serial to register (default: the UPS's own ups.serial/device.serial)")
	name := fs.String("name", "", "the unit's display name (default: the UPS's model, or its upsd name)")
	site := fs.String("site", "", "site id for facility managers (optional)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, cfgPath, err := read(*path)
	if err != nil {
		return err
	}
	if *api == "" {
		*api = c.API
	}
	if *token == "" {
		*token = os.Getenv("UPSWATCH_AGENT_TOKEN")
	}
	switch {
	case *api == "":
		return errors.New("--api is required (or api in the config)")
	case *token == "":
		return errors.New("--token is required (or UPSWATCH_AGENT_TOKEN)")
	case *upsName == "":
		return errors.New("--ups is required: the UPS's name on upsd (upsc -l lists them)")
	}
	c.API = *api
	if err := c.ValidateConnection(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if *serial == "" || *name == "" {
		vars, err := readUPS(ctx, c, *upsName)
		if err != nil {
			return err
		}
		if *serial == "" {
			if *serial, err = agent.SerialFromVars(vars); err != nil {
				return fmt.Errorf("%s: %w (or pass --serial)", *upsName, err)
			}
		}
		if *name == "" {
			*name = *upsName
			for _, v := range vars {
				if v.Name == "device.model" || (v.Name == "ups.model" && *name == *upsName) {
					*name = strings.TrimSpace(v.Value)
				}
			}
		}
	}
	if !config.ValidSerial(*serial) {
		return fmt.Errorf("serial %q: must be 12 or 16 digits", *serial)
	}
	password, err := registerUnit(ctx, *api, *token, *serial, *name, *site)
	if err != nil {
		return err
	}
	if err := config.SaveUnit(cfgPath, config.Unit{UPS: *upsName, Serial: *serial, Password: password}); err != nil {
		return fmt.Errorf("registered %s, but could not save its credentials: %w", *serial, err)
	}
	fmt.Fprintf(stdout, "registered %s as %s; credentials saved in %s (mode 0600)\n", *upsName, *serial, cfgPath)
	return nil
}

func readUPS(ctx context.Context, c config.Config, ups string) ([]nut.Var, error) {
	vars, _, err := readUPSTLS(ctx, c, ups)
	return vars, err
}

// readUPSTLS lists a UPS's variables and says whether the session with
// upsd was encrypted.
func readUPSTLS(ctx context.Context, c config.Config, ups string) ([]nut.Var, bool, error) {
	opts, err := agent.NUTOptions(c.NUT, 10*time.Second)
	if err != nil {
		return nil, false, err
	}
	cl, err := nut.Dial(ctx, c.NUT.Addr, opts)
	if err != nil {
		return nil, false, err
	}
	defer cl.Close()
	vars, err := cl.ListVars(ctx, ups)
	return vars, cl.TLS(), err
}

// registerUnit calls POST /v1/units and returns the unit's MQTT password.
func registerUnit(ctx context.Context, api, token, serial, name, site string) (string, error) {
	body, _ := json.Marshal(map[string]string{"serial": serial, "name": name, "site": site})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(api, "/")+"/v1/units", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("register: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("register: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
			return "", fmt.Errorf("register %s: upswatch refused (%d %s): %s", serial, resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return "", fmt.Errorf("register %s: upswatch answered %s", serial, resp.Status)
	}
	var ok struct {
		MQTT struct {
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"mqtt"`
	}
	if err := json.Unmarshal(raw, &ok); err != nil || ok.MQTT.Password == "" {
		return "", fmt.Errorf("register %s: the answer carries no MQTT password", serial)
	}
	if ok.MQTT.Username != "" && ok.MQTT.Username != serial {
		return "", fmt.Errorf("register %s: the broker username is %q, not the serial", serial, ok.MQTT.Username)
	}
	return ok.MQTT.Password, nil
}

func checkCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, _, err := read(*path)
	if err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	tlsCfg, err := agent.BrokerTLS(c.Broker)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, u := range c.Units {
		fmt.Fprintf(stdout, "== %s@%s\n", u.UPS, c.NUT.Addr)
		vars, encrypted, err := readUPSTLS(ctx, c, u.UPS)
		if err != nil {
			fmt.Fprintf(stdout, "upsd: FAILED: %v\n", err)
			errs = append(errs, fmt.Errorf("%s: upsd: %w", u.UPS, err))
			continue
		}
		fmt.Fprintf(stdout, "upsd: ok (TLS: %v)\n", encrypted)
		for _, v := range vars {
			fmt.Fprintf(stdout, "%s: %s\n", v.Name, v.Value)
		}
		serial := u.Serial
		if serial == "" {
			if serial, err = agent.SerialFromVars(vars); err != nil {
				fmt.Fprintf(stdout, "serial: FAILED: %v\n", err)
				errs = append(errs, fmt.Errorf("%s: %w", u.UPS, err))
				continue
			}
		}
		certFile, keyFile := c.Certificate(u)
		how := "password"
		if certFile != "" {
			how = "certificate"
			if err := showCertificate(stdout, certFile, keyFile, serial); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", u.UPS, err))
				continue
			}
		}
		cl := paho.NewClient(agent.ClientOptions(c.Broker, agent.UnitTLS(tlsCfg, certFile, keyFile), serial, u.Password).
			SetClientID(fmt.Sprintf("upswatch-agent-check-%s-%d", serial, time.Now().UnixNano())).
			SetCleanSession(true).SetAutoReconnect(false))
		tok := cl.Connect()
		switch {
		case !tok.WaitTimeout(15 * time.Second):
			err = errors.New("no answer within 15s")
		default:
			err = agent.ExplainRefusal(tok.Error(), certFile, keyFile, serial, time.Now())
		}
		if err != nil {
			fmt.Fprintf(stdout, "broker %s as %s: FAILED (%s): %v\n", c.Broker.URL, serial, how, err)
			errs = append(errs, fmt.Errorf("%s: broker: %w", u.UPS, err))
			continue
		}
		cl.Disconnect(250)
		fmt.Fprintf(stdout, "broker %s as %s: accepted (%s)\n", c.Broker.URL, serial, how)
	}
	return errors.Join(errs...)
}

// showCertificate prints a unit's client certificate: subject, names,
// issuer, expiry, and what the agent sees wrong with it for serial.
func showCertificate(w io.Writer, certFile, keyFile, serial string) error {
	cert, err := agent.LoadCertificate(certFile, keyFile)
	if err != nil {
		fmt.Fprintf(w, "certificate: FAILED: %v\n", err)
		return err
	}
	now := time.Now()
	fmt.Fprintf(w, "certificate %s: subject %s (names %s), issuer %s, expires %s (in %s)\n", certFile,
		cert.Leaf.Subject, strings.Join(cert.Names(), ", "), cert.Leaf.Issuer,
		cert.Leaf.NotAfter.UTC().Format(time.RFC3339), cert.Leaf.NotAfter.Sub(now).Round(time.Hour))
	if p := cert.Problem(serial, now); p != "" {
		fmt.Fprintf(w, "certificate: WARNING: %s\n", p)
	}
	return nil
}
