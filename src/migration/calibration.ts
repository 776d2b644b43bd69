/**
 * Parameters of the migration cost models. Defaults come from hand measurements on QEMU 7.2
 * under TCG (../shared/notes/migration.md); `npm run bench:migration` rewrites
 * calibration/migration.json with figures measured on the machine it runs on.
 */
export interface PrecopyCalibration {
  /** Connection setup and capability negotiation, s. */
  readonly setupSeconds: number;
  /** Rate at which QEMU walks guest RAM (zero-page detection bounds idle memory), MiB/s. */
  readonly scanMiBps: number;
  /** Device state sent during the final pause, MiB. */
  readonly deviceStateMiB: number;
  /** Fixed cost of stopping, sending device state and resuming, s. */
  readonly switchoverSeconds: number;
  /** QEMU's downtime-limit: switch over once remaining bytes fit in it, s. */
  readonly downtimeLimitSeconds: number;
  /** Fraction of the link QEMU's stream achieves. */
  readonly linkEfficiency: number;
  /** Give up (not converging) after this many RAM passes. */
  readonly maxRounds: number;
  /** Writable working set as a fraction of resident memory: re-dirtied pages per pass cap. */
  readonly workingSetFraction: number;
  readonly autoConverge: {
    readonly initialPercent: number;
    readonly incrementPercent: number;
    readonly maxPercent: number;
    /** QEMU throttles when a pass dirties more than this share of what it sent. */
    readonly triggerRatio: number;
  };
}

export interface PostcopyCalibration {
  /** Pre-copy passes before switching to post-copy. */
  readonly precopyRounds: number;
  /** Extra time per page fetched on demand relative to streaming, as a factor >= 1. */
  readonly faultSlowdown: number;
}

export interface InstantCalibration {
  readonly setupSeconds: number;
  /** Device state over the local channel, MiB. */
  readonly deviceStateMiB: number;
  /** Local channel (unix socket) throughput, MiB/s. */
  readonly localMiBps: number;
  /** Mapping the shared RAM file at the destination, s per GiB. */
  readonly perGiBSeconds: number;
  /** Fixed cost of the pause: stop, final sync, resume, s. */
  readonly switchoverSeconds: number;
}

export interface MigrationCalibration {
  /** Where the figures came from (e.g. "defaults" or "bench:migration 2026-11-26 host"). */
  readonly source: string;
  readonly precopy: PrecopyCalibration;
  readonly postcopy: PostcopyCalibration;
  readonly instant: InstantCalibration;
}

export const DEFAULT_CALIBRATION: MigrationCalibration = {
  source: "defaults (QEMU 7.2 TCG, loopback, hand-measured; see docs/benchmarks.md)",
  precopy: {
    setupSeconds: 0.02,
    scanMiBps: 280,
    deviceStateMiB: 0.6,
    switchoverSeconds: 0.008,
    downtimeLimitSeconds: 0.3,
    linkEfficiency: 0.94,
    maxRounds: 30,
    workingSetFraction: 0.9,
    autoConverge: { initialPercent: 20, incrementPercent: 10, maxPercent: 99, triggerRatio: 0.5 },
  },
  postcopy: { precopyRounds: 1, faultSlowdown: 1.5 },
  instant: {
    setupSeconds: 0.01,
    deviceStateMiB: 0.6,
    localMiBps: 1000,
    perGiBSeconds: 0.001,
    switchoverSeconds: 0.007,
  },
};

export class CalibrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CalibrationError";
  }
}

/**
 * Validates a parsed calibration document; missing sections take the defaults, unknown or
 * out-of-range fields are errors naming the field.
 */
export function parseCalibration(doc: unknown, where = "calibration"): MigrationCalibration {
  if (!isRecord(doc)) throw new CalibrationError(`${where}: expected an object`);
  const known = ["source", "precopy", "postcopy", "instant"];
  for (const k of Object.keys(doc))
    if (!known.includes(k)) throw new CalibrationError(`${where}: unknown field ${k}`);
  const d = DEFAULT_CALIBRATION;
  const source = doc.source === undefined ? "unnamed" : String(doc.source);
  return {
    source,
    precopy: {
      ...section(doc.precopy, d.precopy, `${where}.precopy`, ["autoConverge"]),
      autoConverge: section(
        isRecord(doc.precopy) ? doc.precopy.autoConverge : undefined,
        d.precopy.autoConverge,
        `${where}.precopy.autoConverge`,
      ),
    } as PrecopyCalibration,
    postcopy: section(doc.postcopy, d.postcopy, `${where}.postcopy`),
    instant: section(doc.instant, d.instant, `${where}.instant`),
  };
}

function section<T extends object>(value: unknown, defaults: T, where: string, nested: string[] = []): T {
  if (value === undefined) return defaults;
  if (!isRecord(value)) throw new CalibrationError(`${where}: expected an object`);
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [k, v] of Object.entries(value)) {
    if (!(k in defaults)) throw new CalibrationError(`${where}: unknown field ${k}`);
    if (nested.includes(k)) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      throw new CalibrationError(`${where}.${k}: expected a non-negative number, got ${JSON.stringify(v)}`);
    }
    out[k] = v;
  }
  return out as T;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
