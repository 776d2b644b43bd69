// The kernel's own text patching told apart from tampering, on the real case: a Debian 6.1
// guest left alone flips its crng_is_ready static key minutes after boot (the RNG seeded), and
// the 64 KiB chunk starting in serial8250_release_dma (it runs into drivers/char/random.c)
// changes: the memory monitor's false "kernel text differs" alert. The fixture is that chunk
// before and after, and the jump-table entries of its sites, read from a real guest.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { jumpLabelSites, maskedChunk, type PatchSite, SITE_SLACK, siteForm } from "./text-patches.ts";

const fx = JSON.parse(
  readFileSync(join(import.meta.dirname, "../../../test/fixtures/kernel-text/crng-static-key.json"), "utf8"),
) as {
  stext: string;
  chunkOffset: number;
  entries: { va: string; hex: string }[];
  before: string;
  after: string;
};
const CHUNK = 64 * 1024;
const stext = BigInt(fx.stext);
const off = fx.chunkOffset;
// The fixture's bytes are the chunk and 8 bytes after it; the text from `off` on.
const before = new Uint8Array(gunzipSync(Buffer.from(fx.before, "base64")));
const after = new Uint8Array(gunzipSync(Buffer.from(fx.after, "base64")));
const sites: PatchSite[] = fx.entries
  .flatMap((e) => jumpLabelSites(Buffer.from(e.hex, "hex"), BigInt(e.va), stext, 32 * 1024 * 1024))
  .sort((a, b) => a.at - b.at);
const masked = (b: Uint8Array) => maskedChunk(b, off, off, CHUNK, sites);

describe("kernel text: the kernel's own patching is not tampering", () => {
  test("the real case: the chunk changed only at jump-label sites (NOP <-> jump to target); masked, it matches", () => {
    assert.notDeepEqual(before.subarray(0, CHUNK), after.subarray(0, CHUNK), "the raw chunk differs");
    assert.ok(sites.length >= 20, `the chunk's sites (${sites.length})`);
    const differing: number[] = [];
    for (let i = 0; i < CHUNK; i++) if (before[i] !== after[i]) differing.push(off + i);
    assert.ok(differing.length > 0);
    for (const d of differing)
      assert.ok(
        sites.some((s) => d >= s.at && d < s.at + 5),
        `byte +0x${d.toString(16)} changed outside any site`,
      );
    // Every site holds a legitimate form before and after, some of them a different one.
    let flipped = 0;
    for (const s of sites) {
      const i = s.at - off;
      if (i < 0 || i >= CHUNK) continue;
      const [f0, f1] = [siteForm(before, i, s), siteForm(after, i, s)];
      assert.ok(f0 !== null && f0 === f1, `site +0x${s.at.toString(16)}: ${f0} / ${f1}`);
      if (before[i] !== after[i]) flipped++;
    }
    assert.ok(flipped >= 10, `sites flipped by the static key: ${flipped}`);
    const [m0, m1] = [masked(before), masked(after)];
    assert.deepEqual([m0.badSites, m1.badSites], [[], []]);
    assert.equal(m1.digest, m0.digest);
  });

  test("a byte changed outside the sites still differs", () => {
    const t = Uint8Array.from(after);
    const i = [...Array(CHUNK).keys()].find(
      (k) => !sites.some((s) => off + k >= s.at && off + k < s.at + 5) && k > 4096,
    );
    assert.ok(i !== undefined);
    t[i] ^= 0xff;
    const m = masked(t);
    assert.deepEqual(m.badSites, []);
    assert.notEqual(m.digest, masked(before).digest);
  });

  test("a site made to jump elsewhere (5- or 2-byte) is tampering, named by its offset", () => {
    const five = sites.find((s) => s.at >= off && siteForm(after, s.at - off, s) === 5);
    const two = sites.find((s) => s.at >= off && siteForm(after, s.at - off, s) === 2);
    assert.ok(five && two, "the fixture has sites of both sizes");
    const t = Uint8Array.from(after);
    const i5 = five.at - off;
    t[i5] = 0xe9;
    new DataView(t.buffer).setInt32(i5 + 1, five.target - five.at - 5 + 0x40, true);
    const i2 = two.at - off;
    t[i2] = 0xeb;
    t[i2 + 1] = (two.target - two.at - 2 + 3) & 0xff;
    assert.deepEqual(
      masked(t).badSites,
      [five.at, two.at].sort((a, b) => a - b),
    );
    // The legitimate jump to its own target is not.
    const ok = Uint8Array.from(after);
    ok[i5] = 0xe9;
    new DataView(ok.buffer).setInt32(i5 + 1, five.target - five.at - 5, true);
    ok[i2] = 0xeb;
    ok[i2 + 1] = (two.target - two.at - 2) & 0xff;
    assert.deepEqual(masked(ok).badSites, []);
    assert.equal(masked(ok).digest, masked(before).digest);
  });

  test("a site across the chunk's start is masked from the bytes read before it", () => {
    // A synthetic 5-byte NOP site starting 2 bytes before a chunk: its 3 bytes in the chunk are
    // masked whether they hold the NOP's tail or the jump's.
    const site: PatchSite = { at: 100 - 2, target: 500 };
    const nop = new Uint8Array(SITE_SLACK + 16);
    nop.set([0x0f, 0x1f, 0x44, 0x00, 0x00], SITE_SLACK - 2);
    const jmp = Uint8Array.from(nop);
    jmp[SITE_SLACK - 2] = 0xe9;
    new DataView(jmp.buffer).setInt32(SITE_SLACK - 1, site.target - site.at - 5, true);
    const from = 100 - SITE_SLACK;
    assert.equal(
      maskedChunk(nop, from, 100, 12, [site]).digest,
      maskedChunk(jmp, from, 100, 12, [site]).digest,
    );
    assert.deepEqual(
      maskedChunk(jmp, from, 100, 12, [site]).badSites,
      [],
      "judged by the chunk it starts in",
    );
  });

  test("entries whose code lies outside the text are left out", () => {
    const e = new Uint8Array(16);
    new DataView(e.buffer).setInt32(0, -0x1000, true);
    assert.deepEqual(jumpLabelSites(e, stext, stext, 1 << 20), []);
  });
});
