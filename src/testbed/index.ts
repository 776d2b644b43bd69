// Public entry of the testbed module: several "physical servers" on one machine (network
// namespaces on a private bridge, tmpfs memory pools, cgroup slices for host VMs) and the
// agent processes running in them. Other modules import only this.
export { type CgroupPlan, planCgroups, sliceLimits } from "./cgroups.ts";
export { type IfaceCounters, IpError, linkCounters } from "./ip.ts";
export {
  bridgeNetnsName,
  hostLinkName,
  netnsName,
  newTestbedId,
  overlaps,
  pickSubnet,
  poolDir,
  poolRoot,
  SERVER_IFACE,
  serverAddress,
} from "./names.ts";
export { serverCounters } from "./network.ts";
export {
  isAlive,
  processStartTime,
  readSupervisedRecord,
  type SupervisedRecord,
  stopProcess,
} from "./processes.ts";
export {
  checkTestbedSpec,
  GUEST_NAME_RE,
  type GuestSpec,
  type HostVmSpec,
  loadTestbedSpec,
  NODE_NAME_RE,
  parseSubnet24,
  parseTestbedSpec,
  type ServerSpec,
  TESTBED_ID_RE,
  type TestbedSpec,
  TestbedSpecError,
  type WorkloadSpec,
} from "./spec.ts";
export {
  defaultTestbedRoot,
  type HostVmRecord,
  hostVmKey,
  listTestbeds,
  type ProcessRecord,
  readTestbedState,
  type ServerRecord,
  type TestbedState,
  writeTestbedState,
} from "./state.ts";
export {
  type AgentLaunch,
  type AgentLauncher,
  currentHostVmAgent,
  cutLink,
  type DownOptions,
  type DownReport,
  down,
  type HostVmAgentContext,
  type InfraStatus,
  infraStatus,
  moveHostVmProcesses,
  restartHostVmAgent,
  type ServerAgentContext,
  startLandingAgent,
  stateDirOf,
  stopLandingAgent,
  TestbedError,
  testbedExists,
  type UpOptions,
  up,
} from "./testbed.ts";
