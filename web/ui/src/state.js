// A unit's state from its latest status flags, link presence and firing
// alert rules: the same rules as classify in web/fleet.go (a Go test and
// the browser tests hold the two together).
const alarmFlags = ['ALARM', 'OVER', 'FSD', 'BYPASS', 'OFF', 'RB'];

export function classify(status, firing, offline, hasReading) {
  const has = (r) => firing.includes(r);
  if (has('comm_lost') || offline) return 'lost';
  if (!hasReading) return firing.length ? 'alarm' : 'nodata';
  const flags = (status || '').split(/\s+/).filter(Boolean);
  if (flags.includes('LB') || has('low_battery')) return 'low_battery';
  if (flags.includes('OB') || has('on_battery')) return 'on_battery';
  if (alarmFlags.some((f) => flags.includes(f))) return 'alarm';
  if (firing.length) return 'alarm';
  return 'online';
}
