// The network monitor: a guest's frames mirrored by its QEMU, inspected by Suricata live on a
// TAP device in the monitor's own namespace, alerts from its EVE output.
export {
  type EveRecord,
  EveTail,
  eveAlertToAlert,
  MAX_EVE_LINE,
  parseEveLine,
  type SuricataAlert,
  severityOfPriority,
} from "./eve.ts";
export {
  encodeMirrorFrame,
  MIRROR_MAX_FRAME,
  MIRROR_MIN_FRAME,
  MIRROR_SKIP_MAX,
  MirrorFrameParser,
  MirrorStreamError,
} from "./framing.ts";
export {
  NETWORK_MONITOR_ID_RE,
  NetworkMonitor,
  type NetworkMonitorOptions,
  type NetworkMonitorStats,
} from "./monitor.ts";
export { createNetns, deleteNetns, listNetns } from "./netns.ts";
export {
  DEFAULT_FRAME_QUEUE_LIMITS,
  FrameQueue,
  type FrameQueueCounts,
  type FrameQueueLimits,
} from "./queue.ts";
export {
  type MirrorAddress,
  MirrorReceiver,
  type MirrorTlsOptions,
  type ReceiverCounts,
  type ReceiverEvent,
} from "./receiver.ts";
export { type RuleLoad, SuricataProcess, suricataConfig } from "./suricata.ts";
export { TapWriter, tapWriterBinary } from "./tap.ts";
