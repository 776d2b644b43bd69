// `nestcloud vmi` as users run it, on a synthetic guest's RAM file (no QEMU needed): output
// formats, the page server command, and user errors (one line, exit 2). It lives in test/, not
// src/cli/, because it builds the RAM file with the vmi module's testkit.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { main } from "../src/cli/main.ts";
import { vmiOutput } from "../src/cli/vmi.ts";
import {
  type Credential,
  createCertificateAuthority,
  expectServer,
  fingerprintOf,
  issueCredential,
  tlsOptions,
} from "../src/monitor/channel/index.ts";
import { connectRemoteMemory, RemoteError } from "../src/vmi/index.ts";
import { SyntheticGuest } from "../src/vmi/kernel/synthetic-guest.testkit.ts";

const root = resolve(import.meta.dirname, "..");
const bin = join(root, "bin/nestcloud.js");
const dir = mkdtempSync(join(tmpdir(), "nestcloud-vmi-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const ram = join(dir, "guest.ram");
writeFileSync(ram, new SyntheticGuest().ram);
const token = join(dir, "token");
writeFileSync(token, "cli-test-token-0123456789abcdef\n");
const env = { ...process.env, XDG_CACHE_HOME: join(dir, "cache") };

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 120_000,
    env,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("vmi on a RAM file", () => {
  test("ps --output json lists the processes", () => {
    const r = run("vmi", "ps", "--ram-file", ram, "--output", "json");
    assert.equal(r.code, 0, r.err);
    const ps = JSON.parse(r.out) as { pid: number; comm: string; uid: number }[];
    assert.deepEqual(
      ps.map((p) => [p.pid, p.comm, p.uid]),
      [
        [1, "init", 0],
        [2, "kthreadd", 0],
        [3, "rcu_gp", 0],
        [100, "sh", 0],
        [101, "sleep", 1000],
      ],
    );
  });

  test("modules and info print tables; info names the discovery path", async () => {
    const m = await runHere("vmi", "modules", "--ram-file", ram);
    assert.equal(m.code, 0, m.err);
    assert.match(m.out, /crc7\s+│\s+16384\s+│\s+live/);
    const i = await runHere("vmi", "info", "--ram-file", ram);
    assert.equal(i.code, 0, i.err);
    assert.match(i.out, /discovery path\s+│\s+vmcoreinfo/);
    assert.match(i.out, /KASLR offset\s+│\s+0x2200000/);
  });

  test("info and --verbose say why a VMCOREINFO note was not used", async () => {
    const rejected = join(dir, "rejected.ram");
    writeFileSync(rejected, new SyntheticGuest({ vmcoreinfoExtra: ["OFFSET(page.lru)=-8"] }).ram);
    const i = await runHere("vmi", "info", "--ram-file", rejected, "--no-profile-cache");
    assert.equal(i.code, 0, i.err);
    assert.match(i.out, /discovery path\s+│\s+banner\+ksymtab\+kallsyms-scan/);
    assert.match(
      i.out,
      /VMCOREINFO note at PA 0x[0-9a-f]+ rejected: expected an unsigned decimal: "OFFSET\(page\.lru\)=-8" \(VMCOREINFO_BAD_VALUE\)/,
    );
    const ps = await runHere("vmi", "ps", "--ram-file", rejected, "--no-profile-cache", "-v", "-o", "json");
    assert.equal(ps.code, 0, ps.err);
    assert.equal(JSON.parse(ps.out).length, 5);
    assert.match(ps.err, /^vmi: VMCOREINFO note at PA 0x[0-9a-f]+ rejected: .*OFFSET\(page\.lru\)=-8/m);
    const quiet = await runHere("vmi", "ps", "--ram-file", rejected, "--no-profile-cache");
    assert.equal(quiet.err, "");
  });

  test("check records a baseline, then reports clean (exit 0)", async () => {
    const base = join(dir, "baselines");
    const a = await runHere("vmi", "check", "--ram-file", ram, "--baseline-dir", base, "--output", "json");
    assert.equal(a.code, 0, a.err);
    assert.equal(JSON.parse(a.out).text.status, "baseline-recorded");
    const b = await runHere("vmi", "check", "--ram-file", ram, "--baseline-dir", base, "--output", "json");
    const report = JSON.parse(b.out);
    assert.equal(report.text.status, "match");
    assert.equal(report.findings, 0);
  });

  test("check exits 1 and names the hook when a syscall points outside kernel text", async () => {
    const hooked = join(dir, "hooked.ram");
    writeFileSync(hooked, new SyntheticGuest({ hookSyscalls: { 2: 0xffffffffc0001100n } }).ram);
    const r = await runHere("vmi", "check", "--ram-file", hooked, "--baseline-dir", join(dir, "b2"));
    assert.equal(r.code, 1, r.err);
    assert.match(
      r.out,
      /syscall table\s+│\s+ALERT\s+│.*#2 -> 0xffffffffc0001100 outside-text module:crc7\+0x100/,
    );
  });
});

describe("vmi serve and --remote", () => {
  test("a page server started by the CLI serves ps to the CLI", async () => {
    const child = spawn(
      process.execPath,
      [bin, "vmi", "serve", "--guest", `g1=${ram}`, "--token-file", token],
      {
        cwd: root,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    try {
      const addr = await new Promise<string>((res, rej) => {
        let buf = "";
        const timer = setTimeout(() => rej(new Error(`serve did not start: ${buf}`)), 60_000);
        child.stdout.on("data", (d) => {
          buf += d;
          const m = /listening (\S+)/.exec(buf);
          if (m) {
            clearTimeout(timer);
            res(m[1]);
          }
        });
      });
      const ok = await runAsync(
        "vmi",
        "ps",
        "--remote",
        addr,
        "--guest",
        "g1",
        "--token-file",
        token,
        "-o",
        "json",
      );
      assert.equal(ok.code, 0, ok.err);
      assert.equal(JSON.parse(ok.out).length, 5);
      const other = await runAsync("vmi", "ps", "--remote", addr, "--guest", "g2", "--token-file", token);
      assert.equal(other.code, 2);
      assert.match(other.err, /^nestcloud: --remote .* --guest g2: .*REMOTE_FORBIDDEN/);
      writeFileSync(join(dir, "bad-token"), "not-the-token-0123456789abcdef");
      const bad = await runAsync(
        "vmi",
        "ps",
        "--remote",
        addr,
        "--guest",
        "g1",
        "--token-file",
        join(dir, "bad-token"),
      );
      assert.equal(bad.code, 2);
      assert.match(bad.err, /REMOTE_AUTH/);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });

  test("vmi serve --tls: a security VM's certificate reads its guest; once revoked (SIGHUP) it is refused, a reissued one reads on", async () => {
    const ca = await createCertificateAuthority(join(dir, "tls-ca"));
    const srv = await issueCredential(ca, { name: "pagesrv", role: "page-server", ips: ["127.0.0.1"] });
    const old = await issueCredential(ca, { name: "secvm-a", role: "security-vm", targets: ["g1"] });
    const revoked = join(dir, "revoked");
    writeFileSync(revoked, "# none yet\n");
    const child = spawn(
      process.execPath,
      [
        bin,
        "vmi",
        "serve",
        "--guest",
        `g1=${ram}`,
        "--tls",
        "--tls-ca",
        ca.certPath,
        "--tls-cert",
        srv.certPath,
        "--tls-key",
        srv.keyPath,
        "--revoked",
        revoked,
      ],
      { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] },
    );
    let errText = "";
    child.stderr.on("data", (d) => (errText += d));
    try {
      const port = await new Promise<number>((res, rej) => {
        let buf = "";
        const timer = setTimeout(() => rej(new Error(`serve did not start: ${buf}`)), 60_000);
        child.stdout.on("data", (d) => {
          buf += d;
          const m = /listening \S+:(\d+) tls/.exec(buf);
          if (m) {
            clearTimeout(timer);
            res(Number(m[1]));
          }
        });
      });
      const open = (cred: Credential, guest = "g1") =>
        connectRemoteMemory({
          host: "127.0.0.1",
          port,
          guest,
          tls: { ...tlsOptions(cred), verifyServer: expectServer("page-server") },
        });
      const a = await open(old);
      assert.equal((await a.read([{ addr: 0, len: 64 }]))[0].length, 64);
      a.close();
      await assert.rejects(open(old, "g2"), RemoteError, "a guest its certificate does not name");
      const next = await issueCredential(ca, {
        name: "secvm-a",
        role: "security-vm",
        targets: ["g1"],
        dir: join(dir, "tls-gen2"),
      });
      writeFileSync(revoked, `${fingerprintOf(old.certPem)}\n`);
      const seen = errText.length;
      child.kill("SIGHUP");
      for (let i = 0; i < 100 && !/1 revoked/.test(errText.slice(seen)); i++)
        await new Promise((r) => setTimeout(r, 50));
      await assert.rejects(open(old), RemoteError, "the revoked certificate is refused");
      const b = await open(next);
      assert.equal((await b.read([{ addr: 0, len: 64 }]))[0].length, 64);
      b.close();
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });

  test("vmi serve --tls: on SIGHUP it reads its own certificate again; new connections get the reissued one, an open one reads on", async () => {
    const ca = await createCertificateAuthority(join(dir, "tls-ca-rot"));
    const srv = await issueCredential(ca, { name: "pagesrv", role: "page-server", ips: ["127.0.0.1"] });
    const cli = await issueCredential(ca, { name: "secvm-a", role: "security-vm", targets: ["g1"] });
    const certFile = join(dir, "rot-cert.pem");
    const keyFile = join(dir, "rot-key.pem");
    writeFileSync(certFile, srv.certPem);
    writeFileSync(keyFile, srv.keyPem, { mode: 0o600 });
    const child = spawn(
      process.execPath,
      [
        bin,
        "vmi",
        "serve",
        "--guest",
        `g1=${ram}`,
        "--tls",
        "--tls-ca",
        ca.certPath,
        "--tls-cert",
        certFile,
        "--tls-key",
        keyFile,
      ],
      { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] },
    );
    let errText = "";
    child.stderr.on("data", (d) => (errText += d));
    try {
      const port = await new Promise<number>((res, rej) => {
        let buf = "";
        const timer = setTimeout(() => rej(new Error(`serve did not start: ${buf}`)), 60_000);
        child.stdout.on("data", (d) => {
          buf += d;
          const m = /listening \S+:(\d+) tls/.exec(buf);
          if (m) {
            clearTimeout(timer);
            res(Number(m[1]));
          }
        });
      });
      const open = async () => {
        let fp = "";
        const m = await connectRemoteMemory({
          host: "127.0.0.1",
          port,
          guest: "g1",
          tls: {
            ...tlsOptions(cli),
            verifyServer: (cert) => {
              fp = cert.fingerprint256;
              return expectServer("page-server")(cert);
            },
          },
        });
        return { m, fp };
      };
      const a = await open();
      assert.equal(a.fp, fingerprintOf(srv.certPem));
      const next = await issueCredential(ca, {
        name: "pagesrv",
        role: "page-server",
        ips: ["127.0.0.1"],
        dir: join(dir, "tls-rot-gen2"),
      });
      // A broken file first: the credential in force stays.
      writeFileSync(keyFile, "not a key\n");
      writeFileSync(certFile, next.certPem);
      let seen = errText.length;
      child.kill("SIGHUP");
      for (let i = 0; i < 100 && !/previous server credential stays/.test(errText.slice(seen)); i++)
        await new Promise((r) => setTimeout(r, 50));
      const still = await open();
      assert.equal(still.fp, fingerprintOf(srv.certPem), "a bad key keeps the old credential");
      still.m.close();
      writeFileSync(keyFile, next.keyPem);
      seen = errText.length;
      child.kill("SIGHUP");
      for (let i = 0; i < 100 && !/server credential reloaded/.test(errText.slice(seen)); i++)
        await new Promise((r) => setTimeout(r, 50));
      const b = await open();
      assert.equal(b.fp, fingerprintOf(next.certPem), "the reissued certificate");
      assert.equal((await a.m.read([{ addr: 0, len: 64 }]))[0].length, 64, "the open link reads on");
      assert.equal((await b.m.read([{ addr: 0, len: 64 }]))[0].length, 64);
      a.m.close();
      b.m.close();
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });
});

/** Like run(), without blocking the event loop (the server child must keep being read). */
function runAsync(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res) => {
    const c = spawn(process.execPath, [bin, ...args], { cwd: root, env });
    let out = "";
    let err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    c.once("exit", (code) => res({ code, out, err }));
  });
}

/** main() in this process (spawning costs seconds per case), with its output captured. */
async function runHere(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const w = { out: vmiOutput.write, err: process.stderr.write };
  vmiOutput.write = (s: string) => {
    out += s;
  };
  process.stderr.write = ((s: string) => {
    err += s;
    return true;
  }) as typeof process.stderr.write;
  const saved = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = env.XDG_CACHE_HOME;
  try {
    const code = await main(["node", "nestcloud", ...args]);
    return { code, out, err };
  } finally {
    vmiOutput.write = w.out;
    process.stderr.write = w.err;
    process.env.XDG_CACHE_HOME = saved;
    process.exitCode = undefined;
  }
}

describe("vmi user errors: one line, exit 2", () => {
  const cases: [string, string[], RegExp][] = [
    ["no source", ["vmi", "ps"], /give exactly one of --ram-file, --remote or --qmp/],
    ["two sources", ["vmi", "ps", "--ram-file", ram, "--qmp", "/x"], /give exactly one of/],
    [
      "missing RAM file",
      ["vmi", "ps", "--ram-file", join(dir, "nope.ram")],
      /--ram-file .*nope\.ram: cannot open/,
    ],
    [
      "bad remote",
      ["vmi", "ps", "--remote", "nohost", "--guest", "g"],
      /--remote nohost: expected HOST:PORT/,
    ],
    ["remote without guest", ["vmi", "ps", "--remote", "127.0.0.1:1"], /--remote needs --guest ID/],
    [
      "missing token file",
      ["vmi", "ps", "--remote", "127.0.0.1:1", "--guest", "g", "--token-file", join(dir, "none")],
      /cannot read token file .*none \(ENOENT\)/,
    ],
    [
      "nothing listening",
      ["vmi", "ps", "--remote", "127.0.0.1:1", "--guest", "g", "--token-file", token],
      /cannot connect to 127\.0\.0\.1:1/,
    ],
    ["bad output", ["vmi", "ps", "--ram-file", ram, "-o", "xml"], /--output xml: expected table or json/],
    [
      "bad machine",
      ["vmi", "ps", "--ram-file", ram, "--machine", "virt"],
      /--machine virt: expected q35 or pc/,
    ],
    ["serve without guests", ["vmi", "serve", "--token-file", token], /serve needs at least one --guest/],
  ];
  for (const [name, args, pattern] of cases) {
    test(name, async () => {
      const r = await runHere(...args);
      assert.equal(r.code, 2, r.err);
      const lines = r.err.trim().split("\n");
      assert.equal(lines.length, 1, `one line, got: ${r.err}`);
      assert.match(lines[0], /^nestcloud: /);
      assert.match(lines[0], pattern);
    });
  }
});

describe("vmi exit codes: findings, no Linux kernel, still booting and failures are told apart", () => {
  test("a RAM file that holds no kernel: one line, exit 3, for every command", async () => {
    const empty = join(dir, "empty.ram");
    writeFileSync(empty, new Uint8Array(4 * 1024 * 1024));
    for (const cmd of ["ps", "modules", "info", "check"]) {
      for (const extra of [[], ["--no-fallback"]]) {
        const r = await runHere("vmi", cmd, "--ram-file", empty, ...extra);
        assert.equal(r.code, 3, `${cmd} ${extra}: ${r.err}`);
        assert.match(r.err.trim(), /^nestcloud: vmi: .*\(KERNEL_NOT_FOUND\)$/);
      }
    }
  });

  test("a kernel that is still booting: 'still booting', exit 4 (not an empty list with exit 0)", async () => {
    const booting = join(dir, "booting.ram");
    writeFileSync(booting, new SyntheticGuest({ systemState: 1 }).ram);
    for (const cmd of ["ps", "modules", "info", "check"]) {
      const r = await runHere("vmi", cmd, "--ram-file", booting, "--no-profile-cache");
      assert.equal(r.code, 4, `${cmd}: ${r.err}`);
      assert.equal(r.out, "");
      assert.equal(
        r.err,
        "nestcloud: vmi: kernel 6.1.0-synthetic is still booting (system_state SYSTEM_SCHEDULING); try again once it has started init (KERNEL_NOT_READY)\n",
      );
    }
  });

  test("corrupt guest data is exit 5, findings stay exit 1, usage errors exit 2", async () => {
    const g = new SyntheticGuest();
    g.u64(g.sym("page_offset_base"), 0x1234n); // not a direct-map base
    const corrupt = join(dir, "corrupt.ram");
    writeFileSync(corrupt, g.ram);
    const r = await runHere("vmi", "ps", "--ram-file", corrupt, "--no-profile-cache");
    assert.equal(r.code, 5, r.err);
    assert.match(
      r.err.trim(),
      /^nestcloud: vmi: page_offset_base 0x1234 is not a direct-map base \(KERNEL_INCONSISTENT\)$/,
    );
    assert.equal((await runHere("vmi", "ps")).code, 2);
    // `vmi check` finding something: exit 1 (the hooked-syscall case above).
  });

  test("--help documents the exit codes", () => {
    for (const args of [
      ["vmi", "--help"],
      ["vmi", "check", "--help"],
      ["vmi", "ps", "--help"],
    ]) {
      const r = run(...args);
      assert.equal(r.code, 0, r.err);
      assert.match(
        r.out,
        /Exit codes:\n {2}0 {2}done.*\n {2}1 {2}check: something found.*\n {2}2 {2}usage error.*\n {2}3 {2}no Linux kernel found.*\n {2}4 {2}the guest's kernel is still booting.*\n {2}5 {2}introspection failed/,
      );
    }
  });
});
