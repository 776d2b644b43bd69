import assert from "node:assert/strict";
import { test } from "node:test";
import { hasCprTransfer, parseQemuVersion } from "./version.ts";

test("QEMU versions are read from --version and tell whether cpr-transfer exists", () => {
  const deb = parseQemuVersion(
    "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard\n",
  );
  assert.deepEqual({ ...deb, text: undefined }, { major: 7, minor: 2, patch: 22, text: undefined });
  assert.equal(hasCprTransfer(deb!), false);
  const bpo = parseQemuVersion("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)");
  assert.equal(hasCprTransfer(bpo!), true);
  assert.equal(parseQemuVersion("QEMU emulator version 9.1")?.patch, 0);
  assert.equal(parseQemuVersion("not qemu"), null);
});
