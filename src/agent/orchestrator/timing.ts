/**
 * Every time bound of a migration run, in one place, with why it has its value. Three of
 * them can be set per orchestrator (OrchestratorOptions: leaseMs, noProgressTimeoutMs,
 * agentRecoveryMs); these are their defaults. The rest are fixed.
 */
export const MIGRATION_TIMING = {
  /**
   * Lease of an unfinished incoming at the destination agent: without a renewal for this
   * long its agent kills it. 15 s: long enough that a loaded machine (TCG guests, two
   * cores) never misses 15 renewals in a row by accident; short enough that a destination
   * behind a cut link or orphaned by a dead orchestrator is gone well before a human looks.
   */
  leaseMs: 15_000,
  /** The orchestrator renews the lease this often: 1 s, fifteen chances per lease. */
  leaseRenewEveryMs: 1000,
  /** Bound of one renewal call (it also reads the incoming's state). */
  leaseRenewCallMs: 2000,
  /**
   * Renewals failed in a row before the orchestrator cancels the source (before the switch
   * only): 5, i.e. the destination agent unreachable for about 5 s. Its supervisor restarts
   * a dead agent within a few seconds, and the adopted incoming answers again before that.
   */
  destinationDownLimit: 5,
  /**
   * Pre-copy: no byte moved for this long means a broken link (TCP would retry for
   * minutes). 10 s: a loaded source QEMU may not send for a few seconds between passes;
   * a cut link is then detected well within one lease.
   */
  noProgressTimeoutMs: 10_000,
  /**
   * How long an agent may stay unreachable mid-migration before the orchestrator gives up
   * on it ("unresolved"): 60 s covers a supervisor's back-off after a few crashes plus the
   * new agent adopting its QEMUs (reconnecting QMP under load), with room to spare.
   */
  agentRecoveryMs: 60_000,
  /**
   * The source agent settles a completed migration nobody confirmed after this many
   * leases: 2, so that the destination's lease (renewed by nobody then) has surely expired
   * or the orchestrator has surely given up before the source decides.
   */
  selfResolveAfterLeases: 2,
  /** An instant handover is over in milliseconds: the start request waits up to 30 s for it. */
  instantStartWaitMs: 30_000,
  /** Long-poll of the source's phase while following a migration. */
  watchPollMs: 1000,
  /** Errors in a row while following a migration before it counts as lost ("unresolved"). */
  watchErrorLimit: 20,
  /** Pause after such an error before reading the source again. */
  watchErrorPauseMs: 500,
  /** Bound of the destination's finish: its QEMU has loaded everything, starting it is quick. */
  finishTimeoutMs: 30_000,
  /**
   * Post-copy: bound of the destination taking the source's last serial bytes while the
   * source waits before the switch (guest paused). 5 s: the destination's own fetch gives
   * up after 3 s; a move is never failed for a console's log.
   */
  logContinueCallMs: 5000,
  /** Bound of an abort of the destination (behind a cut link it would wait for TCP; the lease covers that). */
  abortCallMs: 5000,
  /** Bound of a read of the destination while deciding a finish of unknown fate. */
  probeCallMs: 2000,
  /** Between reads of an agent that is down (waiting for its successor). */
  recoveryPollMs: 500,
  /** Between retries of aborting a destination whose agent was down. */
  abortRetryEveryMs: 1000,
  /** Confirm of the source: answered failures retried this often, backing off 200 ms more each time. */
  confirmRetries: 5,
  confirmBackoffMs: 200,
  /** Confirm of the source while its agent is down: retried this often (until agentRecoveryMs). */
  confirmUnreachableRetryMs: 500,
  /**
   * Undoing the accounting while the server agent is out of reach (a cut link): retried in
   * the background every 2 s, 30 times (a minute), instead of leaving a reservation no guest
   * uses; the server agent's reconciliation removes it later anyway.
   */
  accountingRetryEveryMs: 2000,
  accountingRetries: 30,
} as const;
