// Minimal writer for the "newc" cpio format the Linux kernel unpacks as an initramfs.
// Written in TypeScript rather than piping `find | cpio` so that the archive is built
// without a shell, is reproducible (fixed mtimes and owners) and can hold device nodes
// (/dev/console) without root privileges.

export type CpioEntry =
  | { kind: "dir"; path: string; mode?: number }
  | { kind: "file"; path: string; data: Buffer; mode?: number }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "chardev"; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio field out of range: ${n}`);
  return n.toString(16).padStart(8, "0");
}

function pad4(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}

function header(ino: number, mode: number, size: number, nameLen: number, rmaj = 0, rmin = 0): string {
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
  return (
    "070701" +
    hex8(ino) +
    hex8(mode) +
    hex8(0) +
    hex8(0) +
    hex8(1) +
    hex8(0) +
    hex8(size) +
    hex8(0) +
    hex8(0) +
    hex8(rmaj) +
    hex8(rmin) +
    hex8(nameLen) +
    hex8(0)
  );
}

function record(ino: number, name: string, mode: number, data: Buffer, rmaj = 0, rmin = 0): Buffer[] {
  const nameBuf = Buffer.from(`${name}\0`, "utf8");
  const head = Buffer.from(header(ino, mode, data.length, nameBuf.length, rmaj, rmin), "ascii");
  // The header (110 bytes) plus the name is padded to 4 bytes, then the data too.
  return [head, nameBuf, pad4(head.length + nameBuf.length), data, pad4(data.length)];
}

/** Serializes entries (in the order given: parents before children) into a newc archive. */
export function writeNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, "");
    if (name === "" || name.split("/").includes("..")) throw new Error(`bad cpio path: ${e.path}`);
    switch (e.kind) {
      case "dir":
        parts.push(...record(ino++, name, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0)));
        break;
      case "file":
        parts.push(...record(ino++, name, S_IFREG | (e.mode ?? 0o644), e.data));
        break;
      case "symlink":
        parts.push(...record(ino++, name, S_IFLNK | 0o777, Buffer.from(e.target, "utf8")));
        break;
      case "chardev":
        parts.push(...record(ino++, name, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), e.major, e.minor));
        break;
    }
  }
  parts.push(...record(0, "TRAILER!!!", 0, Buffer.alloc(0)));
  return Buffer.concat(parts);
}
