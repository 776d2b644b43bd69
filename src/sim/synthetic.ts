/**
 * Seeded synthetic CPU traces for scale runs, shaped like the PlanetLab data (mean ~10 %,
 * median ~5 %): a per-guest base level drawn log-normally, a diurnal wave whose phase is
 * shared by guests of one "time zone" (so peaks coincide, as in real clouds), AR(1) noise,
 * and occasional bursts.
 */
import { Rng } from "../model/index.ts";
import type { Trace } from "./trace.ts";

export interface SyntheticTraceSpec {
  readonly guests: number;
  readonly seed: number;
  readonly intervalSeconds?: number;
  readonly samples?: number;
  /** Median of the per-guest base level, percent. */
  readonly medianPercent?: number;
  /** Expected bursts per guest per day. */
  readonly burstsPerDay?: number;
}

export function syntheticTrace(spec: SyntheticTraceSpec): Trace {
  const interval = spec.intervalSeconds ?? 300;
  const samples = spec.samples ?? 288;
  const median = spec.medianPercent ?? 5;
  const burstsPerDay = spec.burstsPerDay ?? 1.5;
  const perSample = (burstsPerDay * interval) / 86400;
  const data = new Uint8Array(spec.guests * samples);
  const names: string[] = [];
  for (let g = 0; g < spec.guests; g++) {
    const r = Rng.derive(spec.seed, g);
    names.push(`synthetic-${g}`);
    const base = Math.min(60, median * Math.exp(0.9 * r.normal()));
    const amplitude = base * (0.2 + 0.6 * r.next());
    const zone = r.int(4);
    const phase = (zone * 6 + r.next()) * 3600;
    let noise = 0;
    let burstLeft = 0;
    let burstHeight = 0;
    for (let i = 0; i < samples; i++) {
      const t = i * interval;
      noise = 0.8 * noise + 0.35 * base * r.normal();
      if (burstLeft === 0 && r.next() < perSample) {
        burstLeft = 1 + Math.floor(-Math.log(1 - r.next()) * 3);
        burstHeight = 20 + 70 * r.next();
      }
      let u = base + amplitude * Math.sin((2 * Math.PI * (t - phase)) / 86400) + noise;
      if (burstLeft > 0) {
        u = Math.max(u, burstHeight);
        burstLeft--;
      }
      data[g * samples + i] = Math.max(0, Math.min(99, Math.round(u)));
    }
  }
  return {
    source: `synthetic:${spec.guests}:seed=${spec.seed}`,
    intervalSeconds: interval,
    samples,
    names,
    data,
  };
}
