package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/upswatch/upswatch/config"
)

// apiClient talks to a running serve's HTTP API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags are shared by the commands that call the API.
type clientFlags struct {
	cfgPath, server, token, cacert *string
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		cfgPath: fs.String("config", "", "config file (default "+config.DefaultPath+" if present)"),
		server:  fs.String("server", "", "API base URL (default http:// + http.addr, https:// with http.cert_file)"),
		token:   fs.String("token", "", "admin token (default admin_token, else DATA_DIR/admin.token)"),
		cacert:  fs.String("cacert", "", "PEM bundle trusted for an https server besides the system roots"),
	}
}

func (f clientFlags) client() (*apiClient, config.Config, error) {
	c, err := loadConfig(*f.cfgPath)
	if err != nil {
		return nil, c, err
	}
	base := *f.server
	if base == "" {
		base = "http://" + c.HTTP.Addr
		if c.HTTP.CertFile != "" {
			base = "https://" + c.HTTP.Addr
		}
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if *f.cacert != "" {
		pem, err := os.ReadFile(*f.cacert)
		if err != nil {
			return nil, c, fmt.Errorf("--cacert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, c, fmt.Errorf("--cacert %s holds no PEM certificate", *f.cacert)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		hc.Transport = tr
	}
	tok := *f.token
	if tok == "" {
		tok = c.AdminToken
	}
	if tok == "" {
		b, err := os.ReadFile(filepath.Join(c.DataDir, "admin.token"))
		if err != nil {
			return nil, c, fmt.Errorf("no admin token: set --token or UPSWATCH_ADMIN_TOKEN (%w)", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	return &apiClient{base: strings.TrimRight(base, "/"), token: tok, http: hc}, c, nil
}

// listAll gets every page of a list endpoint: each answer holds its items
// under key and, when there are more, next_cursor, passed back as
// ?cursor= for the next page.
func listAll[T any](c *apiClient, path string, q url.Values, key string) ([]T, error) {
	var all []T
	for cursor := ""; ; {
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		p := path
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		var page map[string]json.RawMessage
		if err := c.do("GET", p, nil, &page); err != nil {
			return nil, err
		}
		var items []T
		if err := json.Unmarshal(page[key], &items); err != nil {
			return nil, fmt.Errorf("GET %s: %s: %w", path, key, err)
		}
		all = append(all, items...)
		var next string
		if raw, ok := page["next_cursor"]; ok {
			if err := json.Unmarshal(raw, &next); err != nil {
				return nil, fmt.Errorf("GET %s: next_cursor: %w", path, err)
			}
		}
		if next == "" {
			return all, nil
		}
		if next == cursor {
			return nil, fmt.Errorf("GET %s: the server repeated cursor %q", path, next)
		}
		cursor = next
	}
}

// do sends a request and decodes a JSON answer into out; API errors come
// back as their message.
func (c *apiClient) do(method, path string, body, out any) error {
	var raw []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		raw = b
	}
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(method, c.base+path, bytes.NewReader(raw))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err = c.http.Do(req)
		if err != nil {
			return fmt.Errorf("is upswatch serve running? %w", err)
		}
		if resp.StatusCode != http.StatusTooManyRequests || attempt == 10 {
			break
		}
		// Rate limited: wait as the server says, then try again.
		resp.Body.Close()
		wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		time.Sleep(time.Duration(max(wait, 1)) * time.Second)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
			return fmt.Errorf("%s (%s)", e.Error.Message, e.Error.Code)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

type unitInfo struct {
	Serial    string    `json:"serial"`
	Name      string    `json:"name"`
	Site      string    `json:"site"`
	CreatedAt time.Time `json:"created_at"`
	MQTT      *struct {
		Broker         string `json:"broker"`
		Username       string `json:"username"`
		Password       string `json:"password"`
		TelemetryTopic string `json:"telemetry_topic"`
	} `json:"mqtt,omitempty"`
}

func unitCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: upswatch unit add|list|show|remove|rotate-password|revoke|cert")
	}
	if args[0] == "cert" {
		return unitCert(args[1:], stdout)
	}
	fs := flag.NewFlagSet("unit "+args[0], flag.ContinueOnError)
	cf := addClientFlags(fs)
	name := fs.String("name", "", "unit name (add)")
	site := fs.String("site", "", "site the unit belongs to (add; filter for list)")
	asJSON := fs.Bool("json", false, "print JSON")
	sub := args[0]
	// The serial may stand before or after the flags.
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	c, _, err := cf.client()
	if err != nil {
		return err
	}
	needSerial := func() (string, error) {
		if len(positional) != 1 {
			return "", fmt.Errorf("usage: upswatch unit %s SERIAL", sub)
		}
		return positional[0], nil
	}
	print := func(v any) error { return printJSON(stdout, v) }
	switch sub {
	case "add":
		serial, err := needSerial()
		if err != nil {
			return err
		}
		var u unitInfo
		if err := c.do("POST", "/v1/units", map[string]string{"serial": serial, "name": *name, "site": *site}, &u); err != nil {
			return err
		}
		if *asJSON {
			return print(u)
		}
		fmt.Fprintf(stdout, "Registered %s. Device MQTT credentials (the password is shown only now):\n", u.Serial)
		fmt.Fprintf(stdout, "  broker:   %s\n  username: %s\n  password: %s\n  topic:    %s\n",
			u.MQTT.Broker, u.MQTT.Username, u.MQTT.Password, u.MQTT.TelemetryTopic)
		return nil
	case "list":
		q := url.Values{}
		if *site != "" {
			q.Set("site", *site)
		}
		units, err := listAll[unitInfo](c, "/v1/units", q, "units")
		if err != nil {
			return err
		}
		if *asJSON {
			return print(units)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERIAL\tNAME\tSITE\tREGISTERED")
		for _, u := range units {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Serial, u.Name, u.Site, u.CreatedAt.Format(time.DateTime))
		}
		return tw.Flush()
	case "show":
		serial, err := needSerial()
		if err != nil {
			return err
		}
		var u map[string]any
		if err := c.do("GET", "/v1/units/"+serial, nil, &u); err != nil {
			return err
		}
		var latest map[string]any
		if err := c.do("GET", "/v1/units/"+serial+"/latest", nil, &latest); err == nil {
			u["latest"] = latest
		}
		return print(u)
	case "remove", "rm":
		serial, err := needSerial()
		if err != nil {
			return err
		}
		if err := c.do("DELETE", "/v1/units/"+serial, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Removed %s.\n", serial)
		return nil
	case "rotate-password":
		serial, err := needSerial()
		if err != nil {
			return err
		}
		var u unitInfo
		if err := c.do("POST", "/v1/units/"+serial+"/rotate-password", nil, &u); err != nil {
			return err
		}
		if *asJSON {
			return print(u)
		}
		fmt.Fprintf(stdout, "New MQTT password for %s (shown only now; the old one no longer works and its session was ended):\n", u.Serial)
		fmt.Fprintf(stdout, "  username: %s\n  password: %s\n", u.MQTT.Username, u.MQTT.Password)
		return nil
	case "revoke":
		serial, err := needSerial()
		if err != nil {
			return err
		}
		var out struct {
			RevokedAt string `json:"revoked_at"`
		}
		if err := c.do("POST", "/v1/units/"+serial+"/revoke", nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Revoked the certificates of %s issued until %s; sessions using one were ended.\n"+
			"Issue a replacement with `upswatch unit cert %s` (from the next second on).\n", serial, out.RevokedAt, serial)
		return nil
	}
	return fmt.Errorf("unknown unit command %q (add, list, show, remove, rotate-password, revoke, cert)", sub)
}
