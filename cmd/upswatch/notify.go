package main

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/url"
)

// notifyCmd: `upswatch notify test ACCOUNT_ID` asks the running serve to
// send a test message through each of the account's channels and prints
// the outcome per channel.
func notifyCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		return errors.New("usage: upswatch notify test ACCOUNT_ID")
	}
	fs := flag.NewFlagSet("notify test", flag.ContinueOnError)
	cf := addClientFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: upswatch notify test ACCOUNT_ID")
	}
	c, _, err := cf.client()
	if err != nil {
		return err
	}
	var out any
	if err := c.do("POST", "/v1/accounts/"+url.PathEscape(fs.Arg(0))+"/test-notification", nil, &out); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
