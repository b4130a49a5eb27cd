package api

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOpenAPIListsEveryRoute checks the kept document against the routes
// the server registers.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %v (version %q)", err, doc.OpenAPI)
	}
	s, err := New(Config{AdminToken: "x", Units: noUnits{}, History: noHistory{}})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleNotify(nil, nil)
	s.HandleAlerts(nil)
	s.HandleAlertActions(nil, nil)
	s.HandleOutages(nil, nil)
	s.HandleEvents(nil)
	s.HandleDeviceCredentials(nil)
	s.HandleBattery(nil)
	s.HandleReports(nil)
	for _, r := range s.Routes() {
		method, path, _ := strings.Cut(r, " ")
		if doc.Paths[path][strings.ToLower(method)] == nil {
			t.Errorf("route %s is not in api/openapi.json", r)
		}
	}
}
