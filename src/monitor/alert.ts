/**
 * What every monitor reports: one alert shape across memory, disk and network, so the
 * controller's API, its event stream, Prometheus and the CLI treat them alike (issue 12).
 */

/** The monitors a security VM runs against its target. */
export const MONITOR_KINDS = ["memory", "disk", "network"] as const;
export type MonitorKind = (typeof MONITOR_KINDS)[number];

/**
 * How the monitor reaches its target, by where both run: same host VM (local), same
 * physical server over its unix sockets (direct), or over the network with TLS (remote).
 */
export const CHANNELS = ["local", "direct", "remote"] as const;
export type Channel = (typeof CHANNELS)[number];

export const SEVERITIES = ["info", "warning", "critical"] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Evidence is plain JSON, bounded by the monitor that makes it (see boundEvidence). */
export type Evidence = { readonly [key: string]: string | number | boolean | null | readonly string[] };

export interface Alert {
  /** Unix time in milliseconds when the monitor saw it. */
  readonly time: number;
  /** The monitored guest's id. */
  readonly target: string;
  readonly monitor: MonitorKind;
  readonly channel: Channel;
  readonly severity: Severity;
  /** One line for people: what was found, where. */
  readonly summary: string;
  readonly evidence: Evidence;
}

/** Caps on what a guest can make a monitor store (guest-controlled text lands in evidence). */
export const EVIDENCE_LIMITS = { keys: 32, stringBytes: 1024, listItems: 64 } as const;

/**
 * Bounds evidence built from guest-controlled data: at most EVIDENCE_LIMITS.keys keys, strings
 * cut to EVIDENCE_LIMITS.stringBytes (marked with "…"), lists to EVIDENCE_LIMITS.listItems,
 * control characters replaced (no forged log lines or terminal escapes).
 */
export function boundEvidence(evidence: Evidence): Evidence {
  const out: Record<string, Evidence[string]> = {};
  let n = 0;
  for (const [k, v] of Object.entries(evidence)) {
    if (n++ >= EVIDENCE_LIMITS.keys) break;
    out[cleanText(k)] =
      typeof v === "string"
        ? cleanText(v)
        : Array.isArray(v)
          ? v.slice(0, EVIDENCE_LIMITS.listItems).map(cleanText)
          : (v as Evidence[string]);
  }
  return out;
}

function cleanText(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
  if (Buffer.byteLength(clean) <= EVIDENCE_LIMITS.stringBytes) return clean;
  let cut = clean.slice(0, EVIDENCE_LIMITS.stringBytes);
  while (Buffer.byteLength(cut) > EVIDENCE_LIMITS.stringBytes - 3) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/** Makes an alert with bounded evidence. */
export function alert(fields: Omit<Alert, "evidence"> & { evidence?: Evidence }): Alert {
  return { ...fields, summary: cleanText(fields.summary), evidence: boundEvidence(fields.evidence ?? {}) };
}
