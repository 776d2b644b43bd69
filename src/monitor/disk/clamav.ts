// The disk monitor's malware scan: files read from the guest's disk are streamed into a
// private scratch folder in batches and scanned by ClamAV's clamscan with the operator's
// signature databases (custom ones in tests: .ndb hex patterns, .hdb whole-file hashes).
// One clamscan per batch (it loads the databases each time: ~30 ms with small ones).
//
// ClamAV's traps, handled here: a file over --max-filesize, or content past --max-scansize,
// is reported clean unless asked otherwise; we pass both limits explicitly with
// --alert-exceeds-max, so clamscan reports Heuristics.Limits.Exceeded.* (a "limits" finding),
// and files over the limit are never handed over but reported as not scanned. Names in the
// scratch folder are our own numbers, never the guest's paths; the folder is 0700 and emptied
// after each batch.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { type FileHandle, mkdir, open, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface ClamScanOptions {
  /** Signature databases (files or folders), passed as -d. At least one. */
  databases: readonly string[];
  /** clamscan's path (default: from PATH). */
  clamscan?: string;
  /** --max-filesize: larger files are not scanned (and reported). Default 64 MiB. */
  maxFileBytes?: number;
  /** --max-scansize: content scanned per file, archives included. Default 4x maxFileBytes. */
  maxScanBytes?: number;
  /** Where the private scratch folder is made (default: the OS's temp folder). */
  scratchParent?: string;
  /** Files per clamscan run (default 512). */
  batchFiles?: number;
  /** Bytes per clamscan run (default 64 MiB). */
  batchBytes?: number;
  /** Bound for one clamscan run (default 120 s); it is killed after. */
  timeoutMs?: number;
}

export interface ScanFinding {
  /** The file's path in the guest. */
  path: string;
  /** The signature's name as ClamAV reports it (e.g. "Test.Marker.UNOFFICIAL"). */
  signature: string;
  /** malware: a signature matched; limits: part of the file was not scanned (Heuristics.Limits.Exceeded). */
  kind: "malware" | "limits";
}

export interface ScanStats {
  filesScanned: number;
  bytesScanned: number;
  /** Files not scanned because they are over maxFileBytes. */
  tooLarge: string[];
  runs: number;
  /** Time spent in clamscan. */
  scanMs: number;
}

export class ClamAvError extends Error {
  override name = "ClamAvError";
}

/** One file being written into the batch: write its pieces in order, then end() it. */
export interface ScanSink {
  write(data: Buffer): Promise<void>;
  end(): Promise<void>;
  /** Leaves the file out (reading it failed). */
  abort(): Promise<void>;
}

const FOUND = /^(.*): (\S+) FOUND$/;

export class ClamScanner {
  readonly stats: ScanStats = { filesScanned: 0, bytesScanned: 0, tooLarge: [], runs: 0, scanMs: 0 };
  private readonly dir: string;
  private readonly maxFileBytes: number;
  private readonly maxScanBytes: number;
  private batch: Array<{ file: string; path: string; bytes: number }> = [];
  private batchBytes = 0;
  private seq = 0;
  private findings: ScanFinding[] = [];
  private closed = false;

  private constructor(private readonly o: ClamScanOptions) {
    this.maxFileBytes = o.maxFileBytes ?? 64 * 1024 * 1024;
    this.maxScanBytes = o.maxScanBytes ?? 4 * this.maxFileBytes;
    this.dir = mkdtempSync(join(o.scratchParent ?? tmpdir(), "nc-clamscan-"));
  }

  /** Checks that clamscan runs and the databases exist, and makes the scratch folder. */
  static async create(o: ClamScanOptions): Promise<ClamScanner> {
    if (o.databases.length === 0) throw new ClamAvError("no signature database given (clamscan -d)");
    for (const d of o.databases) {
      try {
        await stat(d);
      } catch {
        throw new ClamAvError(`signature database ${d} does not exist`);
      }
    }
    await new Promise<void>((resolve, reject) =>
      execFile(o.clamscan ?? "clamscan", ["--version"], { timeout: 30_000 }, (err) =>
        err
          ? reject(
              new ClamAvError(
                `clamscan does not run (${(err as NodeJS.ErrnoException).code === "ENOENT" ? "not installed: apt-get install clamav" : err.message})`,
              ),
            )
          : resolve(),
      ),
    );
    return new ClamScanner(o);
  }

  /** Files over this many bytes are not scanned (they are recorded in stats.tooLarge). */
  get fileLimit(): number {
    return this.maxFileBytes;
  }

  /**
   * Starts a file of `size` bytes for the next batch; null when it is too large to be scanned
   * (recorded in stats.tooLarge: never reported clean).
   */
  async file(path: string, size: number): Promise<ScanSink | null> {
    if (this.closed) throw new ClamAvError("the scanner is closed");
    if (size > this.maxFileBytes) {
      this.stats.tooLarge.push(path);
      return null;
    }
    if (
      this.batch.length >= (this.o.batchFiles ?? 512) ||
      this.batchBytes + size > (this.o.batchBytes ?? 64 * 2 ** 20)
    )
      await this.run();
    const file = join(this.dir, String(this.seq++));
    let fh: FileHandle | null = await open(file, "wx", 0o600);
    let written = 0;
    return {
      write: async (data) => {
        if (!fh) throw new ClamAvError(`${path}: written after its end`);
        written += data.length;
        if (written > this.maxFileBytes)
          throw new ClamAvError(`${path}: more than its announced ${size} bytes`);
        await fh.write(data);
      },
      end: async () => {
        if (!fh) return;
        await fh.close();
        fh = null;
        this.batch.push({ file, path, bytes: written });
        this.batchBytes += written;
      },
      abort: async () => {
        await fh?.close();
        fh = null;
        await rm(file, { force: true });
      },
    };
  }

  /** Scans what is batched and returns every finding since the last call. */
  async flush(): Promise<ScanFinding[]> {
    await this.run();
    const out = this.findings;
    this.findings = [];
    return out;
  }

  private async run(): Promise<void> {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    const byFile = new Map(batch.map((b) => [b.file, b.path]));
    const list = join(this.dir, "list");
    await writeFile(list, batch.map((b) => b.file).join("\n"), { mode: 0o600 });
    const args = [
      "--no-summary",
      "--infected",
      "--stdout",
      "--alert-exceeds-max=yes",
      `--max-filesize=${this.maxFileBytes}`,
      `--max-scansize=${this.maxScanBytes}`,
      ...this.o.databases.flatMap((d) => ["-d", d]),
      `--file-list=${list}`,
    ];
    const t0 = Date.now();
    try {
      const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>(
        (resolve, reject) =>
          execFile(
            this.o.clamscan ?? "clamscan",
            args,
            { timeout: this.o.timeoutMs ?? 120_000, maxBuffer: 8 * 2 ** 20, killSignal: "SIGKILL" },
            (err, stdout, stderr) => {
              // An exit code is a number in err.code; a spawn failure a string; a kill sets killed.
              const e = err as { code?: unknown; killed?: boolean; message: string } | null;
              const code = e?.code;
              if (e && (typeof code !== "number" || e.killed))
                reject(new ClamAvError(`clamscan failed: ${e.killed ? "timed out" : e.message}`));
              else resolve({ code: typeof code === "number" ? code : 0, stdout, stderr });
            },
          ),
      );
      const found = new Set<string>();
      for (const line of stdout.split("\n")) {
        const m = FOUND.exec(line);
        if (!m) continue;
        const path = byFile.get(m[1]);
        if (path === undefined) continue;
        found.add(m[1]);
        const limits = m[2].startsWith("Heuristics.Limits.Exceeded");
        this.findings.push({ path, signature: m[2], kind: limits ? "limits" : "malware" });
      }
      // 0: nothing found; 1: found; anything else: an error clamscan could not scan past.
      if (code !== 0 && code !== 1)
        throw new ClamAvError(
          `clamscan exit code ${code}: ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
        );
      if (code === 1 && found.size === 0)
        throw new ClamAvError(`clamscan found something it did not name: ${stdout.slice(0, 300)}`);
      this.stats.filesScanned += batch.length;
      this.stats.bytesScanned += batch.reduce((s, b) => s + b.bytes, 0);
      this.stats.runs++;
    } finally {
      this.stats.scanMs += Date.now() - t0;
      await Promise.all(batch.map((b) => rm(b.file, { force: true })));
      await rm(list, { force: true });
    }
  }

  /** Drops batched files not scanned yet, findings not yet flushed and the too-large list. */
  async discard(): Promise<void> {
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    this.findings = [];
    this.stats.tooLarge.length = 0;
    await Promise.all(batch.map((b) => rm(b.file, { force: true })));
  }

  /** Removes the scratch folder (batched files not yet scanned are dropped). */
  async close(): Promise<void> {
    this.closed = true;
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The scratch folder (tests check it is private and emptied). */
  get scratchDir(): string {
    return this.dir;
  }
}

/** An .ndb line: `bytes` anywhere in any file (target 0). */
export function hexSignature(name: string, bytes: Buffer): string {
  return `${name}:0:*:${bytes.toString("hex")}`;
}

/** An .hdb line: a file whose whole content is `data` (MD5 and size). */
export function hashSignature(name: string, data: Buffer): string {
  return `${createHash("md5").update(data).digest("hex")}:${data.length}:${name}`;
}

/** Writes a test or operator database (.ndb lines "Name:0:*:hex", .hdb "md5:size:Name"). */
export async function writeSignatureDatabase(
  dir: string,
  name: string,
  lines: readonly string[],
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  await writeFile(path, `${lines.join("\n")}\n`);
  return path;
}
