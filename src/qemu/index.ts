// Public entry of the qemu module: drive QEMU guests (process, QMP, serial console), build
// guest images, migrate guests between QEMU processes, export their disks to monitors (NBD
// exports, dirty bitmaps, fleecing) and mirror their NICs' frames to monitors (filter-mirror
// added at run time). Other modules import only this.

export {
  addAuthzList,
  addDirtyBitmap,
  addReadOnlyExport,
  addTlsCredsX509,
  type BitmapRotation,
  type BlockExportInfo,
  type BlockQmp,
  type DirtyBitmapInfo,
  type DiskView,
  type DiskViewOptions,
  type Fleece,
  type FleeceOptions,
  listDirtyBitmaps,
  listExports,
  type NbdServerAddress,
  nodeSize,
  openDiskView,
  type ReadOnlyExport,
  removeDirtyBitmap,
  removeExport,
  removeObject,
  rotateDirtyBitmap,
  startFleece,
  startNbdServer,
  stopFleece,
  stopNbdServer,
} from "./block-export.ts";
export {
  ConsoleClosedError,
  ConsoleTimeoutError,
  type LineMatch,
  type RunResult,
  SerialConsole,
} from "./console.ts";
export { type CprPaths, cprIncomingArgs, cprMigrateArgs, cprPaths, unixPath } from "./cpr.ts";
export {
  buildDeviceArgs,
  DEVICE_ID_RE,
  type DeviceSockets,
  deviceProblem,
  deviceSockets,
  diskNodeName,
  MAX_EXTRA_SERIALS,
  type QemuDevice,
} from "./devices.ts";
export { CommandError } from "./exec.ts";
export {
  type BuildGuestImageOptions,
  buildGuestImage,
  currentKernelPackage,
  DEFAULT_GUEST_MODULES,
  defaultImageCacheDir,
  GUEST_BASE_APPEND,
  type GuestImage,
  ImageBuildError,
} from "./image.ts";
export {
  type DestinationTarget,
  type HandoverResult,
  instantHandover,
  listenIncoming,
  localDestination,
  MigrationCancelledError,
  MigrationCancelRefusedError,
  type MigrationDestination,
  MigrationError,
  MigrationFailedError,
  type MigrationFigures,
  MigrationJob,
  type MigrationOptions,
  type MigrationResult,
  MigrationStalledError,
  MigrationTimeoutError,
  migrationFigures,
  type OutgoingOptions,
  type PrecopyOptions,
  precopy,
  repairingDestination,
  startDestination,
  startMigration,
  startPrecopy,
  switchoverTogether,
} from "./migrate.ts";
export {
  addNetMirror,
  listNetMirrors,
  MIRROR_ID_RE,
  type MirrorEndpoint,
  type MirrorQmp,
  mirrorChardevId,
  type NetMirror,
  removeNetMirror,
} from "./net-mirror.ts";
export { priorityLevels, raiseControlPriority, setLevel, setProcessNice } from "./priority.ts";
export {
  type AdoptOptions,
  buildQemuArgs,
  DEFAULT_QEMU_BINARY,
  type ExitInfo,
  keepQemusOnExit,
  newInstanceId,
  poolFilePath,
  QemuAdoptError,
  QemuProcess,
  QemuSpecError,
  QemuStartError,
  type RuntimePaths,
  runtimePaths,
  type StartOptions,
  type StopOptions,
} from "./process.ts";
export {
  type MigrationProgress,
  type MigrationProgressReport,
  ProgressTracker,
  progressReport,
} from "./progress.ts";
export {
  QmpClient,
  QmpClosedError,
  type QmpConnectOptions,
  QmpError,
  QmpProtocolError,
  QmpTimeoutError,
} from "./qmp.ts";
export type * from "./qmp-types.ts";
export {
  compareRamDigests,
  DEFAULT_DIGEST_CHUNK_BYTES,
  digestRamFile,
  type RamComparison,
  type RamDigest,
} from "./ram-digest.ts";
export { type RamRepair, RamRepairError, repairRamFile } from "./ram-repair.ts";
export type { DiskSpec, GuestBootImage, NetSpec, QemuLaunchSpec, QemuSpec } from "./spec.ts";
export { type InstanceState, isOurQemu, type ReapOptions, type ReapReport, reapOrphans } from "./state.ts";
export {
  hasCprTransfer,
  type LiveUpdateMechanism,
  parseQemuVersion,
  type QemuVersion,
  qemuVersion,
} from "./version.ts";
