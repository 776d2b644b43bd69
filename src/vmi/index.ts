// Public entry of the vmi module: introspecting a Linux guest from outside with no debug
// symbols. One folder per layer; a layer imports only the layers below it
// (test/architecture.test.ts):
//   memory/     guest-physical memory behind one batched interface (PhysicalMemory): the guest's
//               RAM file (openRamFile), QMP (QmpMemory), a buffer; search, hashing and list walks
//               that a source may run next to the memory;
//   address/    x86-64 page walks, the linear kernel mappings, the kernel address space (KernelSpace);
//   discovery/  what the kernel says about itself: VMCOREINFO, kallsyms, BTF, the symbol index,
//               and the fallback finders (banner, exported symbols, kallsyms by shape);
//   kernel/     the Kernel model and its profile, built by discoverKernel;
//   queries/    listProcesses, listModules;
//   checks/     checkSyscallTable, findHiddenTasks, checkKernelText;
//   remote/     the page server (PageServer) and its client (connectRemoteMemory), which share only
//               the wire protocol; on memory and address only.
// Every parser is hostile-input safe. Every error is a VmiError with a stable code (errors.ts,
// which every layer may import).
//
// Typical use:
//   const ram = openRamFile("/dev/shm/pool/guest.ram");
//   const kernel = await discoverKernel(ram.memory, { profileCache: new ProfileCache(dir) });
//   const ps = await listProcesses(kernel);

export {
  type AddressSpaceSpec,
  KernelSpace,
  type KernelView,
  type KernelViewProvider,
} from "./address/kspace.ts";
export {
  cr3ToRoot,
  isCanonical,
  type PageSize,
  PageWalker,
  type PageWalkerOptions,
  type PagingLevels,
  type TableLevel,
  type Translation,
} from "./address/pagewalk.ts";
export { PageTableCache } from "./address/pt-cache.ts";
export {
  DEFAULT_KERNEL_IMAGE_SIZE,
  DEFAULT_PAGE_OFFSET_BASE_L4,
  DEFAULT_PAGE_OFFSET_BASE_L5,
  DirectMapMemory,
  directMapVaToPa,
  KernelImageMemory,
  kernelImageVaToPa,
  START_KERNEL_MAP,
} from "./address/translate.ts";
export { findHiddenTasks, type HiddenReport, type HiddenTask } from "./checks/hidden.ts";
export { checkSyscallTable, type SyscallFinding, type SyscallReport } from "./checks/syscalls.ts";
export {
  type BaselineStore,
  checkKernelText,
  compareText,
  hashKernelText,
  TEXT_CHUNK,
  TextBaselineStore,
  type TextHash,
  type TextReport,
} from "./checks/text.ts";
export { BTF_MAGIC, BTF_MAX_TYPE, Btf, type BtfParseOptions, parseHeader } from "./discovery/btf.ts";
export {
  fieldLocation,
  MAX_ANON_DEPTH,
  MAX_TYPE_DEPTH,
  MEMBER_BUDGET,
  type MemberLocation,
  memberLocation,
  offsetOf,
  resolveAlias,
  sizeOf,
} from "./discovery/btf-layout.ts";
export type {
  BtfArray,
  BtfComposite,
  BtfDatasec,
  BtfDeclTag,
  BtfEnum,
  BtfEnum64,
  BtfFloat,
  BtfFunc,
  BtfFuncProto,
  BtfFwd,
  BtfHeader,
  BtfInt,
  BtfKindName,
  BtfMember,
  BtfModifier,
  BtfPtr,
  BtfType,
  BtfVar,
  BtfVoid,
  Linkage,
  TypeId,
} from "./discovery/btf-types.ts";
export {
  DEFAULT_LIMITS as KALLSYMS_DEFAULT_LIMITS,
  decodeKallsyms,
  type KallsymsBlobs,
  type KallsymsEncoding,
  type KallsymsLimits,
  type KallsymsLocation,
  type KallsymsOptions,
  KallsymsTable,
  type KernelSymbol,
  kallsymsAnchor,
  kallsymsLocation,
  readKallsyms,
  readKallsymsBlobs,
} from "./discovery/kallsyms.ts";
export { SymbolIndex, type SymbolSource } from "./discovery/symbols.ts";
export {
  type LocateOptions,
  locateVmcoreinfo,
  pagingLevels,
  parseVmcoreinfo,
  requireNumber,
  requireSymbol,
  type ScanOptions,
  scanVmcoreinfo,
  VMCOREINFO_MAX_BYTES,
  type Vmcoreinfo,
  type VmcoreinfoMatch,
  type VmcoreinfoRejection,
} from "./discovery/vmcoreinfo.ts";
export {
  AddressError,
  type AddressErrorCode,
  BtfError,
  type BtfErrorCode,
  KallsymsError,
  type KallsymsErrorCode,
  KernelError,
  type KernelErrorCode,
  MemoryError,
  type MemoryErrorCode,
  QueryError,
  type QueryErrorCode,
  RemoteError,
  type RemoteErrorCode,
  VmcoreinfoError,
  type VmcoreinfoErrorCode,
  VmiError,
  type VmiErrorCode,
  VmiInternalError,
} from "./errors.ts";
export {
  discoverKernel,
  findVmcoreinfo,
  searchVmcoreinfo,
  type VmcoreinfoSearch,
} from "./kernel/discover.ts";
export { type DiscoverOptions, MAX_BTF_BYTES, readBtfBlob } from "./kernel/discover-steps.ts";
export { type DiscoveryPath, Kernel, type KernelFacts, type KernelOptions } from "./kernel/kernel.ts";
export {
  buildProfile,
  type FieldLayout,
  type KernelProfile,
  PROFILE_PATHS,
  ProfileCache,
  profileKey,
} from "./kernel/profile.ts";
export {
  FileMemory,
  openRamFile,
  type RamFile,
  type RamFileOptions,
  type ReadStats,
} from "./memory/file-memory.ts";
export { hashChunks, hashChunksLocal, type MemoryHasher } from "./memory/hash.ts";
export {
  type DerefRead,
  type FieldRead,
  LIMITS as LIST_WALK_LIMITS,
  type ListNode,
  type ListWalker,
  type ListWalkSpec,
  type WalkOptions,
  walkListLocal,
} from "./memory/listwalk.ts";
export {
  BufferPhysicalMemory,
  MAX_BATCH,
  MAX_READ_LEN,
  PHYS_ADDR_LIMIT,
  type PhysAddr,
  type PhysicalMemory,
  type PhysRange,
  readPhys,
  readPhysLenient,
  readPhysOne,
  readVirt,
  readVirtOne,
  type VirtAddr,
  type VirtRange,
  type VirtualMemory,
} from "./memory/memory.ts";
export { type QmpExecutor, QmpMemory, type QmpMemoryOptions } from "./memory/qmp-memory.ts";
export {
  gpaToRamOffset,
  type MachineType,
  physLimit,
  RamFileMemory,
  type RamLayout,
  type RamLayoutOptions,
  type RamLocation,
  ramLayout,
} from "./memory/ram-layout.ts";
export { type FindOptions, findBytes, type MemorySearch, scanBytes } from "./memory/search.ts";
export { listModules, type ModuleInfo } from "./queries/modules.ts";
export { listProcesses, type ProcessInfo, type QueryOptions, stateLetter } from "./queries/processes.ts";
export { walkXarray, type XaEntry } from "./queries/xarray.ts";
export {
  type ClientStats,
  connectRemoteMemory,
  PageClient,
  REMOTE_MODES,
  type RemoteConnectOptions,
  RemoteMemory,
  type RemoteMemoryOptions,
  type RemoteMode,
  RemoteServerMemory,
} from "./remote/client.ts";
export { PageCache } from "./remote/page-cache.ts";
export {
  DEFAULT_SERVER_LIMITS,
  PageServer,
  type PageServerClient,
  type PageServerLimits,
  type PageServerOptions,
  type PageServerStats,
} from "./remote/server.ts";
