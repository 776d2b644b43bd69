// Public entry of the vmi module: pure parsers for introspecting a Linux guest from outside,
// over a batched memory-source interface. No file or network I/O happens in this module; callers
// provide a PhysicalMemory (RAM file, agent, QMP) and get typed results or VmiErrors.
//
// Typical chain (see docs in each file):
//   locateVmcoreinfo(phys) -> Vmcoreinfo (phys_base, init_top_pgt, kallsyms_* addresses, _stext)
//   new KernelImageMemory(phys, physBase) -> readKallsyms(image, kallsymsLocation(info),
//     { anchor: kallsymsAnchor(info) }) -> __start_BTF/__stop_BTF -> Btf.parse(bytes)
//   new PageWalker(phys, { root: kernelImageVaToPa(init_top_pgt, physBase), levels })
//   fieldLocation(btf, "task_struct.tasks.next") ...

export { BTF_MAGIC, BTF_MAX_TYPE, Btf, type BtfParseOptions, parseHeader } from "./btf.ts";
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
} from "./btf-layout.ts";
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
} from "./btf-types.ts";
export {
  AddressError,
  type AddressErrorCode,
  BtfError,
  type BtfErrorCode,
  KallsymsError,
  type KallsymsErrorCode,
  MemoryError,
  type MemoryErrorCode,
  VmcoreinfoError,
  type VmcoreinfoErrorCode,
  VmiError,
  type VmiErrorCode,
  VmiInternalError,
} from "./errors.ts";
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
} from "./kallsyms.ts";
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
} from "./memory.ts";
export {
  cr3ToRoot,
  isCanonical,
  type PageSize,
  PageWalker,
  type PageWalkerOptions,
  type PagingLevels,
  type TableLevel,
  type Translation,
} from "./pagewalk.ts";
export { PageTableCache } from "./pt-cache.ts";
export {
  gpaToRamOffset,
  type MachineType,
  physLimit,
  RamFileMemory,
  type RamLayout,
  type RamLayoutOptions,
  type RamLocation,
  ramLayout,
} from "./ram-layout.ts";
export {
  DEFAULT_KERNEL_IMAGE_SIZE,
  DEFAULT_PAGE_OFFSET_BASE_L4,
  DEFAULT_PAGE_OFFSET_BASE_L5,
  DirectMapMemory,
  directMapVaToPa,
  KernelImageMemory,
  kernelImageVaToPa,
  START_KERNEL_MAP,
} from "./translate.ts";
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
} from "./vmcoreinfo.ts";
