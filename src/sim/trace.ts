/**
 * CPU utilization traces: one series per guest, one integer percent per interval, as in the
 * PlanetLab/CoMon data (288 samples of 300 s per day). Stored as bytes: 100,000 guests x 288
 * samples is 29 MB.
 */
export interface Trace {
  /** Where it came from, for reports (e.g. "planetlab:20110303"). */
  readonly source: string;
  readonly intervalSeconds: number;
  readonly samples: number;
  readonly names: readonly string[];
  /** guest-major percents: percent of guest g at sample i is data[g * samples + i]. */
  readonly data: Uint8Array;
}

export function traceGuests(t: Trace): number {
  return t.names.length;
}

/**
 * Utilization (0..1) of guest g at time `seconds`, linear between samples as CloudSim's
 * UtilizationModelPlanetLabInMemory does; the last sample holds after the end.
 */
export function utilizationAt(t: Trace, g: number, seconds: number): number {
  const x = seconds / t.intervalSeconds;
  const base = g * t.samples;
  const last = t.samples - 1;
  if (x >= last) return t.data[base + last] / 100;
  if (x <= 0) return t.data[base] / 100;
  const i = Math.floor(x);
  const frac = x - i;
  const a = t.data[base + i];
  if (frac === 0) return a / 100;
  return (a + (t.data[base + i + 1] - a) * frac) / 100;
}

/** Keeps the first n series (or repeats them cyclically when n is larger). */
export function resizeTrace(t: Trace, n: number): Trace {
  if (n === t.names.length) return t;
  const data = new Uint8Array(n * t.samples);
  const names: string[] = [];
  for (let g = 0; g < n; g++) {
    const src = g % t.names.length;
    data.set(t.data.subarray(src * t.samples, (src + 1) * t.samples), g * t.samples);
    names.push(g < t.names.length ? t.names[src] : `${t.names[src]}#${Math.floor(g / t.names.length)}`);
  }
  return { ...t, names, data };
}
