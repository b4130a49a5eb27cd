package api

import (
	"encoding/csv"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/store"
)

// wantCSV tells whether the history is asked as CSV: format=csv, or an
// Accept header naming text/csv (format=json wins over Accept).
func wantCSV(w http.ResponseWriter, r *http.Request) (csv, ok bool) {
	switch r.URL.Query().Get("format") {
	case "csv":
		return true, true
	case "json":
		return false, true
	case "":
	default:
		writeError(w, http.StatusBadRequest, "invalid_query", "format: json or csv")
		return false, false
	}
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/csv" {
			return true, true
		}
	}
	return false, true
}

// writeHistoryCSV writes the series as CSV: a header row, then one row
// per (field, bucket) in the JSON answer's order, the bucket's start in
// RFC 3339 UTC and the numbers formatted to read back as the same
// float64 the JSON carries.
func writeHistoryCSV(w http.ResponseWriter, series store.Series) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+string(series.Serial)+`-history.csv"`)
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"time", "field", "mean", "min", "max", "count"})
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, f := range series.Fields {
		for _, p := range f.Points {
			_ = cw.Write([]string{p.Time.UTC().Format(time.RFC3339Nano), f.Field, num(p.Mean), num(p.Min), num(p.Max),
				strconv.Itoa(p.Count)})
		}
	}
	cw.Flush()
}
