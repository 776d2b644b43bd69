// The memory monitor: introspection run continuously against one guest, alerts on changes.
export {
  MemoryMonitor,
  type MemoryMonitorOptions,
  type MemoryMonitorStats,
  type MemoryOpener,
  type MemoryRoundReport,
  type MemorySource,
} from "./monitor.ts";
export {
  compareSnapshots,
  type Finding,
  type HiddenEntry,
  MAX_ITEM_FINDINGS,
  type MemorySnapshot,
  type ProcEntry,
  type SyscallEntry,
} from "./snapshot.ts";
