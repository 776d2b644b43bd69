import assert from "node:assert/strict";
import { test } from "node:test";
import {
  hostLinkName,
  loopbackAddress,
  netnsName,
  newTestbedId,
  overlaps,
  pickSubnet,
  serverAddress,
} from "./names.ts";
import { TESTBED_ID_RE } from "./spec.ts";

test("ids fit interface names (15 bytes) and namespace names carry them", () => {
  for (let i = 0; i < 50; i++) {
    const id = newTestbedId();
    assert.match(id, TESTBED_ID_RE);
    assert.ok(hostLinkName(id).length <= 15);
  }
  assert.ok(hostLinkName("abcdefgh").length <= 15, "the longest id still fits");
  assert.equal(netnsName("x1", "s1"), "nc-x1-s1");
});

test("CIDR overlap", () => {
  assert.ok(overlaps("10.0.0.0/8", "10.213.4.0/24"));
  assert.ok(overlaps("10.213.4.0/24", "10.213.4.7"));
  assert.ok(!overlaps("192.0.2.0/24", "10.213.4.0/24"));
  assert.ok(!overlaps("10.213.5.0/24", "10.213.4.0/24"));
  assert.ok(overlaps("0.0.0.0/0", "10.213.4.0/24"));
});

test("the subnet avoids every route of the machine and is stable per id", () => {
  const a = pickSubnet("abc", ["default", "192.0.2.0/24"]);
  assert.equal(pickSubnet("abc", ["default", "192.0.2.0/24"]).cidr, a.cidr);
  assert.match(a.cidr, /^10\.213\.\d+\.0\/24$/);
  const b = pickSubnet("abc", [a.cidr]);
  assert.notEqual(b.cidr, a.cidr);
  assert.throws(() => pickSubnet("abc", ["10.213.0.0/16"]), /no free \/24/);
  assert.equal(serverAddress(a, 0).split(".")[3], "10");
  assert.equal(a.hostAddress.split(".")[3], "1");
});

test("loopback fallback addresses are distinct per server", () => {
  assert.notEqual(loopbackAddress("t1", 0), loopbackAddress("t1", 1));
  assert.match(loopbackAddress("t1", 3), /^127\.0\.\d+\.13$/);
});
