/** Formatting helpers: simulated clock, sizes, money, percentages. */

/** Provider time (seconds since the start of day 0) as "d0 08:12:30". */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const day = Math.floor(s / 86400);
  const hh = String(Math.floor((s % 86400) / 3600)).padStart(2, "0");
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return `d${day} ${hh}:${mm}:${ss}`;
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 90) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function mib(n: number): string {
  return n >= 1024 ? `${(n / 1024).toFixed(n % 1024 === 0 ? 0 : 1)} GiB` : `${Math.round(n)} MiB`;
}

export function money(perHour: number): string {
  return `$${perHour.toFixed(2)}/h`;
}

export function pct(fraction: number | null | undefined): string {
  return fraction === null || fraction === undefined ? "–" : `${Math.round(fraction * 100)}%`;
}

/** Well-separated hues for tenants, in the order of their sorted names. */
const HUES = [215, 25, 145, 330, 265, 185, 0, 95, 45, 300];

/** A colour per tenant: distinct for the first ten (sorted), then from the name. */
export function tenantHues(tenants: Iterable<string>): Map<string, number> {
  const sorted = [...new Set(tenants)].sort();
  return new Map(sorted.map((t, i) => [t, i < HUES.length ? HUES[i] : nameHue(t)]));
}

function nameHue(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) % 360;
  return h;
}
