import assert from "node:assert/strict";
import { test } from "node:test";
import { openStore } from "../connect.ts";

test("history: keeps the newest rows, drops the older ones", async () => {
  const store = await openStore("sqlite::memory:");
  try {
    const history = store.repos.history;
    await store.db
      .insertInto("overview_history")
      .values(Array.from({ length: 600 }, (_, i) => ({ at: i, host_vms: 5, cost_per_hour: 1, guests: 1 })))
      .execute();
    await history.keepNewest(500);
    const left = await history.since(-1);
    assert.equal(left.length, 500);
    assert.equal(left[0].at, 100);
    assert.equal(left.at(-1)?.at, 599);
    await history.insert({ at: 599, hostVms: 9, costPerHour: 9, guests: 9 });
    assert.equal((await history.newest())?.hostVms, 5, "a second sample at the same time is dropped");
  } finally {
    await store.close();
  }
});
