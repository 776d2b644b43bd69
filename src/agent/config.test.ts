// Agent start-up configs: a bad one is refused with one line naming the file and the field.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { loadAgentConfig } from "./config.ts";

const dir = mkdtempSync(join(tmpdir(), "nestcloud-agent-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(config: unknown): string {
  const p = join(dir, `c${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(p, JSON.stringify(config));
  return p;
}

const server = {
  role: "server",
  testbedId: "t1",
  server: "s1",
  address: "10.213.0.10",
  poolDir: "/dev/shm/p",
  tokenFile: "/run/t",
  readyFile: "/run/r",
  iface: null,
  hostVms: [{ name: "h1", memoryMiB: 1024, cpus: 1 }],
};

test("a valid server agent config loads", () => {
  assert.equal(loadAgentConfig(file(server)).role, "server");
});

test("an unknown role lists the roles", () => {
  const p = file({ ...server, role: "router" });
  assert.throws(() => loadAgentConfig(p), { message: `${p}: role: must be one of server, hostvm` });
});

test("other problems name the field", () => {
  const p = file({ ...server, iface: 5 });
  assert.throws(() => loadAgentConfig(p), { message: `${p}: iface: must be a string or null` });
});
