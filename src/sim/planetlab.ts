/**
 * Loader for PlanetLab/CoMon CPU traces (the data set distributed with CloudSim): a folder
 * holds one file per VM, one integer CPU percent per line, one line per 300 s.
 * Files are taken in byte order of their names so runs are reproducible on any filesystem.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { DocumentError, readBoundedText } from "../schema/index.ts";
import { TraceError } from "./errors.ts";
import type { Trace } from "./trace.ts";

export const PLANETLAB_INTERVAL_SECONDS = 300;
export const PLANETLAB_SAMPLES = 288;

/** Folders searched for a bare day name like "20110303". */
export function planetlabRoots(cwd = process.cwd()): string[] {
  const roots = [
    process.env.NESTCLOUD_PLANETLAB_DIR,
    join(cwd, "../shared/data/planetlab"),
    join(cwd, "data/planetlab"),
  ];
  return roots.filter((r): r is string => typeof r === "string" && r.length > 0);
}

/** Resolves "20110303" (a day under a known root) or a folder path. */
export function resolvePlanetlabFolder(spec: string, cwd = process.cwd()): string {
  if (isAbsolute(spec) || spec.includes("/") || spec.startsWith(".")) {
    const p = resolve(cwd, spec);
    if (!existsSync(p) || !statSync(p).isDirectory())
      throw new TraceError(`trace folder ${spec} does not exist`);
    return p;
  }
  for (const root of planetlabRoots(cwd)) {
    const p = join(root, spec);
    if (existsSync(p) && statSync(p).isDirectory()) return p;
  }
  throw new TraceError(
    `PlanetLab day ${spec} not found under ${planetlabRoots(cwd).join(", ")} (set NESTCLOUD_PLANETLAB_DIR or pass a folder path)`,
  );
}

export function planetlabDays(cwd = process.cwd()): string[] {
  for (const root of planetlabRoots(cwd)) {
    if (!existsSync(root)) continue;
    const days = readdirSync(root).filter((d) => /^\d{8}$/.test(d) && statSync(join(root, d)).isDirectory());
    if (days.length > 0) return days.sort();
  }
  return [];
}

/** A PlanetLab day has ~1,000 files of 288 short lines (~1 KiB each). */
export const MAX_TRACE_FILES = 100_000;
export const MAX_TRACE_FILE_BYTES = 64 * 1024;

export function loadPlanetlabFolder(folder: string, source = `planetlab:${folder}`): Trace {
  // The directory's own entry types: no stat per file (a day has ~1,000), except to follow
  // a symbolic link.
  const files = readdirSync(folder, { withFileTypes: true })
    .filter(
      (e) =>
        !e.name.startsWith(".") &&
        (e.isFile() || (e.isSymbolicLink() && statSync(join(folder, e.name)).isFile())),
    )
    .map((e) => e.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (files.length === 0) throw new TraceError(`trace folder ${folder} holds no trace files`);
  if (files.length > MAX_TRACE_FILES)
    throw new TraceError(
      `trace folder ${folder} holds ${files.length} files; at most ${MAX_TRACE_FILES} (one per guest)`,
    );
  const data = new Uint8Array(files.length * PLANETLAB_SAMPLES);
  files.forEach((f, g) => {
    let text: string;
    try {
      text = readBoundedText(join(folder, f), "trace file", MAX_TRACE_FILE_BYTES);
    } catch (e) {
      if (e instanceof DocumentError) throw new TraceError(e.message);
      throw e;
    }
    const base = g * PLANETLAB_SAMPLES;
    let n = parseDigitLines(text, data, base);
    if (n < 0) {
      // Not plain digit lines: the general rule, which also names a bad line.
      n = 0;
      const lines = text.split(/\r?\n/);
      for (let i = 0; i < lines.length && n < PLANETLAB_SAMPLES; i++) {
        const line = lines[i].trim();
        if (line === "") continue;
        const v = Number(line);
        if (!Number.isInteger(v) || v < 0 || v > 100) {
          throw new TraceError(
            `${join(folder, f)}:${i + 1}: expected an integer CPU percent 0..100, got "${line.slice(0, 20)}"`,
          );
        }
        data[base + n++] = v;
      }
    }
    if (n === 0) throw new TraceError(`${join(folder, f)}: empty trace file`);
    // Short files hold their last value (CloudSim pads the same way).
    for (; n < PLANETLAB_SAMPLES; n++) data[g * PLANETLAB_SAMPLES + n] = data[g * PLANETLAB_SAMPLES + n - 1];
  });
  return {
    source,
    intervalSeconds: PLANETLAB_INTERVAL_SECONDS,
    samples: PLANETLAB_SAMPLES,
    names: files,
    data,
  };
}

/**
 * The common form of a trace file, read without splitting it into strings: lines of ASCII
 * digits (a value 0..100) ended by LF or CRLF, empty lines skipped, at most
 * PLANETLAB_SAMPLES values taken. Writes them at data[base...] and returns their count, or
 * -1 as soon as the text is anything else (the caller then applies the general rule, which
 * gives the same values for this form and names the line at fault otherwise).
 */
function parseDigitLines(text: string, data: Uint8Array, base: number): number {
  let n = 0;
  let v = -1; // the current line's value; -1: no digit yet
  for (let i = 0; i < text.length && n < PLANETLAB_SAMPLES; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      v = (v < 0 ? 0 : v * 10) + (c - 48);
      if (v > 100) return -1;
    } else if (c === 10 || (c === 13 && text.charCodeAt(i + 1) === 10)) {
      if (c === 13) i++;
      if (v >= 0) data[base + n++] = v;
      v = -1;
    } else return -1;
  }
  if (v >= 0 && n < PLANETLAB_SAMPLES) data[base + n++] = v;
  return n;
}
