// The malware scan through clamscan with custom databases: an .ndb hex pattern found anywhere
// in a file (also deep in a multi-MiB file written in pieces), an .hdb whole-file hash, clean
// files not reported; the limits never hide a file: over --max-filesize it is reported as not
// scanned, past --max-scansize clamscan's Heuristics.Limits.Exceeded is a "limits" finding;
// batches split by files and bytes; the scratch folder is private and emptied.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ClamAvError, ClamScanner, hashSignature, hexSignature, writeSignatureDatabase } from "./clamav.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-clam-test-"));
const MiB = 1024 * 1024;
const MARKER = Buffer.from("NESTCLOUD-TEST-MALWARE-MARKER-7f3a");
const HASHED = Buffer.from("#!/bin/sh\n# a known bad script, matched by its hash\nrm -rf /\n");
let databases: string[];

before(async () => {
  databases = [
    await writeSignatureDatabase(dir, "test.ndb", [hexSignature("Nestcloud.Test.Marker", MARKER)]),
    await writeSignatureDatabase(dir, "test.hdb", [hashSignature("Nestcloud.Test.Hashed", HASHED)]),
  ];
});
after(() => rmSync(dir, { recursive: true, force: true }));

function noise(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

async function put(s: ClamScanner, path: string, data: Buffer, piece = 256 * 1024): Promise<boolean> {
  const sink = await s.file(path, data.length);
  if (!sink) return false;
  for (let o = 0; o < data.length; o += piece) await sink.write(data.subarray(o, o + piece));
  await sink.end();
  return true;
}

test("hex pattern and hash signatures found, clean files not reported, in batches", async () => {
  const s = await ClamScanner.create({ databases, batchFiles: 2, scratchParent: dir });
  try {
    assert.equal(statSync(s.scratchDir).mode & 0o777, 0o700);
    const deep = noise(3 * MiB, 1);
    MARKER.copy(deep, 2 * MiB + 12345); // across the 256 KiB pieces it was written in
    await put(s, "/usr/bin/clean", noise(100_000, 2));
    await put(s, "/tmp/dropper", Buffer.concat([Buffer.from("prefix "), MARKER, Buffer.from(" suffix")]));
    await put(s, "/opt/big-with-marker", deep);
    await put(s, "/etc/cron.daily/bad", HASHED);
    await put(s, "/etc/cron.daily/almost", Buffer.concat([HASHED, Buffer.from("\n")]));
    const findings = await s.flush();
    assert.deepEqual(findings.map((f) => [f.path, f.signature, f.kind]).sort(), [
      ["/etc/cron.daily/bad", "Nestcloud.Test.Hashed.UNOFFICIAL", "malware"],
      ["/opt/big-with-marker", "Nestcloud.Test.Marker.UNOFFICIAL", "malware"],
      ["/tmp/dropper", "Nestcloud.Test.Marker.UNOFFICIAL", "malware"],
    ]);
    assert.equal(s.stats.filesScanned, 5);
    assert.equal(s.stats.runs, 3, "5 files in batches of 2");
    assert.deepEqual(readdirSync(s.scratchDir), [], "nothing of the guest's is left behind");
    assert.deepEqual(await s.flush(), []);
  } finally {
    await s.close();
  }
});

test("limits never hide a file: too large is reported, past the scan size is a finding", async () => {
  const s = await ClamScanner.create({
    databases,
    maxFileBytes: 2 * MiB,
    maxScanBytes: 1 * MiB,
    scratchParent: dir,
  });
  try {
    const tooBig = noise(3 * MiB, 3);
    assert.equal(await put(s, "/var/huge", tooBig), false);
    assert.deepEqual(s.stats.tooLarge, ["/var/huge"]);
    const past = noise(1.5 * MiB, 4);
    MARKER.copy(past, 1.25 * MiB);
    await put(s, "/var/past-scansize", past);
    assert.deepEqual(await s.flush(), [
      { path: "/var/past-scansize", signature: "Heuristics.Limits.Exceeded.MaxScanSize", kind: "limits" },
    ]);
  } finally {
    await s.close();
  }
  assert.throws(() => statSync(s.scratchDir), /ENOENT/, "the scratch folder is removed");
});

test("a missing database or clamscan is a ClamAvError", async () => {
  await assert.rejects(ClamScanner.create({ databases: [] }), ClamAvError);
  await assert.rejects(ClamScanner.create({ databases: [join(dir, "nope.ndb")] }), /does not exist/);
  await assert.rejects(
    ClamScanner.create({ databases, clamscan: join(dir, "no-clamscan") }),
    /not installed/,
  );
});
