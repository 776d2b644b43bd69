// agentCommand() starts a working agent process: built (dist/ fresh) or from the sources
// (NESTCLOUD_NO_DIST=1, or dist/ stale), directly or under the host-VM agents' supervisor as
// the testbed starts it. A server agent needs no namespace or QEMU, so it runs here on
// loopback: ready file, an authenticated status, a clean stop on SIGTERM.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { runsDist, staleReason } from "../bin/freshness.js";
import { agentCommand, ServerAgentClient, type ServerAgentConfig } from "../src/agent/index.ts";
import { SUPERVISOR_SCRIPT } from "../src/testbed/processes.ts";

const root = resolve(import.meta.dirname, "..");
const dir = mkdtempSync(join(tmpdir(), "nestcloud-agent-cmd-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function startServerAgent(
  name: string,
  env: Record<string, string>,
  supervised = false,
): Promise<void> {
  const config: ServerAgentConfig = {
    role: "server",
    testbedId: "t",
    server: name,
    address: "127.0.0.1",
    poolDir: join(dir, name, "pool"),
    tokenFile: join(dir, name, "token"),
    readyFile: join(dir, name, "ready.json"),
    iface: null,
    hostVms: [{ name: "h1", memoryMiB: 512, cpus: 1 }],
  };
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config));
  const record = join(dir, `${name}.record.json`);
  const [cmd, ...args] = supervised
    ? [
        process.execPath,
        SUPERVISOR_SCRIPT,
        "--record",
        record,
        "--ready",
        config.readyFile,
        "--",
        ...agentCommand(),
        "--config",
        file,
      ]
    : [...agentCommand(), "--config", file];
  const child = spawn(cmd, args, {
    cwd: tmpdir(),
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  try {
    const deadline = Date.now() + 90_000;
    while (!existsSync(config.readyFile)) {
      assert.ok(child.exitCode === null, `agent exited early: ${stderr}`);
      assert.ok(Date.now() < deadline, `agent not ready: ${stderr}`);
      await sleep(50);
    }
    const { url, pid } = JSON.parse(readFileSync(config.readyFile, "utf8")) as { url: string; pid: number };
    // Supervised, the agent is the supervisor's child, named in its record.
    assert.equal(pid, supervised ? JSON.parse(readFileSync(record, "utf8")).pid : child.pid);
    const status = await new ServerAgentClient(url, readFileSync(config.tokenFile, "utf8").trim()).status();
    assert.equal(status.server, name);
    assert.deepEqual(
      status.hostVms.map((h) => h.name),
      ["h1"],
    );
  } finally {
    child.kill("SIGTERM");
  }
  assert.equal(await exited, 0, stderr);
}

test(`the agent command runs an agent (${runsDist(root) ? "built, dist/ is fresh" : "from the sources, dist/ is not fresh"})`, async () => {
  await startServerAgent("built", {});
});

test("the agent command runs an agent from the sources (NESTCLOUD_NO_DIST=1)", async () => {
  await startServerAgent("sources", { NESTCLOUD_NO_DIST: "1" });
});

test(`the agent command runs under the supervisor (${runsDist(root) ? "built" : "from the sources"})`, async () => {
  await startServerAgent("supervised", {}, true);
});

test("the built code names the supervisor script where it is (from dist/chunks/ as from src/)", (t) => {
  if (staleReason(root) !== null) return t.skip("dist/ is not fresh");
  const found: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith(".js"))
        for (const m of readFileSync(p, "utf8").matchAll(
          /new URL\("([^"]*supervisor\.mjs)", import\.meta\.url\)/g,
        ))
          found.push(resolve(dirname(p), m[1]));
    }
  };
  walk(join(root, "dist"));
  assert.ok(found.length > 0, "the supervisor's path is in dist/");
  for (const f of found) assert.equal(f, SUPERVISOR_SCRIPT);
  assert.ok(existsSync(SUPERVISOR_SCRIPT));
  assert.equal(SUPERVISOR_SCRIPT, fileURLToPath(new URL("../src/testbed/supervisor.mjs", import.meta.url)));
});
