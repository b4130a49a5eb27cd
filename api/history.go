package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// history answers GET /v1/units/{serial}/history?from=&to=&every=&fields=
// from and to are RFC 3339 or unix milliseconds (default: the last 24 h);
// every is a Go duration (default: a width giving about 300 points);
// fields is a comma separated list of NUT variables (default: all).
// With Accept: text/csv or format=csv the answer is CSV (history_csv.go).
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	u, ok := s.unit(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	asCSV, ok := wantCSV(w, r)
	if !ok {
		return
	}
	now := time.Now().UTC()
	to, err := parseTime(q.Get("to"), now)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", "to: "+err.Error())
		return
	}
	from, err := parseTime(q.Get("from"), to.Add(-24*time.Hour))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", "from: "+err.Error())
		return
	}
	if !to.After(from) {
		writeError(w, http.StatusBadRequest, "invalid_query", "to must be after from")
		return
	}
	every := max(to.Sub(from)/300, time.Second).Truncate(time.Second)
	if v := q.Get("every"); v != "" {
		every, err = time.ParseDuration(v)
		if err != nil || every <= 0 {
			writeError(w, http.StatusBadRequest, "invalid_query", "every: must be a positive duration like 10s or 5m")
			return
		}
	}
	if to.Sub(from)/every > store.MaxBuckets {
		writeError(w, http.StatusBadRequest, "invalid_query", "the range holds more than 20000 buckets of every; widen every")
		return
	}
	var fields []string
	if v := q.Get("fields"); v != "" {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				fields = append(fields, f)
			}
		}
	}
	series, err := s.cfg.History.Query(r.Context(), store.Query{Serial: u.Serial, From: from, To: to, Every: every, Fields: fields})
	if err != nil {
		s.storeError(w, "history query", err)
		return
	}
	if asCSV {
		writeHistoryCSV(w, series)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		store.Series
		Every string `json:"every"`
	}{series, every.String()})
}

func (s *Server) latest(w http.ResponseWriter, r *http.Request) {
	u, ok := s.unit(w, r)
	if !ok {
		return
	}
	rd, err := s.cfg.History.Latest(r.Context(), u.Serial)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no_readings", "this unit has not reported any reading yet")
		return
	}
	if err != nil {
		s.storeError(w, "latest reading", err)
		return
	}
	writeJSON(w, http.StatusOK, ReadingJSON(&rd))
}

func (s *Server) storeError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, store.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	}
	if errors.Is(err, store.ErrUnavailable) {
		s.log.Warn("history store unavailable", "op", what, "err", err)
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the history store is unavailable; try again shortly")
		return
	}
	s.internal(w, what, err)
}

// ReadingJSON is the API form of a reading: variables by NUT name.
func ReadingJSON(r *ups.Reading) map[string]any {
	out := make(map[string]any, len(r.Metrics)+len(r.Texts)+3)
	for _, t := range r.Texts {
		out[t.Name] = t.Value
	}
	for _, m := range r.Metrics {
		out[m.Name] = m.Value
	}
	if r.HasStatus {
		out["ups.status"] = r.Status.Raw
	}
	out["serial"] = r.Serial
	out["time"] = r.Time.UTC().Format(time.RFC3339Nano)
	return out
}

func parseTime(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("must be RFC 3339 or unix milliseconds")
	}
	return t.UTC(), nil
}
