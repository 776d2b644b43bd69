// Frames into a TAP device, where Suricata captures them live (`suricata --af-packet=<tap>`).
//
// Why a helper: Node has no ioctl, and a TAP device is attached to a file descriptor only by
// ioctl(TUNSETIFF) on /dev/net/tun (`ip tuntap add` makes the device, but writing to it still
// needs an fd attached that way). The alternatives were worse: Suricata's pcap-file or
// unix-socket modes read whole files (batch latency, not live), and an AF_PACKET raw socket to
// inject into a veth is out of Node's reach too. So a 100-line C program (tapwriter.c,
// compiled once with the gcc the guest image already needs and cached by the source's hash)
// makes the TAP device in the monitor's namespace, reads the mirror's own framing on stdin and
// writes each frame to the device. The device is not persistent: it goes with the process.
//
// The pump takes frames from the bounded queue and writes them to the helper's stdin,
// waiting for 'drain' when the pipe is full: a stalled helper holds the pump, never the
// receiver (the queue drops meanwhile).

import type { ChildProcess } from "node:child_process";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { TAPWRITER_SOURCE } from "../assets.ts";
import { encodeMirrorFrame } from "./framing.ts";
import { running, spawnInNetns, stopChild } from "./netns.ts";
import type { FrameQueue } from "./queue.ts";

export function defaultHelperCacheDir(): string {
  return join(homedir(), ".cache", "nestcloud", "netmon");
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")} failed: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

/** The compiled TAP writer (built on first use; the cache key is the source and gcc's version). */
export async function tapWriterBinary(cacheDir = defaultHelperCacheDir()): Promise<string> {
  const source = readFileSync(TAPWRITER_SOURCE);
  const gcc = (await run("gcc", ["-dumpfullversion"])).trim();
  const key = createHash("sha256").update(source).update(`\ngcc=${gcc}`).digest("hex").slice(0, 16);
  const bin = join(cacheDir, `tapwriter-${key}`);
  if (existsSync(bin)) return bin;
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${bin}.tmp-${process.pid}`;
  try {
    await run("gcc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", tmp, TAPWRITER_SOURCE]);
    chmodSync(tmp, 0o755);
    renameSync(tmp, bin);
  } finally {
    rmSync(tmp, { force: true });
  }
  return bin;
}

/** Linux interface names: at most 15 bytes. */
export const TAP_NAME_RE = /^[a-z][a-z0-9-]{0,14}$/;

export interface TapWriterCounts {
  /** Frames handed to the helper. */
  written: number;
  writtenBytes: number;
  /** Times the pump waited for the helper's pipe to drain. */
  stalls: number;
}

/** The helper process with its TAP device, and the pump that feeds it from the queue. */
export class TapWriter {
  private readonly c: TapWriterCounts = { written: 0, writtenBytes: 0, stalls: 0 };
  private stopping = false;
  private pumping: Promise<void> | null = null;
  private stderrTail = "";

  private constructor(
    readonly child: ChildProcess,
    readonly netns: string,
    readonly tap: string,
  ) {
    child.stderr?.on("data", (b: Buffer) => {
      this.stderrTail = (this.stderrTail + b.toString("utf8")).slice(-2000);
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return running(this.child);
  }

  /** What the helper last said on stderr (bounded). */
  get stderr(): string {
    return this.stderrTail;
  }

  counts(): TapWriterCounts {
    return { ...this.c };
  }

  /** Starts the helper in `netns`; resolves once its TAP device `tap` is up. */
  static async start(opts: {
    netns: string;
    tap: string;
    binary?: string;
    timeoutMs?: number;
  }): Promise<TapWriter> {
    if (!TAP_NAME_RE.test(opts.tap))
      throw new Error(`TAP name ${JSON.stringify(opts.tap)} must match ${TAP_NAME_RE}`);
    const bin = opts.binary ?? (await tapWriterBinary());
    const child = spawnInNetns(opts.netns, [bin, opts.tap], ["pipe", "pipe", "pipe"]);
    const w = new TapWriter(child, opts.netns, opts.tap);
    child.stdin?.on("error", () => {}); // EPIPE once the helper is gone: its exit is what counts
    try {
      await new Promise<void>((resolve, reject) => {
        let out = "";
        const timer = setTimeout(
          () => reject(new Error("the TAP writer did not start")),
          opts.timeoutMs ?? 10_000,
        );
        child.stdout?.on("data", (b: Buffer) => {
          out = (out + b.toString("utf8")).slice(-200);
          if (out.includes(`READY ${opts.tap}\n`)) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once("exit", (code, signal) => {
          clearTimeout(timer);
          reject(
            new Error(`the TAP writer exited (${code ?? signal}) before it was ready: ${w.stderr.trim()}`),
          );
        });
        child.once("error", (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });
    } catch (e) {
      await stopChild(child, 1000);
      throw e;
    }
    return w;
  }

  /** Feeds frames from `queue` to the device until stop(). */
  pump(queue: FrameQueue): void {
    if (this.pumping) throw new Error("already pumping");
    const stdin = this.child.stdin!;
    this.pumping = (async () => {
      while (!this.stopping && this.alive) {
        const f = queue.shift();
        if (!f) {
          await queue.readable();
          continue;
        }
        this.c.written++;
        this.c.writtenBytes += f.length;
        if (!stdin.write(encodeMirrorFrame(f))) {
          this.c.stalls++;
          await new Promise<void>((resolve) => {
            const done = () => {
              stdin.off("drain", done);
              this.child.off("exit", done);
              resolve();
            };
            stdin.on("drain", done);
            this.child.on("exit", done);
          });
        }
      }
    })();
  }

  /**
   * Ends the helper: its stdin closed (it writes what it has and exits), then SIGTERM and
   * SIGKILL by pid if it does not; the TAP device goes with it. `queue` wakes a waiting pump.
   */
  async stop(queue?: FrameQueue): Promise<void> {
    this.stopping = true;
    queue?.wake();
    this.child.stdin?.end();
    const exited = running(this.child)
      ? new Promise<void>((resolve) => this.child.once("exit", () => resolve()))
      : Promise.resolve();
    const t = setTimeout(() => void stopChild(this.child, 2000), 2000);
    await exited;
    clearTimeout(t);
    await this.pumping?.catch(() => {});
  }
}
