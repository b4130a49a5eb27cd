package rules

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// repoRoot walks up from the package directory to the module root.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package")
		}
		dir = parent
	}
}

func TestConfigFileIsTheDefaults(t *testing.T) {
	path := filepath.Join(repoRoot(t), "configs", "rules.yaml")
	c, err := LoadCatalog(path)
	if err != nil {
		t.Fatalf("LoadCatalog: %v", err)
	}
	if got, want := c.Config(), DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("configs/rules.yaml differs from DefaultConfig():\n got %+v\nwant %+v", got, want)
	}
}

func TestConfigEmptyFileIsTheDefaults(t *testing.T) {
	c, err := ParseCatalog(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Config(), DefaultConfig()) {
		t.Fatal("empty file is not the defaults")
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top key", "colour: red\n", "field colour not found"},
		{"unknown rule key", "rules:\n  overload:\n    warn_abve: 80\n", "field warn_abve not found"},
		{"unknown rule", "rules:\n  on_fire: {}\n", "field on_fire not found"},
		{"range", "rules:\n  overload:\n    warn_above: 2000\n", "rules.overload.warn_above: must be between 0 and 1000"},
		{"hysteresis order", "rules:\n  overload:\n    warn_clear_below: 90\n", "rules.overload.warn_clear_below: must not exceed warn_above (80)"},
		{"bad severity", "rules:\n  bypass:\n    severity: loud\n", `unknown severity "loud"`},
		{"duration as number", "rules:\n  on_battery:\n    for: 6\n", "cannot unmarshal !!int `6` into time.Duration"},
		{"negative for", "rules:\n  on_battery:\n    for: -1s\n", "rules.on_battery.for: must be between 0s and 168h0m0s"},
		{"site override", "sites:\n  depot:\n    on_battery:\n      for: 9000h\n", "sites.depot.on_battery.for: must be between 0s and 168h0m0s"},
		{"site unknown key", "sites:\n  depot:\n    on_batery: {}\n", "field on_batery not found"},
		{"unit override", "units:\n  \"123456789012\":\n    comm_lost:\n      factor: 1\n", "units.123456789012.comm_lost.factor: must be between 1.5 and 100"},
		{"unit over site", "sites:\n  depot:\n    temperature:\n      battery_warn_at: 40\n" +
			"units:\n  \"123456789012\":\n    temperature:\n      battery_critical_at: 38\n",
			"units.123456789012 over sites.depot.temperature.battery_critical_at: must be between 40 and 200"},
		{"flap", "rules:\n  power_unstable:\n    interruptions: 1\n", "rules.power_unstable.interruptions: must be between 2 and 250"},
		{"historical", "historical_after: -1h\n", "historical_after: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCatalog([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v is not ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestOverridePrecedence(t *testing.T) {
	c, err := ParseCatalog([]byte(`
rules:
  on_battery:
    for: 10s
sites:
  depot:
    on_battery:
      for: 30s
    overload:
      warn_above: 90
units:
  "123456789012":
    on_battery:
      severity: critical
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		site, serial string
		wantFor      time.Duration
		wantSev      Severity
		wantWarn     float64
	}{
		{"", "999999999999", 10 * time.Second, Warning, 80},
		{"depot", "999999999999", 30 * time.Second, Warning, 90},
		{"elsewhere", "999999999999", 10 * time.Second, Warning, 80},
		{"", "123456789012", 10 * time.Second, Critical, 80},
		{"depot", "123456789012", 30 * time.Second, Critical, 90},
	}
	for _, tt := range tests {
		rs := c.Rules(tt.site, ups.Serial(tt.serial))
		if rs.OnBattery.For != tt.wantFor || rs.OnBattery.Severity != tt.wantSev || rs.Overload.WarnAbove != tt.wantWarn {
			t.Errorf("site %q unit %s: for=%v sev=%v warn=%v, want %v %v %v", tt.site, tt.serial,
				rs.OnBattery.For, rs.OnBattery.Severity, rs.Overload.WarnAbove, tt.wantFor, tt.wantSev, tt.wantWarn)
		}
	}
}
