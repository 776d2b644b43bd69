// Which channel a security VM uses to reach its target, and what each monitor's transport is
// on that channel (issue 12). Pure: placement in, a decision out; the I/O lives with each
// monitor (vmi/remote, disk/nbd, network/receiver) and the credentials in tls.ts.
//
//   same host VM              -> local:  the target's RAM file, unix sockets; no network
//   same physical server      -> direct: the same, across host VMs through the server's shared
//                                memory pool and unix sockets (they cross network namespaces)
//   another physical server   -> remote: TCP, mutually authenticated and encrypted with TLS
import type { Channel, MonitorKind } from "../alert.ts";

/** Where a guest (or a security VM) runs. `server` undefined: unknown, so never assumed shared. */
export interface Placement {
  readonly server: string | undefined;
  readonly hostVm: string;
}

export function chooseChannel(securityVm: Placement, target: Placement): Channel {
  if (securityVm.server === undefined || target.server === undefined) return "remote";
  if (securityVm.server !== target.server) return "remote";
  return securityVm.hostVm === target.hostVm ? "local" : "direct";
}

/** How one monitor reaches its target. Remote transports always carry TLS: no plain variant. */
export type MonitorTransport =
  | { readonly kind: "ram-file"; readonly monitor: "memory" }
  | { readonly kind: "page-server-tls"; readonly monitor: "memory" }
  | { readonly kind: "nbd-unix"; readonly monitor: "disk" }
  | { readonly kind: "nbd-tls"; readonly monitor: "disk" }
  | { readonly kind: "mirror-unix"; readonly monitor: "network" }
  | { readonly kind: "mirror-tls"; readonly monitor: "network" };

export type TransportKind = MonitorTransport["kind"];

const TRANSPORTS: Record<Channel, Record<MonitorKind, MonitorTransport>> = {
  local: {
    memory: { kind: "ram-file", monitor: "memory" },
    disk: { kind: "nbd-unix", monitor: "disk" },
    network: { kind: "mirror-unix", monitor: "network" },
  },
  direct: {
    memory: { kind: "ram-file", monitor: "memory" },
    disk: { kind: "nbd-unix", monitor: "disk" },
    network: { kind: "mirror-unix", monitor: "network" },
  },
  remote: {
    memory: { kind: "page-server-tls", monitor: "memory" },
    disk: { kind: "nbd-tls", monitor: "disk" },
    network: { kind: "mirror-tls", monitor: "network" },
  },
};

export function transportFor(channel: Channel, monitor: MonitorKind): MonitorTransport {
  return TRANSPORTS[channel][monitor];
}

/** Whether a transport crosses the network (and so needs credentials). */
export function usesNetwork(t: MonitorTransport): boolean {
  return t.kind.endsWith("-tls");
}

/** The plan for one security VM and one target: its channel and each monitor's transport. */
export interface ChannelPlan {
  readonly channel: Channel;
  readonly transports: Readonly<Record<MonitorKind, MonitorTransport>>;
}

export function planChannel(securityVm: Placement, target: Placement): ChannelPlan {
  const channel = chooseChannel(securityVm, target);
  return { channel, transports: TRANSPORTS[channel] };
}
