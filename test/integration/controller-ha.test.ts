// High availability on PostgreSQL: two controllers share the store; one leads. Kill the
// leader while a plan runs; the follower leads within 10 s and finishes the plan.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  api,
  type ControllerProcess,
  killHard,
  startControllerProcess,
  stopGently,
  until,
} from "../support/controller-process.ts";
import { startPostgres, type TempPostgres } from "../support/postgres.ts";

let pg: TempPostgres;
const dirs: string[] = [];
const procs: ControllerProcess[] = [];

before(() => {
  pg = startPostgres();
});

after(async () => {
  for (const p of procs) await stopGently(p);
  pg?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function controller(): Promise<ControllerProcess> {
  const dir = mkdtempSync(join(tmpdir(), "nestcloud-ha-"));
  dirs.push(dir);
  const p = await startControllerProcess(["--db", pg.url, "--data-dir", dir, "--port", "0", "--speed", "30"]);
  procs.push(p);
  return p;
}

const leads = async (p: ControllerProcess) =>
  ((await (await fetch(`${p.url}/health`)).json()) as { leader: boolean }).leader;

test("the follower takes over within 10 s and finishes the leader's plan", async () => {
  const a = await controller();
  const b = await controller();
  await until("exactly one leader", async () => ((await leads(a)) !== (await leads(b)) ? true : undefined));
  const [leader, follower] = (await leads(a)) ? [a, b] : [b, a];
  // Tokens are in the shared store: the follower accepts the leader's admin token.
  const viaFollower = { url: follower.url, token: leader.token };
  assert.equal((await api(viaFollower, "GET", "/api/vms")).status, 200);
  assert.equal(
    (await api(viaFollower, "PUT", "/api/settings", { automation: "automatic" })).status,
    503,
    "followers refuse writes",
  );

  const plan = await until("a plan with a running migration", async () => {
    const plans = (await api(leader, "GET", "/api/plans")).body as Array<{
      id: number;
      status: string;
      actions: Array<{ kind: string; status: string }>;
    }>;
    return plans.find(
      (p) => p.status === "applying" && p.actions.some((x) => x.kind === "migrate" && x.status === "running"),
    );
  });
  await killHard(leader);
  const killedAt = Date.now();
  await until("the follower to lead", async () => ((await leads(follower)) ? true : undefined), 10_000, 100);
  const tookOver = (Date.now() - killedAt) / 1000;
  assert.ok(tookOver <= 10, `took over in ${tookOver} s`);

  const final = await until(`plan ${plan.id} to finish under the new leader`, async () => {
    const p = (await api(viaFollower, "GET", `/api/plans/${plan.id}`)).body as {
      status: string;
      actions: Array<{ status: string; error: string | null }>;
    };
    return p.status === "applied" || p.status === "failed" ? p : undefined;
  });
  // The promise: the new leader *finishes* the plan — every action done.
  assert.equal(final.status, "applied", `plan ${plan.id}: ${JSON.stringify(final.actions)}`);
  assert.ok(final.actions.every((x) => x.status === "done"));
  // Every guest is placed once, on a host VM that runs.
  const vms = (await api(viaFollower, "GET", "/api/vms")).body as Array<{ id: string; hostVm: string }>;
  const hosts = new Set(
    ((await api(viaFollower, "GET", "/api/hostvms")).body as Array<{ id: string; state: string }>)
      .filter((h) => h.state === "running")
      .map((h) => h.id),
  );
  assert.equal(new Set(vms.map((v) => v.id)).size, vms.length);
  for (const v of vms) assert.ok(hosts.has(v.hostVm), `${v.id} on running host VM ${v.hostVm}`);
  process.stdout.write(
    `# follower led ${tookOver.toFixed(1)} s after the leader was killed; plan ${plan.id} ${final.status}\n`,
  );
});
