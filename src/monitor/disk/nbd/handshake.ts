// The fixed newstyle handshake, as the client drives it: greeting, client flags, then the
// options nestcloud needs: NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT (base:allocation,
// qemu:dirty-bitmap:<name>) and NBD_OPT_GO with NBD_INFO_BLOCK_SIZE (NBD_OPT_EXPORT_NAME when
// an old server has no NBD_OPT_GO). Every option reply is bounded in size and count.
import {
  decodeExportNameReply,
  decodeGreeting,
  decodeInfo,
  decodeMetaContext,
  decodeOptionReplyHeader,
  displayText,
  encodeClientFlags,
  encodeGoData,
  encodeMetaContextData,
  encodeOption,
  GREETING_BYTES,
  OPTION_REPLY_HEADER_BYTES,
} from "./codec.ts";
import { NbdOptionError, NbdProtocolError } from "./errors.ts";
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_INFO_BLOCK_SIZE,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_UNSUP,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  optionName,
  replyTypeName,
} from "./protocol.ts";
import type { StreamReader } from "./reader.ts";

export interface BlockSize {
  minimum: number;
  preferred: number;
  maximum: number;
}

/** What the handshake settled: the export and the transmission phase's options. */
export interface ExportInfo {
  name: string;
  size: number;
  transmissionFlags: number;
  readOnly: boolean;
  /** The server's size constraints (NBD_INFO_BLOCK_SIZE), which the client then obeys. */
  blockSize: BlockSize | null;
  structuredReplies: boolean;
  /** Selected metadata contexts: name -> the server's id for this connection. */
  contexts: ReadonlyMap<string, number>;
}

export interface HandshakeOptions {
  exportName: string;
  metaContexts: readonly string[];
  structuredReplies: boolean;
  maxOptionReplyBytes: number;
  maxOptionReplies: number;
  /**
   * Upgrade to TLS (NBD_OPT_STARTTLS) before any other option: called after the server's ACK,
   * returns the I/O over the TLS session. Options then travel encrypted.
   */
  startTls?: () => Promise<HandshakeIo>;
}

export interface HandshakeIo {
  reader: StreamReader;
  write(b: Buffer): void;
}

interface OptionReply {
  type: number;
  payload: Buffer;
}

async function readOptionReply(io: HandshakeIo, option: number, o: HandshakeOptions): Promise<OptionReply> {
  const what = `${optionName(option)} reply`;
  const h = decodeOptionReplyHeader(
    await io.reader.read(OPTION_REPLY_HEADER_BYTES, `the header of a ${what}`),
  );
  if (h.option !== option)
    throw new NbdProtocolError(
      "unexpected-reply",
      `a reply to ${optionName(h.option)} while waiting for a ${what}`,
    );
  if (h.length > o.maxOptionReplyBytes)
    throw new NbdProtocolError(
      "too-large",
      `${replyTypeName(h.type)} of ${h.length} bytes to ${optionName(option)} (at most ${o.maxOptionReplyBytes})`,
    );
  return { type: h.type, payload: await io.reader.read(h.length, `a ${replyTypeName(h.type)} payload`) };
}

function optionError(option: number, r: OptionReply): NbdOptionError {
  return new NbdOptionError(optionName(option), replyTypeName(r.type), displayText(r.payload));
}

function expectAck(option: number, r: OptionReply): void {
  if (r.type !== NBD_REP_ACK)
    throw new NbdProtocolError(
      "unexpected-reply",
      `${replyTypeName(r.type)} in answer to ${optionName(option)}`,
    );
  if (r.payload.length !== 0)
    throw new NbdProtocolError("bad-length", `NBD_REP_ACK with ${r.payload.length} bytes of data`);
}

/** Reads replies to one option until its final one, at most maxOptionReplies of them. */
async function* replies(io: HandshakeIo, option: number, o: HandshakeOptions): AsyncGenerator<OptionReply> {
  for (let n = 1; ; n++) {
    if (n > o.maxOptionReplies)
      throw new NbdProtocolError(
        "too-many",
        `more than ${o.maxOptionReplies} replies to ${optionName(option)}`,
      );
    yield await readOptionReply(io, option, o);
  }
}

export async function handshake(plain: HandshakeIo, o: HandshakeOptions): Promise<ExportInfo> {
  let io = plain;
  const { handshakeFlags } = decodeGreeting(await io.reader.read(GREETING_BYTES, "the server's greeting"));
  if (!(handshakeFlags & NBD_FLAG_FIXED_NEWSTYLE))
    throw new NbdProtocolError("bad-value", "the server does not offer fixed newstyle negotiation");
  const noZeroes = (handshakeFlags & NBD_FLAG_NO_ZEROES) !== 0;
  io.write(encodeClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0)));

  if (o.startTls) {
    io.write(encodeOption(NBD_OPT_STARTTLS));
    const r = await readOptionReply(io, NBD_OPT_STARTTLS, o);
    if (r.type & NBD_REP_FLAG_ERROR) throw optionError(NBD_OPT_STARTTLS, r);
    expectAck(NBD_OPT_STARTTLS, r);
    io = await o.startTls();
  }

  let structuredReplies = false;
  if (o.structuredReplies) {
    io.write(encodeOption(NBD_OPT_STRUCTURED_REPLY));
    const r = await readOptionReply(io, NBD_OPT_STRUCTURED_REPLY, o);
    if (r.type === NBD_REP_ERR_UNSUP) structuredReplies = false;
    else if (r.type & NBD_REP_FLAG_ERROR) throw optionError(NBD_OPT_STRUCTURED_REPLY, r);
    else {
      expectAck(NBD_OPT_STRUCTURED_REPLY, r);
      structuredReplies = true;
    }
  }

  const contexts = new Map<string, number>();
  if (o.metaContexts.length > 0) {
    if (!structuredReplies)
      throw new NbdOptionError(
        optionName(NBD_OPT_SET_META_CONTEXT),
        "not attempted",
        "metadata contexts need structured replies, which the server does not offer",
      );
    const wanted = new Set(o.metaContexts);
    io.write(encodeOption(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData(o.exportName, o.metaContexts)));
    const ids = new Set<number>();
    for await (const r of replies(io, NBD_OPT_SET_META_CONTEXT, o)) {
      if (r.type === NBD_REP_ACK) {
        expectAck(NBD_OPT_SET_META_CONTEXT, r);
        break;
      }
      if (r.type & NBD_REP_FLAG_ERROR) throw optionError(NBD_OPT_SET_META_CONTEXT, r);
      if (r.type !== NBD_REP_META_CONTEXT)
        throw new NbdProtocolError(
          "unexpected-reply",
          `${replyTypeName(r.type)} in answer to NBD_OPT_SET_META_CONTEXT`,
        );
      const { id, name } = decodeMetaContext(r.payload);
      if (!wanted.has(name))
        throw new NbdProtocolError(
          "unexpected-reply",
          `the server selected context ${JSON.stringify(name)}, never asked for`,
        );
      if (contexts.has(name) || ids.has(id))
        throw new NbdProtocolError("bad-value", `context ${JSON.stringify(name)} or id ${id} selected twice`);
      contexts.set(name, id);
      ids.add(id);
    }
    const missing = o.metaContexts.filter((c) => !contexts.has(c));
    if (missing.length > 0)
      throw new NbdOptionError(
        optionName(NBD_OPT_SET_META_CONTEXT),
        "not selected",
        `the export ${JSON.stringify(o.exportName)} has no ${missing.join(", ")}`,
      );
  }

  io.write(encodeOption(NBD_OPT_GO, encodeGoData(o.exportName, [NBD_INFO_BLOCK_SIZE])));
  let exp: { size: number; transmissionFlags: number } | null = null;
  let blockSize: BlockSize | null = null;
  let fallback = false;
  for await (const r of replies(io, NBD_OPT_GO, o)) {
    if (r.type === NBD_REP_ACK) {
      expectAck(NBD_OPT_GO, r);
      if (!exp)
        throw new NbdProtocolError("unexpected-reply", "NBD_OPT_GO succeeded without NBD_INFO_EXPORT");
      break;
    }
    if (r.type === NBD_REP_ERR_UNSUP && contexts.size === 0) {
      fallback = true;
      break;
    }
    if (r.type & NBD_REP_FLAG_ERROR) throw optionError(NBD_OPT_GO, r);
    if (r.type !== NBD_REP_INFO)
      throw new NbdProtocolError("unexpected-reply", `${replyTypeName(r.type)} in answer to NBD_OPT_GO`);
    const info = decodeInfo(r.payload);
    if (info.type === "export") exp = { size: info.size, transmissionFlags: info.transmissionFlags };
    else if (info.type === "block-size")
      blockSize = { minimum: info.minimum, preferred: info.preferred, maximum: info.maximum };
  }
  if (fallback) {
    // An old server: NBD_OPT_EXPORT_NAME cannot report errors (the server just hangs up).
    io.write(encodeOption(NBD_OPT_EXPORT_NAME, Buffer.from(o.exportName, "utf8")));
    exp = decodeExportNameReply(
      await io.reader.read(10 + (noZeroes ? 0 : 124), "the NBD_OPT_EXPORT_NAME reply"),
    );
  }
  if (!exp) throw new NbdProtocolError("unexpected-reply", "no export information");
  if (!(exp.transmissionFlags & NBD_FLAG_HAS_FLAGS))
    throw new NbdProtocolError("bad-value", "transmission flags without NBD_FLAG_HAS_FLAGS");
  return {
    name: o.exportName,
    size: exp.size,
    transmissionFlags: exp.transmissionFlags,
    readOnly: (exp.transmissionFlags & NBD_FLAG_READ_ONLY) !== 0,
    blockSize,
    structuredReplies,
    contexts,
  };
}
