// Files the monitors ship that are read or compiled at run time rather than imported (the
// network monitor's default Suricata rules, its TAP writer's C source). Named from the package
// root, so the same path holds from src/ and from a bundle in dist/ (docs/architecture.md,
// "The build": this file sits two levels below the root, as every output does).
import { join, resolve } from "node:path";

const NETWORK_DIR = resolve(import.meta.dirname, "..", "..", "src", "monitor", "network");

/** nestcloud's default rule set for the network monitor's Suricata. */
export const DEFAULT_NETWORK_RULES = join(NETWORK_DIR, "rules", "nestcloud-default.rules");

/** The TAP writer's source (compiled on first use, monitor/network/tap.ts). */
export const TAPWRITER_SOURCE = join(NETWORK_DIR, "tapwriter.c");
