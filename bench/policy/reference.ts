/**
 * Published and measured figures the simulator is checked against (day 20110303, 1,052 VMs,
 * 800 hosts). Not trace data: summary numbers only.
 */
export interface ReferenceFigures {
  readonly energyKWh: number;
  readonly migrations: number;
  readonly slatah: number;
  readonly pdm: number;
}

/** CloudSim 3.0.3 as measured for the project (../shared/notes/consolidation.md). */
export const CLOUDSIM_NOTES: Readonly<Record<string, ReferenceFigures>> = {
  dvfs: { energyKWh: 764.96, migrations: 0, slatah: 0, pdm: 0 },
  "thr-mmt-1.0": { energyKWh: 168.71, migrations: 47987, slatah: 0.1568, pdm: 0.0019 },
  "thr-mmt-0.8": { energyKWh: 198.08, migrations: 27728, slatah: 0.05, pdm: 0.0007 },
  "iqr-mmt-1.5": { energyKWh: 193.63, migrations: 27592, slatah: 0.0502, pdm: 0.0007 },
  "mad-mmt-2.5": { energyKWh: 189.79, migrations: 27781, slatah: 0.0509, pdm: 0.0007 },
  "lr-mmt-1.2": { energyKWh: 167.83, migrations: 27649, slatah: 0.0572, pdm: 0.0008 },
};

/**
 * CloudSim 3.0.3 rebuilt from its source (JDK 17, commons-math3 3.6.1) on this machine kind,
 * with the PlanetLab files taken in name order — the order nestcloud uses. With the
 * filesystem's unsorted order the rebuild reproduces the notes' lr-mmt-1.2 figures exactly
 * (167.83 kWh, 27,649 migrations, 5.72 %).
 */
export const CLOUDSIM_REBUILT_SORTED: Readonly<Record<string, ReferenceFigures>> = {
  dvfs: { energyKWh: 802.75, migrations: 0, slatah: 0, pdm: 0 },
  "thr-mmt-0.8": { energyKWh: 192.62, migrations: 26711, slatah: 0.049133, pdm: 0.000646 },
  "mad-mmt-2.5": { energyKWh: 185.79, migrations: 26556, slatah: 0.050488, pdm: 0.000662 },
  "lr-mmt-1.2": { energyKWh: 163.48, migrations: 27859, slatah: 0.058579, pdm: 0.000793 },
};
