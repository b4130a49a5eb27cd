// Command upswatch is the UPS telemetry and alerting daemon and its
// command-line tools. main only parses flags and calls the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/upswatch/upswatch/app"
	"github.com/upswatch/upswatch/config"
)

const usage = `upswatch: UPS telemetry and alerting

Usage:
  upswatch serve  [--config FILE]              run the daemon
  upswatch unit   add SERIAL [--name N] [--site S] | list | show SERIAL | remove SERIAL
  upswatch unit   rotate-password SERIAL | revoke SERIAL   new MQTT password / refuse its certificates so far
  upswatch unit   cert SERIAL --ca-cert F --ca-key F [--out DIR]   issue a device certificate (offline)
  upswatch sim    [--units N] [--rate R] [--event SPEC]...   simulate UPS units
  upswatch account add [--role R --name N --email E --region VN --language vi ...] | list | show ID | remove ID | export ID
  upswatch token  create ACCOUNT_ID             issue an API token for an account (shown once)
  upswatch keys   rotate                        new encryption key; re-encrypts all personal data
  upswatch keys   generate FILE | --env         a new keyring for the instances of a cluster to share
                                                (a file, or an UPSWATCH_KEYS=... line)
  upswatch notify test ACCOUNT_ID               send a test notification through each of the account's channels
  upswatch config keys                          list every config key and its env variable
  upswatch help

Every command reads the same configuration (--config, default
configs/upswatch.yaml if present, then UPSWATCH_* variables).
Run "upswatch COMMAND -h" for a command's flags.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "unit", "units":
		err = unitCmd(args[1:], stdout)
	case "sim":
		err = simCmd(args[1:], stdout, stderr)
	case "config":
		err = configCmd(args[1:], stdout)
	case "notify":
		err = notifyCmd(args[1:], stdout)
	case "account", "accounts":
		err = accountCmd(args[1:], stdout)
	case "token", "tokens":
		err = tokenCmd(args[1:], stdout)
	case "keys":
		err = keysCmd(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "upswatch: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "upswatch %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func loadConfig(path string) (config.Config, error) {
	return config.Load(path, os.LookupEnv)
}

func newLogger(c config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file (default "+config.DefaultPath+" if present)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(c, stderr)
	setMemoryLimit(c, log)
	a, err := app.New(c, log)
	if err != nil {
		return err
	}
	a.Out = stdout
	// SIGINT/SIGTERM: stop taking messages, finish in-flight ones, flush,
	// exit 0. A second signal kills the process the default way.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case sig := <-sigs:
			log.Info("stopping on signal", "signal", sig.String())
			cancel()
		case <-ctx.Done():
		}
		signal.Stop(sigs)
	}()
	return a.Run(ctx)
}

func configCmd(args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "keys" {
		return errors.New(`usage: upswatch config keys`)
	}
	for _, kv := range config.Keys() {
		fmt.Fprintf(stdout, "%-28s %s\n", kv[0], kv[1])
	}
	for _, kv := range config.EnvOnly() {
		fmt.Fprintf(stdout, "%-28s %s  (%s)\n", "-", kv[0], kv[1])
	}
	return nil
}

// setMemoryLimit applies the Go runtime's soft memory limit that
// memoryLimit picks.
func setMemoryLimit(c config.Config, log *slog.Logger) {
	limit, from := memoryLimit(c, os.Getenv("GOMEMLIMIT"), memlimit.FromCgroup)
	switch {
	case from == "GOMEMLIMIT":
		log.Info("go memory limit from GOMEMLIMIT", "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"), "memory_limit", c.MemoryLimit)
	case limit > 0:
		debug.SetMemoryLimit(limit)
		log.Info("go memory limit set", "from", from, "bytes", limit, "memory_limit", c.MemoryLimit)
	}
}

// cgroupShare is the part of a container's memory limit serve takes as
// its Go memory limit when memory_limit is unset: the rest is for what
// the runtime does not count (SQLite's page cache is in the Go heap;
// the kernel's buffers for thousands of sockets are not).
const cgroupShare = 0.9

// memoryLimit picks the Go memory limit and says where it comes from:
// GOMEMLIMIT (which the runtime read at start) wins; then memory_limit;
// unset, 90 % of the memory limit of serve's cgroup (a container), so
// the collector works harder near it instead of the kernel killing
// serve past it. memory_limit: 0 sets none. 0: no limit.
func memoryLimit(c config.Config, gomemlimit string, cgroup func() (uint64, error)) (int64, string) {
	if gomemlimit != "" {
		return 0, "GOMEMLIMIT"
	}
	if strings.TrimSpace(c.MemoryLimit) != "" {
		return c.MemoryLimitBytes(), "memory_limit"
	}
	n, err := cgroup()
	if err != nil || n == 0 || n > math.MaxInt64/2 {
		return 0, "" // no cgroup, or no limit on it
	}
	return int64(float64(n) * cgroupShare), "cgroup"
}
