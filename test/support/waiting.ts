// Waiting in tests: for a while, for a condition, for a process to be gone.
import { readFileSync } from "node:fs";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The process runs (a zombie, or a pid that is gone, does not). */
export function alive(pid: number | null): boolean {
  if (!pid) return false;
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) [ZX]/.test(st);
  } catch {
    return false;
  }
}

/**
 * Until `f` gives a value (a throw counts as not yet), asking every 250 ms; after
 * `timeoutMs` fails naming `what` and the last error.
 */
export async function waitFor<T>(
  what: string,
  f: () => Promise<T | null | undefined | false>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last})` : ""}`);
    await sleep(250);
  }
}
