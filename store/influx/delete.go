package influx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// DeleteUnit erases every point of a unit in the bucket.
//
// InfluxDB 2.x deletes through /api/v2/delete with the predicate
// serial="<serial>". 1.8's compatibility API has no delete endpoint, so
// on a 1.x server (known from /ping's version header, or from a 404 on
// the delete endpoint) the unit's series are dropped with InfluxQL on
// /query: DROP SERIES FROM ups_reading, ups_text, ups_presence WHERE
// serial = '<serial>'. Both remove the data of every retention policy
// and time.
func (s *Store) DeleteUnit(ctx context.Context, serial ups.Serial) error {
	if !ups.ValidSerial(string(serial)) {
		return fmt.Errorf("influx store: delete unit: %w", ups.ErrInvalidSerial)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if !s.v1 {
		err := s.client.DeleteAPI().DeleteWithName(ctx, s.cfg.Org, s.cfg.Bucket, minTime, maxTime, `serial="`+string(serial)+`"`)
		var he *http2.Error
		switch {
		case err == nil:
			s.log.Info("influx deleted unit history", "serial", serial)
			return nil
		case errors.As(err, &he) && he.StatusCode == http.StatusNotFound && strings.Contains(he.Message, "page not found"):
			// A 1.x server that did not say its version: fall through.
		default:
			return s.queryErr("delete unit "+string(serial), err)
		}
	}
	if err := s.dropSeriesV1(ctx, serial); err != nil {
		return err
	}
	s.log.Info("influx deleted unit history", "serial", serial)
	return nil
}

// dropSeriesV1 runs DROP SERIES through 1.x's /query endpoint.
func (s *Store) dropSeriesV1(ctx context.Context, serial ups.Serial) error {
	db, _, _ := strings.Cut(s.cfg.Bucket, "/")
	// The serial is digits only (validated): nothing to escape in the
	// single-quoted literal.
	stmt := `DROP SERIES FROM "` + measReading + `", "` + measText + `", "` + measPresence + `" WHERE "` + tagSerial + `" = '` + string(serial) + `'`
	form := url.Values{"db": {db}, "q": {stmt}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("influx store: delete unit %s: %w", serial, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s.cfg.Token != "" {
		// 1.x accepts "Token user:password", like its v2 endpoints.
		req.Header.Set("Authorization", "Token "+s.cfg.Token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("influx store: delete unit %s: %w", serial, ctx.Err())
		}
		return fmt.Errorf("influx store: delete unit %s: %w: %w", serial, store.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("influx store: delete unit %s: read response: %w: %w", serial, store.ErrUnavailable, err)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("influx store: delete unit %s: %w: %s: %s", serial, store.ErrUnavailable, resp.Status, truncate(string(body), 200))
	case resp.StatusCode != http.StatusOK:
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			s.log.Error("influx refused the delete: check token and its privileges", "status", resp.StatusCode)
		}
		return fmt.Errorf("influx store: delete unit %s: %s: %s", serial, resp.Status, truncate(string(body), 200))
	}
	// Statement errors come back as 200 with an "error" member.
	var out struct {
		Error   string `json:"error"`
		Results []struct {
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("influx store: delete unit %s: decode response: %w", serial, err)
	}
	if out.Error != "" {
		return fmt.Errorf("influx store: delete unit %s: %s", serial, out.Error)
	}
	for _, r := range out.Results {
		if r.Error != "" {
			return fmt.Errorf("influx store: delete unit %s: %s", serial, r.Error)
		}
	}
	return nil
}
