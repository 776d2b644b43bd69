import assert from "node:assert/strict";
import { test } from "node:test";
import { CHANNELS, MONITOR_KINDS } from "../alert.ts";
import { chooseChannel, planChannel, transportFor, usesNetwork } from "./channel.ts";

test("the channel follows placement: same host VM local, same server direct, else remote", () => {
  const secvm = { server: "s1", hostVm: "s1-h1" };
  assert.equal(chooseChannel(secvm, { server: "s1", hostVm: "s1-h1" }), "local");
  assert.equal(chooseChannel(secvm, { server: "s1", hostVm: "s1-h2" }), "direct");
  assert.equal(chooseChannel(secvm, { server: "s2", hostVm: "s2-h1" }), "remote");
});

test("an unknown server is never taken for a shared one", () => {
  // Two host VMs of unknown placement may sit on different machines: only the network reaches both.
  assert.equal(
    chooseChannel({ server: undefined, hostVm: "h1" }, { server: undefined, hostVm: "h1" }),
    "remote",
  );
  assert.equal(chooseChannel({ server: "s1", hostVm: "h1" }, { server: undefined, hostVm: "h1" }), "remote");
});

test("local and direct use no network; every remote transport is TLS", () => {
  for (const channel of CHANNELS) {
    for (const monitor of MONITOR_KINDS) {
      const t = transportFor(channel, monitor);
      assert.equal(t.monitor, monitor);
      assert.equal(usesNetwork(t), channel === "remote", `${channel}/${monitor}: ${t.kind}`);
    }
  }
  assert.deepEqual(
    MONITOR_KINDS.map((m) => transportFor("remote", m).kind),
    ["page-server-tls", "nbd-tls", "mirror-tls"],
  );
  assert.deepEqual(
    MONITOR_KINDS.map((m) => transportFor("direct", m).kind),
    ["ram-file", "nbd-unix", "mirror-unix"],
  );
  const plan = planChannel({ server: "a", hostVm: "a1" }, { server: "b", hostVm: "b1" });
  assert.equal(plan.channel, "remote");
  assert.equal(plan.transports.disk.kind, "nbd-tls");
});
