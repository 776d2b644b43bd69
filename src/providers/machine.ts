/**
 * MIPS of one core of the machines nestcloud runs its own host VMs on (the testbed): the
 * planner's unit. 2660 is the HP ML110 G5 of the CloudSim experiments (whose power table the
 * servers use), which keeps the testbed's numbers comparable with the simulator's.
 */
export const MIPS_PER_CORE = 2660;
