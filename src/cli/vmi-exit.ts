/**
 * Exit codes of `nestcloud vmi` commands, apart from both the cheap registration
 * (vmi-commands.ts) and the introspection (vmi.ts), which both need them.
 */
/** Exit codes of `nestcloud vmi` commands. */
export const VMI_EXIT = {
  ok: 0,
  /** `vmi check` found something (syscall hook, hidden process, changed kernel text). */
  findings: 1,
  /** Bad arguments, a source that cannot be opened or reached, authentication refused. */
  usage: 2,
  /** No Linux kernel found in the guest's memory (not a Linux guest, or not loaded yet). */
  notLinux: 3,
  /** A Linux kernel is there but still booting: try again. */
  notReady: 4,
  /** Introspection failed: inconsistent or corrupt guest data, or the source broke off. */
  failed: 5,
} as const;

export const VMI_EXIT_HELP = `
Exit codes:
  0  done (check: nothing found)
  1  check: something found (syscall hook, hidden process, changed kernel text)
  2  usage error: bad arguments, source cannot be opened or reached, access refused
  3  no Linux kernel found in the guest's memory (not a Linux guest, or not loaded yet)
  4  the guest's kernel is still booting: try again
  5  introspection failed (inconsistent or corrupt guest data, source broke off)
`;
