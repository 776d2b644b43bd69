/**
 * `nestcloud vmi ...`: introspect a running guest's kernel from outside (no debug symbols).
 *   vmi ps|modules|check|info  (--ram-file PATH | --remote HOST:PORT --guest ID | --qmp SOCKET)
 *   vmi serve --guest ID=RAMFILE ... --token-file F | --tls --tls-ca/--tls-cert/--tls-key [--revoked F]
 * Exit codes (VMI_EXIT, also in `--help` and the README): 0 done (check: nothing found),
 * 1 check found something, 2 usage error (bad arguments, unreachable source, refused),
 * 3 no Linux kernel in the guest's memory, 4 kernel still booting, 5 introspection failed.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import Table from "cli-table3";
import { Revocations, securityVmClient } from "../monitor/index.ts";
import { QmpClient } from "../qemu/index.ts";
import {
  checkKernelText,
  checkSyscallTable,
  connectRemoteMemory,
  discoverKernel,
  findHiddenTasks,
  type Kernel,
  listModules,
  listProcesses,
  MemoryError,
  openRamFile,
  PageServer,
  type PhysicalMemory,
  ProfileCache,
  QmpMemory,
  RemoteError,
  type RemoteMode,
  TextBaselineStore,
  VmiError,
} from "../vmi/index.ts";
import { UsageError } from "./usage.ts";
import { VMI_EXIT } from "./vmi-exit.ts";

/** The exit code for an introspection error; undefined for any other error. */
export function vmiExitCode(e: unknown): number | undefined {
  if (!(e instanceof VmiError)) return undefined;
  if (e.code === "KERNEL_NOT_FOUND") return VMI_EXIT.notLinux;
  if (e.code === "KERNEL_NOT_READY") return VMI_EXIT.notReady;
  return VMI_EXIT.failed;
}

export interface SourceOptions {
  ramFile?: string;
  remote?: string;
  guest?: string;
  tokenFile?: string;
  clientId?: string;
  mode?: string;
  qmp?: string;
  machine?: string;
  profileCache?: string | false;
  fallback?: boolean;
  output?: string;
  verbose?: boolean;
}

/** Where command output goes (tests redirect it; the test runner owns this process's stdout). */
export const vmiOutput = { write: (s: string): void => void process.stdout.write(s) };

function cacheRoot(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "nestcloud");
}

function readToken(file: string | undefined): string {
  const path = file ?? process.env.NESTCLOUD_VMI_TOKEN_FILE;
  if (!path) throw new UsageError("--remote needs --token-file (or NESTCLOUD_VMI_TOKEN_FILE)");
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    throw new UsageError(`cannot read token file ${path} (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

function hostPort(s: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port < 1 || port > 65535) throw new UsageError(`--remote ${s}: expected HOST:PORT`);
  return { host: m[1].replace(/^\[(.*)\]$/, "$1"), port };
}

function machineOf(s: string | undefined): "q35" | "pc" {
  if (s === undefined || s === "q35" || s === "pc") return s ?? "q35";
  throw new UsageError(`--machine ${s}: expected q35 or pc`);
}

interface Source {
  memory: PhysicalMemory;
  close(): void;
}

/** Opens the memory source named by the options; failures to reach it are user errors. */
export async function openSource(o: SourceOptions): Promise<Source> {
  const given = [o.ramFile, o.remote, o.qmp].filter((x) => x !== undefined).length;
  if (given !== 1) throw new UsageError("give exactly one of --ram-file, --remote or --qmp");
  if (o.ramFile !== undefined) {
    try {
      const rf = openRamFile(o.ramFile, { machine: machineOf(o.machine) });
      return { memory: rf.memory, close: () => rf.close() };
    } catch (e) {
      if (e instanceof MemoryError) throw new UsageError(`--ram-file ${o.ramFile}: ${e.message}`);
      throw e;
    }
  }
  if (o.remote !== undefined) {
    if (!o.guest) throw new UsageError("--remote needs --guest ID");
    const mode = (o.mode ?? "optimized") as RemoteMode;
    if (!["naive", "cached", "optimized"].includes(mode)) {
      throw new UsageError(`--mode ${o.mode}: expected naive, cached or optimized`);
    }
    try {
      const m = await connectRemoteMemory({
        ...hostPort(o.remote),
        token: readToken(o.tokenFile),
        clientId: o.clientId,
        guest: o.guest,
        mode,
      });
      return { memory: m, close: () => m.close() };
    } catch (e) {
      if (e instanceof RemoteError && e.code !== "REMOTE_SERVER") {
        throw new UsageError(`--remote ${o.remote} --guest ${o.guest}: ${e.message} (${e.code})`);
      }
      throw e;
    }
  }
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(o.qmp as string, { label: "vmi" });
  } catch (e) {
    throw new UsageError(`--qmp ${o.qmp}: ${(e as Error).message}`);
  }
  const m = await QmpMemory.open(qmp, { machine: machineOf(o.machine) }).catch((e) => {
    qmp.close();
    throw e;
  });
  return {
    memory: m,
    close: () => {
      m.close();
      qmp.close();
    },
  };
}

async function withKernel<T>(o: SourceOptions, fn: (k: Kernel) => Promise<T>): Promise<T> {
  const src = await openSource(o);
  try {
    const cache =
      o.profileCache === false
        ? undefined
        : new ProfileCache(o.profileCache ?? join(cacheRoot(), "vmi-profiles"));
    const k = await discoverKernel(src.memory, { profileCache: cache, fallback: o.fallback });
    // --verbose: how the kernel was found (and why a VMCOREINFO note was not used) on stderr.
    if (o.verbose) for (const n of k.facts.notes) process.stderr.write(`vmi: ${n}\n`);
    return await fn(k);
  } finally {
    src.close();
  }
}

function outputOf(o: SourceOptions): "table" | "json" {
  const v = o.output ?? "table";
  if (v !== "table" && v !== "json") throw new UsageError(`--output ${v}: expected table or json`);
  return v;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

function json(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? hex(x) : x), 2);
}

function table(head: string[], rows: (string | number)[][]): string {
  const t = new Table({
    head,
    style: { head: [], border: [] },
    // No separator line between rows: process lists are long.
    chars: { mid: "", "left-mid": "", "mid-mid": "", "right-mid": "" },
  });
  for (const r of rows) t.push(r.map(String));
  return t.toString();
}

export async function vmiPs(o: SourceOptions): Promise<void> {
  const out = outputOf(o);
  const ps = await withKernel(o, (k) => listProcesses(k));
  if (out === "json") vmiOutput.write(`${json(ps)}\n`);
  else {
    const rows = ps.map((p) => [
      p.pid,
      p.ppid,
      p.uid ?? "?",
      p.state,
      p.kernelThread ? `[${p.comm}]` : p.comm,
    ]);
    vmiOutput.write(`${table(["PID", "PPID", "UID", "S", "COMMAND"], rows)}\n`);
  }
}

export async function vmiModules(o: SourceOptions): Promise<void> {
  const out = outputOf(o);
  const mods = await withKernel(o, (k) => listModules(k));
  if (out === "json") vmiOutput.write(`${json(mods)}\n`);
  else {
    const rows = mods.map((m) => [m.name, m.size, m.state, hex(m.base)]);
    vmiOutput.write(`${table(["MODULE", "SIZE", "STATE", "BASE"], rows)}\n`);
  }
}

export async function vmiInfo(o: SourceOptions): Promise<void> {
  const out = outputOf(o);
  const facts = await withKernel(o, async (k) => ({
    ...k.facts,
    symbols: k.symbols.size,
    symbolSource: k.symbols.source,
    profile: k.profile.key,
  }));
  if (out === "json") vmiOutput.write(`${json(facts)}\n`);
  else {
    const rows: [string, string][] = [
      ["discovery path", facts.path],
      ["release", facts.osRelease],
      ["build id", facts.buildId ?? "-"],
      ["KASLR offset", hex(facts.kernelOffset)],
      ["phys_base", facts.physBase < 0n ? `-${hex(-facts.physBase)}` : hex(facts.physBase)],
      ["page_offset_base", hex(facts.pageOffsetBase)],
      ["paging levels", String(facts.levels)],
      ["symbols", `${facts.symbols} (${facts.symbolSource})`],
      ["profile", `${facts.profile} (${facts.profileSource})`],
    ];
    vmiOutput.write(`${table(["", ""], rows)}\n${facts.notes.map((n) => `  ${n}`).join("\n")}\n`);
  }
}

export interface CheckOptions extends SourceOptions {
  baselineDir?: string;
}

export async function vmiCheck(o: CheckOptions): Promise<void> {
  const out = outputOf(o);
  const store = new TextBaselineStore(o.baselineDir ?? join(cacheRoot(), "vmi-baselines"));
  const report = await withKernel(o, async (k) => ({
    syscalls: await checkSyscallTable(k),
    hidden: await findHiddenTasks(k),
    text: await checkKernelText(k, store),
  }));
  const findings =
    report.syscalls.findings.length +
    report.hidden.hidden.length +
    (report.text.status === "mismatch" ? 1 : 0);
  if (out === "json") {
    const { chunks: _c, ...textHash } = report.text.current;
    vmiOutput.write(`${json({ ...report, text: { ...report.text, current: textHash }, findings })}\n`);
  } else {
    const rows: string[][] = [];
    const s = report.syscalls;
    rows.push([
      "syscall table",
      s.findings.length === 0 ? "ok" : "ALERT",
      `${s.entries} entries${s.findings.map((f) => `; #${f.nr} -> ${hex(f.address)} ${f.problem} ${f.symbol ?? ""}`).join("")}`,
    ]);
    const h = report.hidden;
    rows.push([
      "hidden processes",
      h.hidden.length === 0 ? "ok" : "ALERT",
      `${h.counts.taskList} listed, ${h.counts.pidIdr} in pid IDR, ${h.counts.runqueues} runqueues` +
        h.hidden.map((x) => `; pid ${x.pid} ${x.comm} (${x.seenIn.join("+")})`).join("") +
        h.skipped.map((x) => `; skipped ${x}`).join(""),
    ]);
    const t = report.text;
    rows.push([
      "kernel text",
      t.status === "mismatch" ? "ALERT" : t.status === "match" ? "ok" : "baseline recorded",
      `sha256 ${t.current.sha256.slice(0, 16)}...${t.changed.map((c) => `; +0x${c.offset.toString(16)} ${c.symbol ?? ""}`).join("")}`,
    ]);
    vmiOutput.write(`${table(["check", "result", "details"], rows)}\n`);
  }
  if (findings > 0) process.exitCode = VMI_EXIT.findings;
}

export interface ServeOptions {
  guest?: string[];
  tokenFile?: string;
  clientId?: string;
  host?: string;
  port?: string;
  machine?: string;
  /** TLS with client certificates instead of a token: the CA, the server's certificate and key. */
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Revoked client certificates (SHA-256 fingerprints, one a line), read again on SIGHUP. */
  revoked?: string;
}

function readPem(what: string, path: string | undefined): string {
  if (!path) throw new UsageError(`--tls needs ${what}`);
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

/** The TLS mode's material: security VMs' certificates name the guests they may read. */
function serveTls(
  o: ServeOptions,
  revocations: Revocations,
): NonNullable<ConstructorParameters<typeof PageServer>[0]["tls"]> {
  if (o.tokenFile) throw new UsageError("--tls and --token-file exclude each other");
  return {
    ca: readPem("--tls-ca", o.tlsCa),
    cert: readPem("--tls-cert", o.tlsCert),
    key: readPem("--tls-key", o.tlsKey),
    identify: revocations.guardIdentify(securityVmClient),
  };
}

/** Runs a page server until SIGINT/SIGTERM; prints "listening HOST:PORT" once ready. */
export async function vmiServe(o: ServeOptions): Promise<void> {
  const specs = o.guest ?? [];
  if (specs.length === 0) throw new UsageError("serve needs at least one --guest ID=RAMFILE");
  const port = Number(o.port ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port ${o.port}: expected 0..65535`);
  const revocations = new Revocations();
  const loadRevoked = () => {
    if (!o.revoked) return;
    try {
      const n = revocations.load(o.revoked);
      process.stderr.write(`${n} revoked certificates from ${o.revoked}\n`);
    } catch (e) {
      throw new UsageError(`--revoked ${o.revoked}: ${(e as Error).message}`);
    }
  };
  if (o.revoked && !o.tls) throw new UsageError("--revoked needs --tls");
  const tls = o.tls ? serveTls(o, revocations) : undefined;
  loadRevoked();
  const token = tls ? "" : readToken(o.tokenFile);
  const files: { close(): void }[] = [];
  const guests = new Map<string, PhysicalMemory>();
  try {
    for (const spec of specs) {
      const m = /^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})=(.+)$/.exec(spec);
      if (!m) throw new UsageError(`--guest ${spec}: expected ID=RAMFILE`);
      try {
        const rf = openRamFile(m[2], { machine: machineOf(o.machine) });
        files.push(rf);
        guests.set(m[1], rf.memory);
      } catch (e) {
        if (e instanceof MemoryError) throw new UsageError(`--guest ${spec}: ${e.message}`);
        throw e;
      }
    }
    let server: PageServer;
    try {
      server = new PageServer({
        clients: tls ? [] : [{ id: o.clientId ?? "vmi-client", token, guests: [...guests.keys()] }],
        tls,
        guests,
        log: (msg) => process.stderr.write(`${msg}\n`),
      });
    } catch (e) {
      if (e instanceof RemoteError) throw new UsageError(e.message);
      throw e;
    }
    const addr = await server.listen(port, o.host ?? "127.0.0.1").catch((e: Error) => {
      throw new UsageError(`cannot listen on ${o.host ?? "127.0.0.1"}:${port}: ${e.message}`);
    });
    vmiOutput.write(`listening ${addr.host}:${addr.port}${tls ? " tls" : ""}\n`);
    // A rotation's last step: the old certificates' fingerprints added, then SIGHUP (a bad
    // file keeps the list in force).
    const reload = () => {
      try {
        loadRevoked();
      } catch (e) {
        process.stderr.write(`${(e as Error).message}: the previous list stays\n`);
      }
      // A rotation of the server's own credential: the files read again, presented from the
      // next handshake on (a file that does not read or parse keeps the credential in force).
      if (tls) {
        try {
          server.setCredentials({
            ca: readPem("--tls-ca", o.tlsCa),
            cert: readPem("--tls-cert", o.tlsCert),
            key: readPem("--tls-key", o.tlsKey),
          });
          process.stderr.write("server credential reloaded\n");
        } catch (e) {
          process.stderr.write(`${(e as Error).message}: the previous server credential stays\n`);
        }
      }
    };
    process.on("SIGHUP", reload);
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    process.off("SIGHUP", reload);
    await server.close();
  } finally {
    for (const f of files) f.close();
  }
}
