/**
 * The testbed network. With namespaces: one namespace per physical server, each with an
 * eth0 veth into a bridge that lives in its own namespace (so the root namespace's firewall
 * and forwarding never see server-to-server traffic), plus one veth from the root namespace
 * into the bridge carrying the .1 address, which is how the CLI and tests reach the agents.
 * Addresses come from one private /24 and exist on that bridge only; no namespace has a
 * default route, so nothing is routed anywhere else.
 *
 * Without CAP_NET_ADMIN: every server gets a loopback address 127.0.k.(10+i) in the root
 * namespace instead, with a warning (no isolation, no link cuts, no per-server counters).
 */
import { ip, ipDelete, linkCounters, netnsExists, rootRoutes } from "./ip.ts";
import {
  bridgeNetnsName,
  bridgePortName,
  hostLinkName,
  loopbackAddress,
  netnsName,
  pickSubnet,
  SERVER_IFACE,
  type Subnet,
  serverAddress,
  subnetOf,
} from "./names.ts";
import { parseSubnet24 } from "./spec.ts";
import type { NetworkRecord, ServerRecord, TestbedState } from "./state.ts";

export type Persist = () => void;

/** Can we create namespaces here? Tries one (and removes it). */
export async function probeNamespaces(id: string): Promise<string | null> {
  const probe = `nc-${id}-probe`;
  try {
    await ip(["netns", "add", probe]);
    await ipDelete(["netns", "del", probe]);
    return null;
  } catch (e) {
    await ipDelete(["netns", "del", probe]).catch(() => {});
    return (e as Error).message;
  }
}

/**
 * Creates the namespaces and links for every server of `state`, recording each name in the
 * state (and persisting) BEFORE creating it.
 */
export async function createNetwork(
  state: TestbedState,
  subnetWanted: string | undefined,
  persist: Persist,
): Promise<void> {
  const net = state.network;
  if (net.mode === "loopback") {
    state.servers.forEach((s, i) => {
      s.address = loopbackAddress(state.id, i);
      s.netns = null;
      s.iface = null;
    });
    persist();
    return;
  }
  const prefix = subnetWanted && subnetWanted !== "auto" ? parseSubnet24(subnetWanted) : null;
  const subnet: Subnet = prefix ? subnetOf(prefix) : pickSubnet(state.id, await rootRoutes());
  net.subnet = subnet.cidr;
  net.hostAddress = subnet.hostAddress;

  const br = bridgeNetnsName(state.id);
  net.bridgeNetns = br;
  net.namespaces.push(br);
  persist();
  await ip(["netns", "add", br]);
  await ip(["-n", br, "link", "add", "br0", "type", "bridge"]);
  await ip(["-n", br, "link", "set", "br0", "up"]);

  // Root namespace <-> bridge: the only link (and the only address) in the root namespace.
  const host = hostLinkName(state.id);
  net.rootLinks.push(host);
  persist();
  await ip(["link", "add", host, "type", "veth", "peer", "name", "h0", "netns", br]);
  await ip(["-n", br, "link", "set", "h0", "master", "br0", "up"]);
  await ip(["addr", "add", `${subnet.hostAddress}/24`, "dev", host]);
  await ip(["link", "set", host, "up"]);

  for (const [i, s] of state.servers.entries()) {
    const ns = netnsName(state.id, s.name);
    s.netns = ns;
    s.iface = SERVER_IFACE;
    s.address = serverAddress(subnet, i);
    net.namespaces.push(ns);
    persist();
    await ip(["netns", "add", ns]);
    const port = bridgePortName(i);
    await ip(["-n", br, "link", "add", port, "type", "veth", "peer", "name", SERVER_IFACE, "netns", ns]);
    await ip(["-n", br, "link", "set", port, "master", "br0", "up"]);
    await ip(["-n", ns, "addr", "add", `${s.address}/24`, "dev", SERVER_IFACE]);
    await ip(["-n", ns, "link", "set", SERVER_IFACE, "up"]);
    await ip(["-n", ns, "link", "set", "lo", "up"]);
  }
  persist();
}

/** Removes what the record names: root links first (namespace deletion is asynchronous), then namespaces. */
export async function destroyNetwork(net: NetworkRecord): Promise<string[]> {
  const problems: string[] = [];
  for (const l of net.rootLinks) {
    await ipDelete(["link", "del", l]).catch((e) => problems.push((e as Error).message));
  }
  for (const ns of [...net.namespaces].reverse()) {
    await ipDelete(["netns", "del", ns]).catch((e) => problems.push((e as Error).message));
  }
  return problems;
}

/** Cuts or restores a server's link (inside its namespace): for fault tests. */
export async function setServerLink(server: ServerRecord, up: boolean): Promise<void> {
  if (!server.netns || !server.iface) {
    throw new Error(`server ${server.name} has no namespace (loopback mode): its link cannot be cut`);
  }
  await ip(["-n", server.netns, "link", "set", server.iface, up ? "up" : "down"]);
}

/** Byte counters of a server's interface, or null in loopback mode (lo is shared by all). */
export async function serverCounters(server: ServerRecord) {
  if (!server.netns || !server.iface) return null;
  return linkCounters(server.iface, server.netns);
}

export async function namespacesPresent(net: NetworkRecord): Promise<Record<string, boolean>> {
  const out: Record<string, boolean> = {};
  for (const ns of net.namespaces) out[ns] = await netnsExists(ns).catch(() => false);
  return out;
}
