package payload

import (
	"bytes"

	"github.com/upswatch/upswatch/ups"
)

// maxNameLen bounds a variable name. NUT's longest standard names are
// about 40 bytes; the longest in real dumps under 60.
const maxNameLen = 128

// validName reports whether b is a usable variable name: 1 to maxNameLen
// bytes of ASCII letters, digits, '.', '_' and '-'. That is NUT's naming
// (output.L1-N.voltage, ups.debug.V) and keeps names safe as history
// store field names and in logs.
func validName(b []byte) bool {
	if len(b) == 0 || len(b) > maxNameLen {
		return false
	}
	for _, c := range b {
		if !nameChar[c] {
			return false
		}
	}
	return true
}

var nameChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['.'], t['_'], t['-'] = true, true, true
	return t
}()

// isTextual reports whether a NUT variable is text even when its value
// looks like a number. NUT reports every value as a string, and some
// texts are made of digits: a serial "000123", a USB vendorid "0665", a
// firmware "2.1", a date "20240131", driver parameters. Parsing those as
// numbers would lose leading zeros and store identifiers as measurements.
//
// The rule, over dot-separated segments:
//   - driver.*: the driver's own settings and versions;
//   - last segment serial, model, date, productid, vendorid, id, name,
//     desc, status, type, result, alarm, contacts or port;
//   - any later segment starting with firmware, mfr or version
//     (ups.firmware.aux, battery.mfr.date, ups.version).
func isTextual(name []byte) bool {
	if bytes.HasPrefix(name, []byte("driver.")) {
		return true
	}
	last := name
	if i := bytes.LastIndexByte(name, '.'); i >= 0 {
		last = name[i+1:]
	}
	switch string(last) { // no allocation: the compiler compares in place
	case "serial", "model", "date", "productid", "vendorid", "id", "name",
		"desc", "status", "type", "result", "alarm", "contacts", "port":
		return true
	}
	rest := name
	i := bytes.IndexByte(rest, '.')
	for i >= 0 {
		rest = rest[i+1:]
		if bytes.HasPrefix(rest, []byte("firmware")) ||
			bytes.HasPrefix(rest, []byte("mfr")) ||
			bytes.HasPrefix(rest, []byte("version")) {
			return true
		}
		i = bytes.IndexByte(rest, '.')
	}
	return false
}

// nameInfo is what the decoder knows about a frequent variable name, so
// the common case costs one map lookup and no allocation.
type nameInfo struct {
	name    string
	id      int // index in internedNames, for duplicate detection
	v       ups.Var
	known   bool // v is valid: a variable with a range
	textual bool
}

// commonNames are frequent NUT variable names (NUT's standard names seen
// most in real dumps). Order is free.
var commonNames = []string{
	"ups.status", "ups.alarm", "ups.load", "ups.temperature", "ups.realpower",
	"ups.realpower.nominal", "ups.power", "ups.power.nominal", "ups.model",
	"ups.mfr", "ups.mfr.date", "ups.serial", "ups.firmware", "ups.firmware.aux",
	"ups.productid", "ups.vendorid", "ups.type", "ups.id", "ups.date",
	"ups.time", "ups.test.result", "ups.test.interval", "ups.beeper.status",
	"ups.delay.shutdown", "ups.delay.start", "ups.delay.reboot",
	"ups.timer.shutdown", "ups.timer.start", "ups.timer.reboot",
	"ups.start.auto", "ups.start.battery", "ups.start.reboot",
	"ups.shutdown", "ups.watchdog.status", "ups.contacts", "ups.efficiency",
	"ups.load.high", "ups.realpower.percent",
	"battery.charge", "battery.charge.low", "battery.charge.warning",
	"battery.charge.restart", "battery.runtime", "battery.runtime.low",
	"battery.voltage", "battery.voltage.nominal", "battery.voltage.low",
	"battery.voltage.high", "battery.temperature", "battery.packs",
	"battery.packs.bad", "battery.type", "battery.date", "battery.mfr.date",
	"battery.current", "battery.capacity", "battery.charger.status",
	"battery.energysave", "battery.protection",
	"input.voltage", "input.voltage.nominal", "input.voltage.fault",
	"input.voltage.maximum", "input.voltage.minimum", "input.transfer.low",
	"input.transfer.high", "input.transfer.reason", "input.transfer.boost.low",
	"input.transfer.boost.high", "input.transfer.trim.low",
	"input.transfer.trim.high", "input.frequency", "input.frequency.nominal",
	"input.frequency.low", "input.frequency.high", "input.current",
	"input.current.nominal", "input.sensitivity", "input.phases",
	"input.quality", "input.bypass.voltage", "input.realpower",
	"output.voltage", "output.voltage.nominal", "output.frequency",
	"output.frequency.nominal", "output.current", "output.current.nominal",
	"output.phases", "output.powerfactor", "output.realpower", "output.power",
	"ambient.temperature", "ambient.humidity", "ambient.temperature.high",
	"device.model", "device.mfr", "device.serial", "device.type",
	"device.description", "device.contact", "device.location",
	"device.uptime", "device.part",
	"driver.name", "driver.version", "driver.version.internal",
	"driver.version.data", "driver.version.usb", "driver.parameter.port",
	"driver.parameter.pollinterval", "driver.parameter.pollfreq",
	"driver.parameter.synchronous", "driver.parameter.vendorid",
	"driver.parameter.productid", "driver.parameter.bus",
	"driver.parameter.product", "driver.parameter.offdelay",
	"driver.parameter.ondelay", "driver.parameter.serial",
	"driver.flag.allow_killpower", "driver.state",
	"outlet.id", "outlet.desc", "outlet.switchable",
	"outlet.1.id", "outlet.1.desc", "outlet.1.status", "outlet.1.switchable",
	"outlet.1.delay.start", "outlet.1.delay.shutdown",
	"outlet.1.autoswitch.charge.low",
	"outlet.2.id", "outlet.2.desc", "outlet.2.status", "outlet.2.switchable",
	"outlet.2.delay.start", "outlet.2.delay.shutdown",
	"outlet.2.autoswitch.charge.low",
	"beeper.status",
}

// nameTable holds commonNames plus every variable of ups.Vars, so a name
// missing from it is never a known variable; ids are dense from 0 and
// index nameList.
var nameTable, nameList = func() (map[string]nameInfo, []nameInfo) {
	m := make(map[string]nameInfo, len(commonNames)+len(ups.Vars))
	var list []nameInfo
	add := func(n string) {
		if _, dup := m[n]; dup {
			return
		}
		v, known := ups.LookupVar(n)
		info := nameInfo{name: n, id: len(list), v: v, known: known, textual: isTextual([]byte(n))}
		m[n] = info
		list = append(list, info)
	}
	for _, n := range commonNames {
		add(n)
	}
	for _, vi := range ups.Vars {
		add(vi.Name)
	}
	return m, list
}()

// nameIdx finds a name's id in nameList on the hot path.
var nameIdx = func() *strIndex {
	keys := make([]string, len(nameList))
	for i, info := range nameList {
		keys[i] = info.name
	}
	return newStrIndex(keys)
}()

// statusID is the id of ups.status, which goes to Reading.Status.
var statusID = int32(nameTable["ups.status"].id)

// seenWords is the size of the bitset of interned names seen in a reading.
var seenWords = (len(nameTable) + 63) / 64

// textList holds frequent text values, reused instead of copied;
// textIDs indexes it.
var textList = []string{
	"true", "false", // first: the JSON literals
	"", "OL", "OB", "OL CHRG", "OL DISCHRG", "OB DISCHRG", "OB LB",
	"OB DISCHRG LB", "OL CHRG LB", "OL BOOST", "OL TRIM", "OL RB",
	"OL BYPASS", "OFF", "OL CAL", "OB LB DISCHRG",
	"enabled", "disabled", "muted", "yes", "no",
	"ups", "pdu", "charging", "discharging", "resting", "floating",
	"No test initiated", "Done and passed", "Done and warning",
	"Done and error", "In progress", "Aborted",
	"no test initiated", "done and passed", "in progress",
	"online", "offline", "line interactive", "PbAc", "PbAcid",
	"no transfer", "input voltage out of range", "unknown",
}

const (
	textTrue  int32 = 0
	textFalse int32 = 1
)

var textIdx = newStrIndex(textList)
