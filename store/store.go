// Package store defines the history store: where every reading lands so
// facility managers can review a unit's power history. Backends live in
// subpackages: store/sqlite (embedded, the default) and store/influx.
//
// The history consumer acks a bus batch only after WriteReadings returned
// nil, so a backend must not return before the readings are durable.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// MaxBuckets bounds the buckets one Query may span, in every backend, so
// a careless range cannot make a store answer millions of points: a week
// at one-minute buckets (the console's 7-day charts) fits, a year does
// not.
const MaxBuckets = 20_000

// ErrNotFound is returned when a unit has no readings.
var ErrNotFound = errors.New("not found")

// History is a time-series store of readings.
type History interface {
	// WriteReadings stores readings durably. It is idempotent on
	// (serial, time): writing the same reading twice (a redelivered bus
	// batch) leaves one. Presence readings (r.Presence != 0) carry no
	// variables; a backend may skip them. An error means nothing may be
	// assumed written and the caller retries the whole batch; points a
	// backend refuses as bad data are dropped and counted by it, not
	// returned as an error, so one bad point cannot wedge the stream.
	// rs and its readings' Metrics and Texts are the caller's again once
	// it returns (the recorder reuses them for the next batch): a backend
	// must not keep them.
	WriteReadings(ctx context.Context, rs []ups.Reading) error

	// Query aggregates numeric fields of one unit over [From, To) in
	// buckets of Every.
	Query(ctx context.Context, q Query) (Series, error)

	// Latest returns the most recent reading of a unit, or ErrNotFound.
	Latest(ctx context.Context, serial ups.Serial) (ups.Reading, error)

	// DeleteUnit erases all history of a unit.
	DeleteUnit(ctx context.Context, serial ups.Serial) error

	// Close releases the store.
	Close() error
}

// Query selects a unit's history.
type Query struct {
	Serial ups.Serial
	From   time.Time     // inclusive
	To     time.Time     // exclusive
	Every  time.Duration // bucket width, > 0
	// Fields are NUT variable names; empty means every numeric field
	// the unit reported in the range.
	Fields []string
}

// Series is the answer to a Query: one series per field, buckets in time
// order, empty buckets omitted.
type Series struct {
	Serial ups.Serial    `json:"serial"`
	From   time.Time     `json:"from"`
	To     time.Time     `json:"to"`
	Every  time.Duration `json:"-"`
	Fields []FieldSeries `json:"fields"`
}

// FieldSeries is the aggregated history of one variable.
type FieldSeries struct {
	Field  string  `json:"field"`
	Points []Point `json:"points"`
}

// Point summarises one bucket. Time is the bucket's start.
type Point struct {
	Time  time.Time `json:"time"`
	Mean  float64   `json:"mean"`
	Min   float64   `json:"min"`
	Max   float64   `json:"max"`
	Count int       `json:"count"`
}
