package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/upswatch/upswatch/sim"
)

// The alert latency benchmark's background devices run in a child
// process: this test binary, started again with loadChildEnv set. Devices
// are not in the server's process in any real deployment, and in the
// benchmark's own process their thousand MQTT clients and their garbage
// shared the Go scheduler's run queue and collector with the pipeline
// being measured. The child still shares the machine's two cores.
// UPSWATCH_BENCH_LOAD_INPROCESS=1 runs them in-process, as before, for a
// side-by-side figure.
const loadChildEnv = "UPSWATCH_BENCH_LOAD_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(loadChildEnv) != "" {
		os.Exit(runLoadChild(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// loadSpec is what the parent sends the child on stdin, one JSON line.
type loadSpec struct {
	BrokerURL string     `json:"broker_url"`
	Units     []sim.Unit `json:"units"`
	Rate      float64    `json:"rate"`
	QoS       byte       `json:"qos"`
	Seed      int64      `json:"seed"`
}

// runLoadChild runs the simulator until its stdin closes, writing its
// stats as a JSON line every 100 ms and once more at the end.
func runLoadChild(in io.Reader, out io.Writer) int {
	rd := bufio.NewReader(in)
	line, err := rd.ReadBytes('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, "load child: reading the spec:", err)
		return 2
	}
	var spec loadSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		fmt.Fprintln(os.Stderr, "load child: spec:", err)
		return 2
	}
	s, err := sim.New(sim.Config{BrokerURL: spec.BrokerURL, Units: spec.Units, Rate: spec.Rate, QoS: spec.QoS, Seed: spec.Seed})
	if err != nil {
		fmt.Fprintln(os.Stderr, "load child:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = io.Copy(io.Discard, rd); cancel() }() // the parent closed stdin: stop
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	enc := json.NewEncoder(out)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			_ = enc.Encode(s.Stats())
			if err != nil {
				fmt.Fprintln(os.Stderr, "load child:", err)
				return 1
			}
			return 0
		case <-tick.C:
			if err := enc.Encode(s.Stats()); err != nil {
				cancel()
			}
		}
	}
}

// backgroundLoad is the benchmark's view of its background devices,
// wherever they run.
type backgroundLoad interface {
	Stats() sim.Stats
	// Err is set once the load has ended on its own (it should not).
	Err() error
	Stop() error
}

func startLoad(spec loadSpec) (backgroundLoad, error) {
	if os.Getenv("UPSWATCH_BENCH_LOAD_INPROCESS") == "1" {
		return startLoadInProcess(spec)
	}
	return startLoadChild(spec)
}

// ending is how a load tells it ended: err is set before ended closes.
type ending struct {
	ended chan struct{}
	err   error
}

func (e *ending) Err() error {
	select {
	case <-e.ended:
		return e.err
	default:
		return nil
	}
}

// childLoad is the simulator in a child process.
type childLoad struct {
	ending
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	stats sim.Stats
}

func startLoadChild(spec loadSpec) (*childLoad, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), loadChildEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the load child: %w", err)
	}
	l := &childLoad{cmd: cmd, stdin: stdin, ending: ending{ended: make(chan struct{})}}
	go func() {
		dec := json.NewDecoder(stdout)
		for {
			var st sim.Stats
			if err := dec.Decode(&st); err != nil {
				break
			}
			l.mu.Lock()
			l.stats = st
			l.mu.Unlock()
		}
		err := cmd.Wait()
		if err == nil {
			err = errors.New("the load child exited")
		}
		l.err = err
		close(l.ended)
	}()
	line, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if _, err := stdin.Write(append(line, '\n')); err != nil {
		_ = l.Stop()
		return nil, fmt.Errorf("send the load spec: %w", err)
	}
	return l, nil
}

func (l *childLoad) Stats() sim.Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Stop closes the child's stdin and waits for its last stats.
func (l *childLoad) Stop() error {
	_ = l.stdin.Close()
	select {
	case <-l.ended:
	case <-time.After(30 * time.Second):
		_ = l.cmd.Process.Kill()
		<-l.ended
		return errors.New("the load child did not stop within 30s")
	}
	var ee *exec.ExitError
	if errors.As(l.err, &ee) {
		return fmt.Errorf("the load child: %w", l.err)
	}
	return nil
}

// inProcessLoad is the simulator in the benchmark's own process.
type inProcessLoad struct {
	ending
	s      *sim.Simulator
	cancel context.CancelFunc
}

func startLoadInProcess(spec loadSpec) (*inProcessLoad, error) {
	s, err := sim.New(sim.Config{BrokerURL: spec.BrokerURL, Units: spec.Units, Rate: spec.Rate, QoS: spec.QoS, Seed: spec.Seed})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &inProcessLoad{s: s, cancel: cancel, ending: ending{ended: make(chan struct{})}}
	go func() {
		l.err = s.Run(ctx)
		if l.err == nil && ctx.Err() == nil {
			l.err = errors.New("the simulator stopped")
		}
		close(l.ended)
	}()
	return l, nil
}

func (l *inProcessLoad) Stats() sim.Stats { return l.s.Stats() }

func (l *inProcessLoad) Stop() error {
	l.cancel()
	select {
	case <-l.ended:
		return l.err
	case <-time.After(30 * time.Second):
		return errors.New("sim did not stop within 30s")
	}
}
