package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/upswatch/upswatch/app"
	"github.com/upswatch/upswatch/keyring"
)

// accountCmd: upswatch account add|list|show|invite|weekly-report|remove|export.
func accountCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: upswatch account add|list|show|invite|weekly-report|remove|export")
	}
	sub := args[0]
	fs := flag.NewFlagSet("account "+sub, flag.ContinueOnError)
	cf := addClientFlags(fs)
	id := fs.String("id", "", "account id (add; default generated)")
	role := fs.String("role", "owner", "owner, manager or admin (add)")
	name := fs.String("name", "", "full name (add)")
	email := fs.String("email", "", "email (add)")
	phone := fs.String("phone", "", "phone number, E.164 (add)")
	region := fs.String("region", "", "ISO 3166 country code, e.g. VN (add)")
	lang := fs.String("language", "en", "en or vi (add)")
	tz := fs.String("time-zone", "UTC", "IANA time zone (add)")
	sites := fs.String("sites", "", "comma separated sites a manager may see (add)")
	units := fs.String("units", "", "comma separated serials the account owns (add)")
	channels := fs.String("channels", "", "channels for warning and critical alerts, e.g. fcm,apns,sms or log (add)")
	weeklyOff := fs.Bool("weekly-report-off", false, "no weekly power summary for this account (add)")
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	c, _, err := cf.client()
	if err != nil {
		return err
	}
	one := func() (string, error) {
		if len(positional) != 1 {
			return "", fmt.Errorf("usage: upswatch account %s ACCOUNT_ID", sub)
		}
		return url.PathEscape(positional[0]), nil
	}
	switch sub {
	case "add":
		body := map[string]any{"id": *id, "role": *role, "name": *name, "email": *email, "phone": *phone,
			"region": *region, "language": *lang, "time_zone": *tz}
		if *sites != "" {
			body["sites"] = strings.Split(*sites, ",")
		}
		if *units != "" {
			body["units"] = strings.Split(*units, ",")
		}
		prefs := map[string]any{}
		if *channels != "" {
			ch := strings.Split(*channels, ",")
			prefs["channels"] = map[string][]string{"warning": ch, "critical": ch}
		}
		if *weeklyOff {
			prefs["weekly_report_off"] = true
		}
		if len(prefs) > 0 {
			body["preferences"] = prefs
		}
		var out map[string]any
		if err := c.do("POST", "/v1/accounts", body, &out); err != nil {
			return err
		}
		return printJSON(stdout, out)
	case "list":
		type account struct {
			ID       string `json:"id"`
			Role     string `json:"role"`
			Language string `json:"language"`
			Region   string `json:"region"`
		}
		accounts, err := listAll[account](c, "/v1/accounts", url.Values{}, "accounts")
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tROLE\tLANGUAGE\tREGION")
		for _, a := range accounts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.ID, a.Role, a.Language, a.Region)
		}
		return tw.Flush()
	case "show", "export":
		aid, err := one()
		if err != nil {
			return err
		}
		path := "/v1/accounts/" + aid
		if sub == "export" {
			path += "/export"
		}
		var out any
		if err := c.do("GET", path, nil, &out); err != nil {
			return err
		}
		return printJSON(stdout, out)
	case "invite":
		aid, err := one()
		if err != nil {
			return err
		}
		var out struct {
			URL     string `json:"url"`
			Expires string `json:"expires_at"`
		}
		if err := c.do("POST", "/v1/accounts/"+aid+"/invite", nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Send this one-time link to the account's holder; it sets their console password.\nIt works once, until %s:\n\n    %s\n", out.Expires, out.URL)
		return nil
	case "weekly-report":
		// The preferences are replaced whole by their PUT: read them,
		// change the one setting, write them back.
		if len(positional) != 2 || (positional[1] != "on" && positional[1] != "off") {
			return errors.New("usage: upswatch account weekly-report ACCOUNT_ID on|off")
		}
		aid := url.PathEscape(positional[0])
		var acct struct {
			Preferences map[string]any `json:"preferences"`
		}
		if err := c.do("GET", "/v1/accounts/"+aid, nil, &acct); err != nil {
			return err
		}
		prefs := acct.Preferences
		if prefs == nil {
			prefs = map[string]any{}
		}
		if positional[1] == "off" {
			prefs["weekly_report_off"] = true
		} else {
			delete(prefs, "weekly_report_off")
		}
		if err := c.do("PUT", "/v1/accounts/"+aid+"/preferences", prefs, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Weekly power summary for %s: %s.\n", positional[0], positional[1])
		return nil
	case "remove", "rm":
		aid, err := one()
		if err != nil {
			return err
		}
		if err := c.do("DELETE", "/v1/accounts/"+aid, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Erased account %s, its contacts, tokens, notification records and the history of the units it alone owned.\n", positional[0])
		return nil
	}
	return fmt.Errorf("unknown account command %q (add, list, show, invite, weekly-report, remove, export)", sub)
}

// tokenCmd: upswatch token create ACCOUNT_ID.
func tokenCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: upswatch token create ACCOUNT_ID")
	}
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	cf := addClientFlags(fs)
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return errors.New("usage: upswatch token create ACCOUNT_ID")
	}
	c, _, err := cf.client()
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.do("POST", "/v1/accounts/"+url.PathEscape(positional[0])+"/tokens", map[string]any{}, &out); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "API token (shown only now; store it safely):")
	return printJSON(stdout, out)
}

// keysCmd: upswatch keys rotate.
func keysCmd(args []string, stdout io.Writer) error {
	if len(args) == 2 && args[0] == "generate" {
		if args[1] == "--env" {
			return keysGenerateEnv(stdout)
		}
		return keysGenerate(args[1], stdout)
	}
	if len(args) == 0 || args[0] != "rotate" {
		return errors.New("usage: upswatch keys rotate | keys generate FILE | keys generate --env")
	}
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	cf := addClientFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c, _, err := cf.client()
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.do("POST", "/v1/admin/keys/rotate", map[string]any{}, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// keysGenerate writes a new keyring to path (mode 0600) for the instances
// of a cluster to share; it never overwrites one.
func keysGenerate(path string, stdout io.Writer) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s exists; a keyring is never overwritten (its loss makes every account unreadable)", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("keyring %s: %w", path, err)
	}
	k, err := keyring.Generate()
	if err != nil {
		return err
	}
	if err := k.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "keyring written to %s (mode 0600); give every instance this file (keys.file) and back it up\n", path)
	return nil
}

// keysGenerateEnv prints a new keyring as a line for an env file
// (UPSWATCH_KEYS=...), for deployments that pass it in the environment.
func keysGenerateEnv(stdout io.Writer) error {
	k, err := keyring.Generate()
	if err != nil {
		return err
	}
	v, err := k.EnvValue()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s=%s\n", app.KeysEnv, v)
	return nil
}

// parseInterleaved parses flags that may stand before or after the
// positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) > 0 {
			positional = append(positional, args[0])
			args = args[1:]
		}
	}
	return positional, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
