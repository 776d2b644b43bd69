/**
 * The virtual AMT's buttons, decided apart from the page: which power and boot actions apply
 * to a guest in a given power state and boot mode, and what each asks the user to confirm.
 */
import { POWER_ACTIONS } from "../../src/controller/api/schemas/choices.ts";

export type PowerAction = (typeof POWER_ACTIONS)[number];
export type PowerState = "on" | "off" | "panicked";
export type BootMode = "normal" | "rescue";

export { POWER_ACTIONS };

/**
 * Whether an action makes sense now. A panicked guest is held stopped by QEMU: it can be
 * powered on (a reset), reset or powered off, but it cannot answer an ACPI shutdown. Rescue
 * and normal switch the boot mode, from any power state, and only to the other mode.
 */
export function applies(action: PowerAction, power: PowerState, boot: BootMode): boolean {
  switch (action) {
    case "on":
      return power !== "on";
    case "off":
      return power !== "off";
    case "shutdown":
      return power === "on";
    case "reset":
      return power !== "off";
    case "rescue":
      return boot === "normal";
    case "normal":
      return boot === "rescue";
  }
}

export const ACTION_LABELS: Readonly<Record<PowerAction, string>> = {
  on: "Power on",
  off: "Power off",
  shutdown: "Shut down",
  reset: "Reset",
  rescue: "Boot rescue",
  normal: "Boot normal",
};

/** The question a confirmation asks before the action is sent. */
export function confirmText(action: PowerAction, guest: string): string {
  switch (action) {
    case "on":
      return `Power ${guest} on?`;
    case "off":
      return `Power ${guest} off hard? Its OS gets no chance to shut down.`;
    case "shutdown":
      return `Ask ${guest}'s OS to shut down (ACPI power button)?`;
    case "reset":
      return `Reset ${guest}? It restarts at once, like a reset button.`;
    case "rescue":
      return `Restart ${guest} into its rescue command line?`;
    case "normal":
      return `Restart ${guest} with its normal command line?`;
  }
}

/** How long a graceful shutdown waits before it is reported ignored (or forced): ms. */
export const SHUTDOWN_WAIT_MS = 30_000;

/** The body of POST /api/vms/:id/power for an action, with the shutdown's force fallback. */
export function powerBody(
  action: PowerAction,
  opts: { force?: boolean; waitMs?: number } = {},
): { action: PowerAction; force?: boolean; waitMs?: number } {
  if (action !== "shutdown") return { action };
  return { action, waitMs: opts.waitMs ?? SHUTDOWN_WAIT_MS, ...(opts.force ? { force: true } : {}) };
}

/** Events per page of the guest's event list. */
export const EVENTS_PAGE = 20;
