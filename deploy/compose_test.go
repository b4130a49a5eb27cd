// Package deploy holds the files of the container deployment; its test
// checks docker-compose.yml and the Dockerfile against the repository,
// since no container engine runs in CI.
package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/products"
	"github.com/upswatch/upswatch/rules"
)

const root = ".."

type service struct {
	Image       string            `yaml:"image"`
	Build       string            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   yaml.Node         `yaml:"depends_on"`
}

type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

// mount is one short-syntax volume entry.
type mount struct {
	source, target string
	bind           bool // a host path (relative to the compose file)
}

func (s service) mounts(t *testing.T) []mount {
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 {
			t.Fatalf("volume %q: want SOURCE:TARGET[:MODE]", v)
		}
		out = append(out, mount{source: parts[0], target: parts[1],
			bind: strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[0], "/")})
	}
	return out
}

// dependencies returns the services s waits for, with their condition
// ("" in the list form).
func (s service) dependencies(t *testing.T) map[string]string {
	out := map[string]string{}
	switch s.DependsOn.Kind {
	case 0:
	case yaml.SequenceNode:
		var names []string
		if err := s.DependsOn.Decode(&names); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			out[n] = ""
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := s.DependsOn.Decode(&m); err != nil {
			t.Fatal(err)
		}
		for n, c := range m {
			out[n] = c.Condition
		}
	default:
		t.Fatalf("depends_on: unexpected form")
	}
	return out
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// dockerfile is what the test needs of the Dockerfile's last stage.
type dockerfile struct {
	env    map[string]string
	copies [][2]string // context source, image target (COPY without --from)
	user   string
}

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	cont := ""
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cont += s + " "
			continue
		}
		lines = append(lines, cont+l)
		cont = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	d := dockerfile{env: map[string]string{}}
	for _, l := range lines {
		fields := strings.Fields(l)
		switch strings.ToUpper(fields[0]) {
		case "FROM": // a new stage: only the last one counts
			d = dockerfile{env: map[string]string{}}
		case "ENV":
			for _, kv := range fields[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("Dockerfile: ENV %q: use KEY=VALUE", kv)
				}
				d.env[k] = v
			}
		case "COPY":
			args := fields[1:]
			if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--from") }) {
				continue
			}
			args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--") })
			for _, src := range args[:len(args)-1] {
				d.copies = append(d.copies, [2]string{src, args[len(args)-1]})
			}
		case "USER":
			d.user = fields[1]
		}
	}
	return d
}

// fromContext maps a path of the image to the build-context file a COPY
// put there ("" when none).
func (d dockerfile) fromContext(path string) string {
	for _, c := range d.copies {
		if rest, ok := strings.CutPrefix(path, strings.TrimSuffix(c[1], "/")+"/"); ok {
			return filepath.Join(root, c[0], rest)
		}
	}
	return ""
}

// TestComposeMountsExist: every host path the stack mounts is in the
// repository (a missing one makes Docker create a directory in its
// place), every named volume is declared and every dependency exists.
func TestComposeMountsExist(t *testing.T) {
	c := loadCompose(t)
	if len(c.Services) == 0 {
		t.Fatal("no services")
	}
	for name, s := range c.Services {
		for _, m := range s.mounts(t) {
			if !m.bind {
				if _, ok := c.Volumes[m.source]; !ok {
					t.Errorf("%s: volume %s is not declared under volumes:", name, m.source)
				}
				continue
			}
			if filepath.IsAbs(m.source) {
				t.Errorf("%s: %s: mount repository files by a relative path", name, m.source)
				continue
			}
			if _, err := os.Stat(filepath.Join(root, m.source)); err != nil {
				t.Errorf("%s mounts %s, which the repository lacks: %v", name, m.source, err)
			}
		}
		for dep := range s.dependencies(t) {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
		if s.Build != "" {
			if _, err := os.Stat(filepath.Join(root, s.Build, "Dockerfile")); err != nil {
				t.Errorf("%s: build %s: %v", name, s.Build, err)
			}
		}
	}
}

// TestMosquittoFilesProvided: the files the mounted Mosquitto config
// names are where it looks: the ACL mounted from the repository, the
// password file and the persistence dir in volumes, the password file
// made by a one-shot service Mosquitto waits for. Its tuning matches
// configs/mosquitto.conf.
func TestMosquittoFilesProvided(t *testing.T) {
	c := loadCompose(t)
	m, ok := c.Services["mosquitto"]
	if !ok {
		t.Fatal("no mosquitto service")
	}
	i := slices.Index(m.Command, "-c")
	if i < 0 || i+1 >= len(m.Command) {
		t.Fatalf("mosquitto command %v names no config (-c FILE)", m.Command)
	}
	mounts := m.mounts(t)
	confPath := ""
	for _, mt := range mounts {
		if mt.bind && mt.target == m.Command[i+1] {
			confPath = filepath.Join(root, mt.source)
		}
	}
	if confPath == "" {
		t.Fatalf("the config %s is not mounted from the repository", m.Command[i+1])
	}
	conf := readMosquittoConf(t, confPath)
	covering := func(path string) (mount, bool) {
		for _, mt := range mounts {
			if mt.target == path || strings.HasPrefix(path, strings.TrimSuffix(mt.target, "/")+"/") {
				return mt, true
			}
		}
		return mount{}, false
	}
	tests := []struct {
		key string
		// made: the file is not in the repository but made by a
		// service that Mosquitto waits for, in a shared volume.
		made bool
	}{
		{key: "acl_file"},
		{key: "password_file", made: true},
		{key: "persistence_location"},
	}
	for _, tc := range tests {
		path := conf[tc.key]
		if path == "" {
			t.Errorf("%s: not set in %s", tc.key, confPath)
			continue
		}
		mt, ok := covering(path)
		if !ok {
			t.Errorf("%s %s: no mount of the mosquitto service provides it", tc.key, path)
			continue
		}
		if !tc.made {
			continue
		}
		if mt.bind {
			t.Errorf("%s %s: bind-mounted from %s; it must be made, not expected in the repository", tc.key, path, mt.source)
			continue
		}
		maker := ""
		for dep, cond := range m.dependencies(t) {
			for _, dm := range c.Services[dep].mounts(t) {
				if dm.source == mt.source && cond == "service_completed_successfully" {
					maker = dep
				}
			}
		}
		if maker == "" {
			t.Errorf("%s %s: volume %s is filled by no service mosquitto waits for (condition service_completed_successfully)", tc.key, path, mt.source)
		}
	}
	host := readMosquittoConf(t, filepath.Join(root, "configs", "mosquitto.conf"))
	for _, k := range []string{"per_listener_settings", "allow_anonymous", "max_queued_messages", "max_inflight_messages",
		"max_packet_size", "persistence", "autosave_interval"} {
		if conf[k] != host[k] {
			t.Errorf("%s: %q in %s, %q in configs/mosquitto.conf", k, conf[k], confPath, host[k])
		}
	}
}

func readMosquittoConf(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for l := range strings.Lines(string(b)) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, _ := strings.Cut(l, " ")
		if _, dup := out[k]; !dup {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestImageAndServiceSettings: the image runs as a non-root user with its
// data dir on the service's volume; every UPSWATCH_ variable set by the
// image or the compose file is a setting upswatch reads; the files the
// image's settings name were copied into it and load; and with an
// external NATS the keyring is given.
func TestImageAndServiceSettings(t *testing.T) {
	d := loadDockerfile(t)
	if d.user == "" || d.user == "0" || strings.HasPrefix(d.user, "root") || strings.HasPrefix(d.user, "0:") {
		t.Errorf("Dockerfile USER %q: run as a non-root user", d.user)
	}
	for _, cp := range d.copies {
		if _, err := os.Stat(filepath.Join(root, cp[0])); err != nil {
			t.Errorf("Dockerfile COPY %s: %v", cp[0], err)
		}
	}
	known := map[string]bool{"UPSWATCH_KEYS": true}
	for _, kv := range config.Keys() {
		known[kv[1]] = true
	}
	c := loadCompose(t)
	u, ok := c.Services["upswatch"]
	if !ok {
		t.Fatal("no upswatch service")
	}
	env := map[string]string{}
	for k, v := range d.env {
		env[k] = v
	}
	for k, v := range u.Environment {
		env[k] = v
	}
	for k := range env {
		if strings.HasPrefix(k, config.EnvPrefix) && !known[k] {
			t.Errorf("%s is no upswatch setting (see `upswatch config keys`)", k)
		}
	}
	dataDir := env["UPSWATCH_DATA_DIR"]
	if dataDir == "" || !filepath.IsAbs(dataDir) {
		t.Errorf("UPSWATCH_DATA_DIR %q: the image must set an absolute data dir", dataDir)
	}
	onVolume := false
	for _, m := range u.mounts(t) {
		onVolume = onVolume || (!m.bind && m.target == dataDir)
	}
	if !onVolume {
		t.Errorf("the data dir %s is on no volume of the upswatch service", dataDir)
	}
	if env["UPSWATCH_NATS_URL"] != "" && env["UPSWATCH_KEYS"] == "" && env["UPSWATCH_KEYS_FILE"] == "" {
		t.Error("UPSWATCH_NATS_URL is set but no keyring (UPSWATCH_KEYS or UPSWATCH_KEYS_FILE): serve refuses to start")
	}
	loaders := []struct {
		env  string
		load func(string) error
	}{
		{"UPSWATCH_RULES_FILE", func(p string) error { _, err := rules.LoadCatalog(p); return err }},
		{"UPSWATCH_PRODUCTS_FILE", func(p string) error { _, err := products.Load(p); return err }},
	}
	for _, l := range loaders {
		path := env[l.env]
		if path == "" {
			t.Errorf("%s: the image sets none; it would look for configs/ relative to the working dir", l.env)
			continue
		}
		src := d.fromContext(path)
		if src == "" {
			t.Errorf("%s=%s: no COPY puts a file there", l.env, path)
			continue
		}
		if err := l.load(src); err != nil {
			t.Errorf("%s=%s (from %s): %v", l.env, path, src, err)
		}
	}
	for _, k := range []string{"UPSWATCH_HTTP_ADDR", "UPSWATCH_MQTT_LISTEN"} {
		if !strings.HasPrefix(d.env[k], "0.0.0.0:") {
			t.Errorf("Dockerfile %s=%q: bind all interfaces, or a published port reaches nothing", k, d.env[k])
		}
	}
}
