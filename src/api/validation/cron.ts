/**
 * CronJob `schedule` and `timeZone` checks at admission, as upstream's batch validation does
 * them: the schedule must parse with robfig/cron v3's `ParseStandard` (five fields or an
 * `@` descriptor, optional `TZ=`/`CRON_TZ=` prefix) and the error detail is that parser's
 * message; the time zone must load (Go's `time.LoadLocation`: an IANA name, case-sensitive,
 * not `Local`).
 */

interface Bounds {
  min: number;
  max: number;
  names?: Readonly<Record<string, number>>;
}

const MONTHS: Record<string, number> = { jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12 };
const DAYS: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };

const FIELDS: readonly Bounds[] = [
  { min: 0, max: 59 }, // minute
  { min: 0, max: 23 }, // hour
  { min: 1, max: 31 }, // day of month
  { min: 1, max: 12, names: MONTHS },
  { min: 0, max: 6, names: DAYS },
];

const DESCRIPTORS = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);

/** strconv.Atoi, with Go's error text. */
function atoi(s: string): number | string {
  if (!/^[+-]?[0-9]+$/.test(s)) return `strconv.Atoi: parsing ${JSON.stringify(s)}: invalid syntax`;
  const n = Number(s);
  if (!Number.isSafeInteger(n)) return `strconv.Atoi: parsing ${JSON.stringify(s)}: value out of range`;
  return n;
}

function parseUint(expr: string): number | string {
  const n = atoi(expr);
  if (typeof n === 'string') return `failed to parse int from ${expr}: ${n}`;
  if (n < 0) return `negative number (${n}) not allowed: ${expr}`;
  return n;
}

function intOrName(expr: string, b: Bounds): number | string {
  const named = b.names?.[expr.toLowerCase()];
  return named !== undefined ? named : parseUint(expr);
}

/** One comma-separated range expression (`*`, `n`, `a-b`, with an optional `/step`); its error or undefined. */
function rangeError(expr: string, b: Bounds): string | undefined {
  const rangeAndStep = expr.split('/');
  const lowAndHigh = rangeAndStep[0].split('-');
  let start: number;
  let end: number;
  if (lowAndHigh[0] === '*' || lowAndHigh[0] === '?') {
    start = b.min;
    end = b.max;
  } else {
    const s = intOrName(lowAndHigh[0], b);
    if (typeof s === 'string') return s;
    start = s;
    if (lowAndHigh.length === 1) end = start;
    else if (lowAndHigh.length === 2) {
      const e = intOrName(lowAndHigh[1], b);
      if (typeof e === 'string') return e;
      end = e;
    } else return `too many hyphens: ${expr}`;
  }
  let step = 1;
  if (rangeAndStep.length === 2) {
    const s = parseUint(rangeAndStep[1]);
    if (typeof s === 'string') return s;
    step = s;
    if (lowAndHigh.length === 1) end = b.max;
  } else if (rangeAndStep.length > 2) {
    return `too many slashes: ${expr}`;
  }
  if (start < b.min) return `beginning of range (${start}) below minimum (${b.min}): ${expr}`;
  if (end > b.max) return `end of range (${end}) above maximum (${b.max}): ${expr}`;
  if (start > end) return `beginning of range (${start}) beyond end of range (${end}): ${expr}`;
  if (step === 0) return `step of range should be a positive number: ${expr}`;
  return undefined;
}

/** Go's time.ParseDuration accepts e.g. `1h30m`, `90s`, `1.5h`; enough to tell `@every` specs apart. */
const GO_DURATION = /^[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$|^[+-]?0$/;

/** `cron.ParseStandard(schedule)`'s error message, or `undefined` when it parses. */
export function cronScheduleError(schedule: string): string | undefined {
  if (schedule.length === 0) return 'empty spec string';
  let spec = schedule;
  if (spec.startsWith('TZ=') || spec.startsWith('CRON_TZ=')) {
    const sp = spec.indexOf(' ');
    const eq = spec.indexOf('=');
    // upstream slices up to the first space; without one the Go code panics, the apiserver recovers with a 500
    const name = sp < 0 ? spec.slice(eq + 1) : spec.slice(eq + 1, sp);
    const tzErr = timeZoneError(name);
    if (tzErr) return `provided bad location ${name}: ${tzErr}`;
    spec = sp < 0 ? '' : spec.slice(sp).trim();
  }
  if (spec.startsWith('@')) {
    if (DESCRIPTORS.has(spec)) return undefined;
    if (spec.startsWith('@every ')) {
      const d = spec.slice('@every '.length);
      return GO_DURATION.test(d) ? undefined : `failed to parse duration ${spec}: time: invalid duration ${JSON.stringify(d)}`;
    }
    return `unrecognized descriptor: ${spec}`;
  }
  const fields = spec.split(/[ \t\n\r\v\f]+/).filter((f) => f !== '');
  if (fields.length !== 5) return `expected exactly 5 fields, found ${fields.length}: [${fields.join(' ')}]`;
  for (let i = 0; i < 5; i++) {
    for (const expr of fields[i].split(',').filter((e) => e !== '')) {
      const err = rangeError(expr, FIELDS[i]);
      if (err) return err;
    }
  }
  return undefined;
}

/**
 * `time.LoadLocation(name)`'s error, or `undefined` when the zone loads. `""` and `UTC` are UTC;
 * other names must be IANA zones spelled as the zoneinfo file is (Go reads files: case matters).
 */
export function timeZoneError(name: string): string | undefined {
  if (name === '' || name === 'UTC' || name === 'Local') return undefined;
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return `unknown time zone ${name}`;
  }
  // Intl matches names case-insensitively; a zoneinfo lookup does not
  if (resolved !== name && resolved.toLowerCase() === name.toLowerCase()) return `unknown time zone ${name}`;
  if (name.split('/').some((p) => p === '.' || p === '..' || p === '')) return `unknown time zone ${name}`;
  return undefined;
}
