// Package ups holds the core types of upswatch: a unit's Serial, a
// telemetry Reading with its parsed Status, and the compact binary batch
// encoding readings travel in on the bus.
//
// It imports nothing else of upswatch, so every other package (ingest,
// rules, store, notify) can depend on it without cycles.
package ups
