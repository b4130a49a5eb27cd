// Package sim simulates a fleet of UPS units publishing NUT-style readings
// over MQTT, per the device contract: telemetry on
// {prefix}/{serial}/telemetry, and online (retained) on
// {prefix}/{serial}/status with offline (retained) as the MQTT last will.
// It is how a newcomer sees upswatch work, and the load generator of the
// benchmark.
//
// # Connections
//
// Each unit has its own MQTT connection and credentials (username =
// serial, password issued at registration), because the broker binds a
// topic to the credentials. Connections open at most ConnectConcurrency
// at a time. A unit uses two file descriptors when the broker runs in the
// same process (one otherwise): 10,000 units need a matching
// RLIMIT_NOFILE hard limit (Go raises the soft limit to it by itself).
//
// # Scheduling
//
// A few scheduler goroutines (Workers) each own a shard of units and one
// timer; slot k of a shard of n units falls at phase + (k/n)·interval +
// (k%n)·interval/n, so the readings of the whole fleet are spread evenly
// over the interval. Measured on the 2-core box for 10,000 units at
// 30,000 ticks/s, a goroutine and ticker per unit cost about 3.5 µs of
// CPU per tick and 10,000 goroutines; the sharded scheduler about 2.3 µs
// with four. Both are small beside paho's own cost per publish (a write
// system call per message per connection), but the shards also keep the
// order of readings reproducible.
//
// A reading is rendered from a per-unit template (static variables
// pre-encoded, holes for the computed ones) into a buffer the unit reuses
// once paho is done with it: BenchmarkAppendReading measures about 350 ns
// and no allocation per reading. A reading's ts is its scheduled time,
// not the moment it was sent, so tests can relate readings to event
// offsets exactly.
//
// # Physics
//
// Each unit has a nominal mains voltage (230 V / 50 Hz, or 120 V / 60 Hz
// for about a third of the synthetic units) with a steady site offset and
// noise, a base load, a battery with a runtime at that load, and
// temperatures. On battery the charge drains at 100 % per runtime,
// faster under more load (runtime ∝ load^-1.2); on mains it recharges
// four times slower. ups.status is OL, OL CHRG while recharging, OB
// DISCHRG on battery, plus LB when battery.charge <= battery.charge.low
// (or battery.runtime <= battery.runtime.low where the unit has one), and
// OVER in an overload. The charge is integrated across event boundaries,
// so a reading long after an outage began counts only the time on battery.
//
// A unit modelled on a upsc dump (Config.Dumps; upsc output or a NUT
// device dump library .dev file) reports exactly that dump's variables, in
// its order: the dump's plausible numbers (nominal voltage, load, charge,
// runtime, thresholds, temperatures) set the base values; input and
// output voltage and frequency, load, charge, runtime, battery voltage,
// temperatures and the powers and currents that follow the load are
// computed, printed with the dump's number of decimals; everything else is
// passed on verbatim. Status tokens of the dump that the model does not
// decide (RB, ALARM, unknown ones; TRIM, BOOST, BYPASS, OFF, HB while on
// mains) are kept. In JSON the static values stay NUT strings and the
// computed ones are JSON numbers; in upsc format the payload is the
// dump's lines with the computed values substituted.
//
// Values are reproducible: each unit draws from its own PCG source seeded
// by Config.Seed and a hash of its serial, so a unit's readings do not
// depend on the other units of the run.
//
// # Events
//
// Events are scripted with ParseEvent's syntax:
//
//	kind@at[+for][:serial[,serial...]]
//
// outage@30s+10m (mains fails for 10 minutes, all units),
// lowbattery@1m+5m (an outage on a nearly flat battery: LB at once),
// overload@0s+2m:123456789012 (one unit's load above 100 %, OVER),
// flicker@45s (a 2-second outage), commloss@2m+30s (the link drops: the
// broker publishes the will, offline; the unit reconnects after the event,
// within about two seconds, and says online again). Offsets count from
// the start of publishing, after all units connected; without +for an
// event lasts until the run ends. Readings sample the state at each
// scheduled slot, so an event shorter than the interval may fall between
// two readings, as it would with a real device polling its UPS.
package sim
