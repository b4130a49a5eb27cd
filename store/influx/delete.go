package influx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// DeleteUnit erases every point of a unit in the bucket.
//
// InfluxDB 2.x deletes through /api/v2/delete with the predicate
// serial="<serial>" over all time. 1.8's compatibility API has no delete
// endpoint, so on a 1.x server (known from /ping's version header, or from
// a plain-text 404 on the delete endpoint) the unit's series are dropped
// with InfluxQL on /query: DROP SERIES FROM ups_reading, ups_text,
// ups_presence WHERE serial = '<serial>'. Both remove the data of every
// retention policy and time.
//
// The requests are made here rather than through the client library,
// whose delete reports every HTTP failure as text without its status: a
// bad token or a missing bucket must be told from a server that is down.
func (s *Store) DeleteUnit(ctx context.Context, serial ups.Serial) error {
	if !ups.ValidSerial(string(serial)) {
		return fmt.Errorf("influx store: delete unit: %w", ups.ErrInvalidSerial)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	v1 := s.v1
	if !v1 {
		var err error
		if v1, err = s.deleteV2(ctx, serial); err != nil {
			return err
		}
	}
	if v1 {
		if err := s.dropSeriesV1(ctx, serial); err != nil {
			return err
		}
	}
	s.log.Info("influx deleted unit history", "serial", serial)
	return nil
}

// deleteV2 posts the unit's delete predicate to 2.x's /api/v2/delete. It
// reports a server without that endpoint (a 1.x that did not say its
// version: a plain-text "404 page not found") as v1.
func (s *Store) deleteV2(ctx context.Context, serial ups.Serial) (v1 bool, err error) {
	body, err := json.Marshal(struct {
		Start     time.Time `json:"start"`
		Stop      time.Time `json:"stop"`
		Predicate string    `json:"predicate"`
	}{minTime, maxTime, tagSerial + `="` + string(serial) + `"`})
	if err != nil {
		return false, fmt.Errorf("influx store: delete unit %s: %w", serial, err)
	}
	path := "/api/v2/delete?" + url.Values{"org": {s.cfg.Org}, "bucket": {s.cfg.Bucket}}.Encode()
	resp, err := s.post(ctx, serial, path, "application/json", body)
	if err != nil {
		return false, err
	}
	if resp.status == http.StatusNotFound && !strings.HasPrefix(resp.contentType, "application/json") &&
		strings.Contains(string(resp.body), "page not found") {
		return true, nil
	}
	return false, s.statusErr(serial, resp)
}

// dropSeriesV1 runs DROP SERIES through 1.x's /query endpoint.
func (s *Store) dropSeriesV1(ctx context.Context, serial ups.Serial) error {
	db, _, _ := strings.Cut(s.cfg.Bucket, "/")
	// The serial is digits only (validated): nothing to escape in the
	// single-quoted literal.
	stmt := `DROP SERIES FROM "` + measReading + `", "` + measText + `", "` + measPresence + `" WHERE "` + tagSerial + `" = '` + string(serial) + `'`
	form := url.Values{"db": {db}, "q": {stmt}}
	resp, err := s.post(ctx, serial, "/query", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if err != nil {
		return err
	}
	if err := s.statusErr(serial, resp); err != nil {
		return err
	}
	// Statement errors come back as 200 with an "error" member.
	var out struct {
		Error   string `json:"error"`
		Results []struct {
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil {
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

// answer is a delete request's response.
type answer struct {
	status      int
	contentType string
	body        []byte
}

// post sends one request of a delete with the token. A transport failure
// wraps store.ErrUnavailable (or is ctx's cancellation).
func (s *Store) post(ctx context.Context, serial ups.Serial, path, contentType string, body []byte) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL+path, bytes.NewReader(body))
	if err != nil {
		return answer{}, fmt.Errorf("influx store: delete unit %s: %w", serial, err)
	}
	req.Header.Set("Content-Type", contentType)
	if s.cfg.Token != "" {
		// 2.x's API token; 1.x accepts "Token user:password" too.
		req.Header.Set("Authorization", "Token "+s.cfg.Token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return answer{}, fmt.Errorf("influx store: delete unit %s: %w", serial, ctx.Err())
		}
		return answer{}, fmt.Errorf("influx store: delete unit %s: %w: %w", serial, store.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{}, fmt.Errorf("influx store: delete unit %s: read response: %w: %w", serial, store.ErrUnavailable, err)
	}
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), b}, nil
}

// statusErr classifies a delete's answer: 2xx is nil; 429 and 5xx wrap
// store.ErrUnavailable; 401, 403 and 404 are configuration problems,
// logged loudly; the rest are plain errors.
func (s *Store) statusErr(serial ups.Serial, a answer) error {
	switch {
	case a.status >= 200 && a.status < 300:
		return nil
	case a.status == http.StatusTooManyRequests || a.status >= 500:
		return fmt.Errorf("influx store: delete unit %s: %w: %d: %s", serial, store.ErrUnavailable, a.status, truncate(string(a.body), 200))
	case a.status == http.StatusUnauthorized || a.status == http.StatusForbidden || a.status == http.StatusNotFound:
		s.log.Error("influx refused the delete: check url, token and its privileges, org and bucket", "status", a.status, "bucket", s.cfg.Bucket)
	}
	return fmt.Errorf("influx store: delete unit %s: %d: %s", serial, a.status, truncate(string(a.body), 200))
}
