package influx

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/store/storemetrics"
)

// Reasons a point is refused as bad data and dropped, for
// upswatch_store_dropped_total. Those from the server are parsed
// from its message; the others are caught before sending.
const (
	reasonTypeConflict = "type_conflict"    // a field's type differs from the stored one
	reasonRetention    = "beyond_retention" // older than the bucket's retention
	reasonParse        = "unparsable"       // the server could not parse the line
	reasonTooLarge     = "too_large"        // one point larger than the server accepts
	reasonOther        = "other"            // any other 4xx data error
	reasonBadSerial    = "bad_serial"       // reading: serial not 12/16 digits
	reasonBadTime      = "bad_time"         // reading: time outside InfluxDB's range
	reasonNonFinite    = "non_finite"       // one value: NaN or ±Inf
	reasonBadName      = "bad_name"         // one value: empty name, a newline or backslash in it
)

var allReasons = []string{reasonTypeConflict, reasonRetention, reasonParse, reasonTooLarge,
	reasonOther, reasonBadSerial, reasonBadTime, reasonNonFinite, reasonBadName}

type metrics = storemetrics.Metrics

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	return storemetrics.New("influx", allReasons, reg)
}
