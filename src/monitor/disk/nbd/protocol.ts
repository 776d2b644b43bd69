// NBD protocol constants (NetworkBlockDevice/nbd doc/proto.md): the fixed newstyle handshake,
// option haggling, requests, simple replies and structured reply chunks. Values only; the
// encoding and decoding is in codec.ts.

/** "NBDMAGIC": the first 8 bytes a server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": follows NBDMAGIC in newstyle negotiation; starts every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Follows NBDMAGIC in the (unsupported) oldstyle negotiation. */
export const NBD_CLISERV_MAGIC = 0x00420281861253n;
/** Starts every option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
/** The experimental extended headers reply (never negotiated here: seeing it is an error). */
export const NBD_EXTENDED_REPLY_MAGIC = 0x6e8a278c;

// Handshake flags (server) and client flags.
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags.
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// Option reply types; errors have bit 31 set.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x8000_0000;
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2;
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3;
export const NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR + 4;
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5;
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6;
export const NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR + 7;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR + 8;
export const NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR + 9;

// Information types of NBD_REP_INFO (NBD_OPT_INFO / NBD_OPT_GO).
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// Commands and command flags.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_BLOCK_STATUS = 7;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;

// Structured reply flags and chunk types; error chunk types have bit 15 set.
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_FLAG_ERROR = 1 << 15;
export const NBD_REPLY_TYPE_ERROR = NBD_REPLY_TYPE_FLAG_ERROR + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = NBD_REPLY_TYPE_FLAG_ERROR + 2;

// Metadata contexts: base:allocation flags; QEMU's qemu:dirty-bitmap:<name> sets bit 0 on
// dirty extents.
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
export const NBD_STATE_DIRTY = 1 << 0;
export const BASE_ALLOCATION = "base:allocation";
export const dirtyBitmapContext = (bitmap: string) => `qemu:dirty-bitmap:${bitmap}`;

/** Error values of replies (the spec's restricted errno set). */
export const NBD_ERRORS: Readonly<Record<number, string>> = {
  1: "EPERM",
  5: "EIO",
  12: "ENOMEM",
  22: "EINVAL",
  28: "ENOSPC",
  75: "EOVERFLOW",
  95: "ENOTSUP",
  108: "ESHUTDOWN",
};
export const NBD_ESHUTDOWN = 108;

const OPTION_NAMES: Readonly<Record<number, string>> = {
  [NBD_OPT_EXPORT_NAME]: "NBD_OPT_EXPORT_NAME",
  [NBD_OPT_ABORT]: "NBD_OPT_ABORT",
  [NBD_OPT_LIST]: "NBD_OPT_LIST",
  [NBD_OPT_STARTTLS]: "NBD_OPT_STARTTLS",
  [NBD_OPT_INFO]: "NBD_OPT_INFO",
  [NBD_OPT_GO]: "NBD_OPT_GO",
  [NBD_OPT_STRUCTURED_REPLY]: "NBD_OPT_STRUCTURED_REPLY",
  [NBD_OPT_LIST_META_CONTEXT]: "NBD_OPT_LIST_META_CONTEXT",
  [NBD_OPT_SET_META_CONTEXT]: "NBD_OPT_SET_META_CONTEXT",
};

const REPLY_NAMES: Readonly<Record<number, string>> = {
  [NBD_REP_ACK]: "NBD_REP_ACK",
  [NBD_REP_SERVER]: "NBD_REP_SERVER",
  [NBD_REP_INFO]: "NBD_REP_INFO",
  [NBD_REP_META_CONTEXT]: "NBD_REP_META_CONTEXT",
  [NBD_REP_ERR_UNSUP]: "NBD_REP_ERR_UNSUP",
  [NBD_REP_ERR_POLICY]: "NBD_REP_ERR_POLICY",
  [NBD_REP_ERR_INVALID]: "NBD_REP_ERR_INVALID",
  [NBD_REP_ERR_PLATFORM]: "NBD_REP_ERR_PLATFORM",
  [NBD_REP_ERR_TLS_REQD]: "NBD_REP_ERR_TLS_REQD",
  [NBD_REP_ERR_UNKNOWN]: "NBD_REP_ERR_UNKNOWN",
  [NBD_REP_ERR_SHUTDOWN]: "NBD_REP_ERR_SHUTDOWN",
  [NBD_REP_ERR_BLOCK_SIZE_REQD]: "NBD_REP_ERR_BLOCK_SIZE_REQD",
  [NBD_REP_ERR_TOO_BIG]: "NBD_REP_ERR_TOO_BIG",
};

const CHUNK_NAMES: Readonly<Record<number, string>> = {
  [NBD_REPLY_TYPE_NONE]: "NBD_REPLY_TYPE_NONE",
  [NBD_REPLY_TYPE_OFFSET_DATA]: "NBD_REPLY_TYPE_OFFSET_DATA",
  [NBD_REPLY_TYPE_OFFSET_HOLE]: "NBD_REPLY_TYPE_OFFSET_HOLE",
  [NBD_REPLY_TYPE_BLOCK_STATUS]: "NBD_REPLY_TYPE_BLOCK_STATUS",
  [NBD_REPLY_TYPE_ERROR]: "NBD_REPLY_TYPE_ERROR",
  [NBD_REPLY_TYPE_ERROR_OFFSET]: "NBD_REPLY_TYPE_ERROR_OFFSET",
};

const hex = (n: number) => `0x${n.toString(16)}`;
export const optionName = (o: number) => OPTION_NAMES[o] ?? `option ${o}`;
export const replyTypeName = (t: number) => REPLY_NAMES[t] ?? `reply type ${hex(t)}`;
export const chunkTypeName = (t: number) => CHUNK_NAMES[t] ?? `chunk type ${hex(t)}`;
export const errnoName = (e: number) => NBD_ERRORS[e] ?? `error ${e}`;
