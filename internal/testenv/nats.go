package testenv

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const natsServerPkg = "github.com/nats-io/nats-server/v2"

// NATSServerBinary returns nats-server built from the version go.mod
// requires, into ToolsDir (once for concurrent test processes).
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	version, err := requiredVersion(filepath.Join(root, "go.mod"), natsServerPkg)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir := ToolsDir(t)
	bin := filepath.Join(dir, "nats-server-"+version)
	if isExecutable(bin) {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testenv: tools dir: %v", err)
	}
	unlock, err := lockFile(filepath.Join(dir, "nats-server.lock"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer unlock()
	if isExecutable(bin) {
		return bin
	}
	tmp := bin + ".build"
	cmd := exec.Command("go", "build", "-o", tmp, natsServerPkg)
	cmd.Dir = root // the module's own go.mod pins the version
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: go build %s: %v\n%s", natsServerPkg, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatalf("testenv: install nats-server: %v", err)
	}
	return bin
}

// requiredVersion reads a module's version from a go.mod require line.
func requiredVersion(gomod, module string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", fmt.Errorf("read go.mod: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == module {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read go.mod: %w", err)
	}
	return "", fmt.Errorf("go.mod does not require %s", module)
}

// NATSCluster is a cluster of nats-server processes with JetStream.
type NATSCluster struct {
	Nodes []*NATSNode
}

// NATSNode is one server of a NATSCluster, restartable on its ports and
// store.
type NATSNode struct {
	URL     string // nats://127.0.0.1:port
	monitor string // http://127.0.0.1:port
	proc    *process
}

// URLs is every node's client URL, comma-separated (as nats.Connect and
// nats.url take them).
func (c *NATSCluster) URLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.URL)
	}
	return strings.Join(urls, ",")
}

// NATS starts a cluster of n nodes with JetStream on 127.0.0.1, data in
// t.TempDir(), and waits until every node reports JetStream healthy
// (a meta leader elected). They are stopped when the test ends.
func NATS(t testing.TB, n int) *NATSCluster {
	t.Helper()
	bin := NATSServerBinary(t)
	dir := t.TempDir()
	type ports struct{ client, cluster, monitor int }
	ps := make([]ports, n)
	for i := range ps {
		ps[i] = ports{FreePort(t), FreePort(t), FreePort(t)}
	}
	var routes []string
	for _, p := range ps {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p.cluster))
	}
	c := &NATSCluster{}
	for i, p := range ps {
		name := fmt.Sprintf("n%d", i+1)
		node := &NATSNode{
			URL:     fmt.Sprintf("nats://127.0.0.1:%d", p.client),
			monitor: fmt.Sprintf("http://127.0.0.1:%d", p.monitor),
			proc: &process{name: "nats-server " + name, logPath: filepath.Join(dir, name+".log"), args: []string{bin,
				"-a", "127.0.0.1", "-p", itoa(p.client), "-m", itoa(p.monitor), "-n", name,
				"--cluster_name", "upswatch-test", "--cluster", routes[i], "--routes", strings.Join(routes, ","),
				"-js", "-sd", filepath.Join(dir, name)}},
		}
		if err := node.proc.start(); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		t.Cleanup(func() { _ = node.proc.stop(sigterm, 10*time.Second) })
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		node.waitHealthy(t)
	}
	return c
}

func (n *NATSNode) healthy() error {
	resp, err := httpClient.Get(n.monitor + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}

func (n *NATSNode) waitHealthy(t testing.TB) {
	t.Helper()
	if err := n.proc.waitReady(60*time.Second, n.healthy); err != nil {
		t.Fatalf("testenv: %v\n%s", err, n.proc.logTail())
	}
}

// Kill stops the node with SIGKILL.
func (n *NATSNode) Kill() { _ = n.proc.stop(os.Kill, 0) }

// Start starts a stopped node again on its ports and store and waits
// until it is healthy.
func (n *NATSNode) Start(t testing.TB) {
	t.Helper()
	if err := n.proc.start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	n.waitHealthy(t)
}
