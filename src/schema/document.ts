/**
 * Reading the YAML documents users hand to nestcloud (scenarios, testbed descriptions): size
 * limits before anything is read, YAML errors as one line with the line and column, and no
 * alias expansion bombs ("billion laughs"). Errors are DocumentError; callers re-throw them as
 * their own kind of user error.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { parseDocument } from "yaml";

/** A scenario or testbed file larger than this is refused (real ones are a few KiB). */
export const MAX_DOCUMENT_BYTES = 1 << 20;
/** Aliases (*name) a document may use; each may expand to a whole subtree. */
export const MAX_YAML_ALIASES = 100;

export class DocumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DocumentError";
  }
}

/**
 * A text file of at most `maxBytes`, read without trusting its size up front (a FIFO or a
 * growing file stops at the limit, too). `what` names it in errors ("scenario", "trace file").
 */
export function readBoundedText(file: string, what: string, maxBytes = MAX_DOCUMENT_BYTES): string {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (e) {
    throw new DocumentError(
      `${file}: cannot read ${what} (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
    );
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new DocumentError(`${file}: is a folder, expected a ${what}`);
    if (st.size > maxBytes) throw new DocumentError(tooLarge(file, what, st.size, maxBytes, true));
    const buf = Buffer.alloc(Math.min(maxBytes + 1, Math.max(st.size + 1, 4096)));
    let n = 0;
    for (;;) {
      if (n === buf.length) break;
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    if (n > maxBytes) throw new DocumentError(tooLarge(file, what, n, maxBytes, false));
    return buf.subarray(0, n).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** `exact`: the size is known; otherwise reading stopped at `size` bytes. */
function tooLarge(file: string, what: string, size: number, max: number, exact: boolean): string {
  const mib = (b: number) =>
    b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${Math.ceil(b / 1024)} KiB`;
  return `${file}: ${what} too large (${exact ? "" : "more than "}${mib(size)}; at most ${mib(max)})`;
}

/** The YAML document in `text` as plain data; `file` names it in errors. */
export function parseYaml(text: string, file: string): unknown {
  if (text.length > MAX_DOCUMENT_BYTES)
    throw new DocumentError(tooLarge(file, "document", text.length, MAX_DOCUMENT_BYTES, true));
  const parsed = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  if (parsed.errors.length > 0) {
    const e = parsed.errors[0];
    throw new DocumentError(`${file}${lineCol(text, e.pos[0])}: malformed YAML: ${e.message.split("\n")[0]}`);
  }
  try {
    return parsed.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (e) {
    // yaml refuses alias expansion beyond the limit with a ReferenceError.
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new DocumentError(
      `${file}: YAML aliases expand too far (${msg.replace(/\.$/, "")}); write the values out instead`,
    );
  }
}

function lineCol(text: string, pos: number): string {
  const before = text.slice(0, Math.min(pos, text.length)).split("\n");
  return `:${before.length}:${before[before.length - 1].length + 1}`;
}
