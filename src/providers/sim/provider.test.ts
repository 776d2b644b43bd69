// The simulated provider's migrations take the time their mechanism's model says: an instant
// handover milliseconds of provider time, a pre-copy its seconds — duration, ETA and clock agree.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { StateStore } from "../types.ts";
import { demoWorld } from "./demo.ts";
import { SimProvider } from "./provider.ts";

function memoryStore(): StateStore {
  let saved: string | undefined;
  return {
    load: async () => saved,
    save: async (json) => {
      saved = json;
    },
  };
}

test("an instant move takes its modelled milliseconds; a pre-copy its seconds", async () => {
  let wall = 1_000_000;
  const p = await SimProvider.open(
    memoryStore(),
    () => demoWorld({ speed: 60 }),
    () => wall,
  );
  const snap = await p.snapshot();
  const g = snap.guests[0];
  const sameServer = snap.hostVms.find(
    (h) => h.id !== g.hostVm && h.server === snap.hostVms.find((x) => x.id === g.hostVm)!.server,
  )!;
  const instant = await p.migrate(g.id, sameServer.id, "instant", 0.019);
  assert.ok(instant.etaSeconds <= 0.019 + 1e-5, `ETA ${instant.etaSeconds}`);
  wall += 0.001; // 60 ms of provider time later
  const done = (await p.migration(instant.id))!;
  assert.equal(done.status, "completed");
  assert.ok(
    Math.abs(done.finishedAt! - done.startedAt - 0.019) < 1e-5, // provider time = wall x speed: ~1e-5 s float resolution here
    `took ${done.finishedAt! - done.startedAt} s`,
  );
  assert.ok(
    done.pauseMs !== undefined && done.pauseMs > 0 && done.pauseMs < 1000,
    `an instant move reports its modelled pause in milliseconds (${done.pauseMs})`,
  );

  const other = snap.guests[1];
  const far = snap.hostVms.find((h) => h.server !== sameServer.server)!;
  const pre = await p.migrate(other.id, far.id, "precopy", 42);
  assert.ok(Math.abs(pre.etaSeconds - 42) < 1e-6);
  wall += 30 / 60; // 30 s of provider time
  const half = (await p.migration(pre.id))!;
  assert.equal(half.status, "running");
  assert.equal(half.pauseMs, undefined, "no pause is reported before the switchover");
  assert.ok(Math.abs(half.etaSeconds - 12) < 1e-6, `ETA ${half.etaSeconds}`);
  wall += 13 / 60;
  const end = (await p.migration(pre.id))!;
  assert.equal(end.status, "completed");
  assert.ok(Math.abs(end.finishedAt! - end.startedAt - 42) < 1e-6);
});
