// Typed errors of the vmi module. Everything this module parses comes from guest memory and is
// therefore hostile: callers must be able to tell "the guest data is bad" (a VmiError with a
// stable `code`) from a bug in our code. Public entry points run inside guard()/guardAsync(), which
// turn any stray exception (RangeError from a DataView, TypeError...) into VmiInternalError, so a
// caller never sees an untyped exception; fuzz tests treat VMI_INTERNAL as a failure.

/** Base class: every error thrown by src/vmi is an instance of this. */
export abstract class VmiError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export type MemoryErrorCode =
  | "MEM_OUT_OF_RANGE" // a requested range lies outside the memory source
  | "MEM_BAD_REQUEST" // a range is malformed (negative, non-integer, too long, too many)
  | "MEM_READ_FAILED" // the memory source failed (its own error is the cause)
  | "MEM_BAD_RESULT" // the memory source broke its contract (wrong count or lengths)
  | "MEM_HOLE"; // guest-physical address not backed by RAM (PCI hole, beyond RAM)

export class MemoryError extends VmiError {
  constructor(
    readonly code: MemoryErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type AddressErrorCode =
  | "ADDR_NOT_IN_REGION" // VA outside the kernel image / direct map being translated
  | "ADDR_NON_CANONICAL"
  | "ADDR_NOT_PRESENT" // page walk hit a non-present entry
  | "ADDR_BAD_TABLE" // page walk pointed at a table outside guest memory
  | "ADDR_BAD_ARGUMENT";

export class AddressError extends VmiError {
  constructor(
    readonly code: AddressErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type BtfErrorCode =
  | "BTF_BAD_MAGIC"
  | "BTF_BAD_VERSION"
  | "BTF_BAD_HEADER"
  | "BTF_BAD_SECTION" // section offsets/lengths out of bounds, misaligned or overlapping
  | "BTF_TRUNCATED" // a type record runs past the type section
  | "BTF_BAD_KIND"
  | "BTF_BAD_TYPE_ID" // a reference to a type id that does not exist
  | "BTF_BAD_STRING" // name offset outside the string table, or string table malformed
  | "BTF_TOO_MANY_TYPES"
  | "BTF_NOT_FOUND" // lookup by name/path found nothing
  | "BTF_NO_SIZE" // sizeOf on a type without a size (func, fwd, void...)
  | "BTF_NOT_COMPOSITE" // member lookup on something that is not a struct/union
  | "BTF_BAD_PATH" // member path syntax
  | "BTF_BAD_LAYOUT" // a non-bitfield member that is not byte aligned, or offsets overflow
  | "BTF_DEPTH_EXCEEDED" // typedef/array chain or anonymous nesting too deep (or cyclic)
  | "BTF_BUDGET_EXCEEDED"; // a search visited too many members (hostile DAG)

export class BtfError extends VmiError {
  constructor(
    readonly code: BtfErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type VmcoreinfoErrorCode =
  | "VMCOREINFO_NOT_FOUND"
  | "VMCOREINFO_TOO_LARGE"
  | "VMCOREINFO_MALFORMED" // a line that is not KEY=VALUE, or bad characters
  | "VMCOREINFO_BAD_VALUE" // a SYMBOL/NUMBER/SIZE/OFFSET value that does not parse
  | "VMCOREINFO_MISSING_KEY";

export class VmcoreinfoError extends VmiError {
  constructor(
    readonly code: VmcoreinfoErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type KallsymsErrorCode =
  | "KALLSYMS_BAD_COUNT" // kallsyms_num_syms zero or above the configured maximum
  | "KALLSYMS_TRUNCATED" // a table ends before the data it must hold
  | "KALLSYMS_BAD_TOKEN" // token index points outside the token table / no terminator
  | "KALLSYMS_BAD_NAME" // zero length, bad characters, bad type letter
  | "KALLSYMS_NAME_TOO_LONG"
  | "KALLSYMS_BAD_ENCODING" // address encoding cannot be used (e.g. no relative base)
  | "KALLSYMS_ANCHOR_MISMATCH" // no encoding puts the anchor symbol at its known address
  | "KALLSYMS_MISSING_SYMBOL";

export class KallsymsError extends VmiError {
  constructor(
    readonly code: KallsymsErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type KernelErrorCode =
  | "KERNEL_NOT_FOUND" // no VMCOREINFO and no fallback found a usable kernel
  | "KERNEL_NOT_READY" // a kernel is there but still booting (system_state before SYSTEM_RUNNING)
  | "KERNEL_INCONSISTENT" // discovered facts contradict each other (forged or corrupt data)
  | "KERNEL_NO_BTF" // no BTF in the image and no cached profile for this build
  | "KERNEL_PROFILE_FIELD"; // a layout the query needs is missing from this kernel's BTF/profile

export class KernelError extends VmiError {
  constructor(
    readonly code: KernelErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type QueryErrorCode =
  | "QUERY_LIST_CYCLE" // a list loops without returning to its head
  | "QUERY_LIST_CORRUPT" // a node's links are inconsistent (next->prev != node, poisoned)
  | "QUERY_TOO_MANY" // more entries than the configured maximum
  | "QUERY_BAD_POINTER" // a pointer that cannot be a kernel address
  | "QUERY_TIMEOUT" // the query's deadline passed
  | "QUERY_BAD_SPEC"; // the caller's request is malformed (bad offsets, too many reads)

export class QueryError extends VmiError {
  constructor(
    readonly code: QueryErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type RemoteErrorCode =
  | "REMOTE_AUTH" // handshake failed: wrong token, bad MAC, or the server is not who it claims
  | "REMOTE_FORBIDDEN" // this client may not read that guest (or the guest is not served)
  | "REMOTE_PROTOCOL" // malformed frame, bad MAC, unexpected message
  | "REMOTE_LIMIT" // a request exceeds a server or client bound (batch, reply size, queue)
  | "REMOTE_TIMEOUT"
  | "REMOTE_CLOSED" // the connection is gone
  | "REMOTE_SERVER"; // the server failed for a reason it does not disclose

export class RemoteError extends VmiError {
  constructor(
    readonly code: RemoteErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A bug or an unexpected exception from a dependency, wrapped so callers only see VmiError. */
export class VmiInternalError extends VmiError {
  readonly code = "VMI_INTERNAL" as const;
}

export type VmiErrorCode =
  | MemoryErrorCode
  | AddressErrorCode
  | BtfErrorCode
  | VmcoreinfoErrorCode
  | KallsymsErrorCode
  | KernelErrorCode
  | QueryErrorCode
  | RemoteErrorCode
  | VmiInternalError["code"];

function wrap(e: unknown): VmiError {
  if (e instanceof VmiError) return e;
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return new VmiInternalError(`internal error: ${msg}`, { cause: e });
}

/** Runs fn, converting any non-VmiError exception into VmiInternalError. */
export function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw wrap(e);
  }
}

/** Async variant of guard(). */
export async function guardAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw wrap(e);
  }
}
