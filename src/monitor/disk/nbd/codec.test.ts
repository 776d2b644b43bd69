// The codec on its own: well-formed messages decode, malformed ones throw NbdProtocolError
// with the code that names the fault.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  decodeBlockStatus,
  decodeErrorChunk,
  decodeGreeting,
  decodeHole,
  decodeInfo,
  decodeMetaContext,
  decodeOptionReplyHeader,
  decodeRequest,
  displayText,
  encodeGoData,
  encodeMetaContextData,
  encodeRequest,
} from "./codec.ts";
import { NbdProtocolError, type NbdProtocolErrorCode } from "./errors.ts";
import { bytes } from "./fake-server.testkit.ts";
import {
  NBD_CLISERV_MAGIC,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_INIT_MAGIC,
  NBD_OPTS_MAGIC,
  NBD_REP_MAGIC,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
} from "./protocol.ts";

const { u16, u32, u64 } = bytes;
const cat = (...b: Buffer[]) => Buffer.concat(b);

function throwsCode(fn: () => unknown, code: NbdProtocolErrorCode, msg?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof NbdProtocolError, `an NbdProtocolError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (msg) assert.match(e.message, msg);
    return true;
  });
}

test("greeting: newstyle accepted; wrong magic and oldstyle refused", () => {
  assert.deepEqual(decodeGreeting(cat(u64(NBD_INIT_MAGIC), u64(NBD_OPTS_MAGIC), u16(3))), {
    handshakeFlags: 3,
  });
  throwsCode(() => decodeGreeting(cat(u64(0x1234n), u64(NBD_OPTS_MAGIC), u16(1))), "bad-magic", /NBDMAGIC/);
  throwsCode(
    () => decodeGreeting(cat(u64(NBD_INIT_MAGIC), u64(NBD_CLISERV_MAGIC), u16(1))),
    "bad-magic",
    /oldstyle/,
  );
  throwsCode(() => decodeGreeting(cat(u64(NBD_INIT_MAGIC), u64(NBD_OPTS_MAGIC + 1n), u16(1))), "bad-magic");
});

test("option reply header: magic checked, fields decoded", () => {
  assert.deepEqual(decodeOptionReplyHeader(cat(u64(NBD_REP_MAGIC), u32(7), u32(3), u32(12))), {
    option: 7,
    type: 3,
    length: 12,
  });
  throwsCode(() => decodeOptionReplyHeader(cat(u64(NBD_OPTS_MAGIC), u32(7), u32(3), u32(12))), "bad-magic");
});

test("info replies: export and block size validated, unknown types tolerated", () => {
  assert.deepEqual(decodeInfo(cat(u16(NBD_INFO_EXPORT), u64(1 << 20), u16(3))), {
    type: "export",
    size: 1 << 20,
    transmissionFlags: 3,
  });
  throwsCode(() => decodeInfo(cat(u16(NBD_INFO_EXPORT), u64(1), u16(3), u16(0))), "bad-length");
  throwsCode(() => decodeInfo(cat(u16(NBD_INFO_EXPORT), u64(2n ** 60n), u16(1))), "bad-value", /too large/);
  assert.deepEqual(decodeInfo(cat(u16(NBD_INFO_BLOCK_SIZE), u32(1), u32(4096), u32(32 << 20))), {
    type: "block-size",
    minimum: 1,
    preferred: 4096,
    maximum: 32 << 20,
  });
  throwsCode(() => decodeInfo(cat(u16(NBD_INFO_BLOCK_SIZE), u32(3), u32(4096), u32(1 << 20))), "bad-value");
  throwsCode(
    () => decodeInfo(cat(u16(NBD_INFO_BLOCK_SIZE), u32(1 << 17), u32(1 << 17), u32(1 << 20))),
    "bad-value",
  );
  throwsCode(() => decodeInfo(cat(u16(NBD_INFO_BLOCK_SIZE), u32(512), u32(4096), u32(1024))), "bad-value");
  assert.deepEqual(decodeInfo(cat(u16(77), u32(1))), { type: "unknown", code: 77 });
  throwsCode(() => decodeInfo(Buffer.alloc(1)), "bad-length");
});

test("metadata context names must be UTF-8 without NUL", () => {
  assert.deepEqual(decodeMetaContext(cat(u32(5), Buffer.from("base:allocation"))), {
    id: 5,
    name: "base:allocation",
  });
  throwsCode(() => decodeMetaContext(cat(u32(5), Buffer.from([0xff, 0xfe, 0x41]))), "bad-value", /UTF-8/);
  throwsCode(() => decodeMetaContext(cat(u32(5), Buffer.from("a\0b"))), "bad-value", /NUL/);
  throwsCode(() => decodeMetaContext(cat(u32(5), Buffer.alloc(5000, 0x61))), "too-large");
});

test("requests round-trip; option data is laid out as the spec says", () => {
  const r = { flags: 8, type: 7, handle: 0x1122334455667788n, offset: 2 ** 40, length: 0xfffffffe };
  assert.deepEqual(decodeRequest(encodeRequest(r)), r);
  assert.deepEqual(encodeGoData("d0", [3]), cat(u32(2), Buffer.from("d0"), u16(1), u16(3)));
  assert.deepEqual(
    encodeMetaContextData("x", ["base:allocation"]),
    cat(u32(1), Buffer.from("x"), u32(1), u32(15), Buffer.from("base:allocation")),
  );
  assert.throws(() => encodeGoData("a\0", []), RangeError);
});

test("holes and block status: lengths and zero sizes refused", () => {
  assert.deepEqual(decodeHole(cat(u64(4096), u32(512))), { offset: 4096, length: 512 });
  throwsCode(() => decodeHole(cat(u64(4096), u32(0))), "bad-value");
  throwsCode(() => decodeHole(cat(u64(4096), u32(1), u32(1))), "bad-length");
  assert.deepEqual(decodeBlockStatus(cat(u32(1), u32(512), u32(3), u32(1024), u32(0))), {
    contextId: 1,
    descriptors: [
      { length: 512, flags: 3 },
      { length: 1024, flags: 0 },
    ],
  });
  throwsCode(() => decodeBlockStatus(u32(1)), "bad-length");
  throwsCode(() => decodeBlockStatus(cat(u32(1), u32(512), u32(3), u32(7))), "bad-length");
  throwsCode(() => decodeBlockStatus(cat(u32(1), u32(0), u32(3))), "bad-value");
});

test("error chunks: message bounded by the chunk, offsets decoded, error 0 refused", () => {
  const msg = Buffer.from("no such block");
  assert.deepEqual(decodeErrorChunk(NBD_REPLY_TYPE_ERROR, cat(u32(5), u16(msg.length), msg)), {
    errno: 5,
    message: "no such block",
  });
  assert.deepEqual(decodeErrorChunk(NBD_REPLY_TYPE_ERROR_OFFSET, cat(u32(22), u16(0), u64(8192))), {
    errno: 22,
    message: "",
    offset: 8192,
  });
  throwsCode(() => decodeErrorChunk(NBD_REPLY_TYPE_ERROR, cat(u32(5), u16(100), msg)), "bad-length");
  throwsCode(() => decodeErrorChunk(NBD_REPLY_TYPE_ERROR_OFFSET, cat(u32(5), u16(0), u32(1))), "bad-length");
  throwsCode(() => decodeErrorChunk(NBD_REPLY_TYPE_ERROR, cat(u32(0), u16(0))), "bad-value");
});

test("text from the server cannot forge log lines or terminal escapes", () => {
  assert.equal(displayText(Buffer.from("bad\nNESTCLOUD-ALERT x\u001b[2J")), "bad?NESTCLOUD-ALERT x?[2J");
  assert.equal(displayText(Buffer.alloc(10_000, 0x41)).length, 4096);
});
