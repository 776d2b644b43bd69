/** The controller's Prometheus metrics (served at /metrics, with a token). */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export class ControllerMetrics {
  readonly registry = new Registry();
  readonly guests = new Gauge({
    name: "nestcloud_guests",
    help: "Guest VMs by power state",
    labelNames: ["state"],
    registers: [this.registry],
  });
  readonly hostVms = new Gauge({
    name: "nestcloud_host_vms",
    help: "Host VMs by state",
    labelNames: ["state"],
    registers: [this.registry],
  });
  readonly costRate = new Gauge({
    name: "nestcloud_cost_per_hour",
    help: "Rented host VMs, price per hour",
    registers: [this.registry],
  });
  readonly migrations = new Counter({
    name: "nestcloud_migrations_total",
    help: "Migrations finished, by mechanism and outcome",
    labelNames: ["mechanism", "outcome"],
    registers: [this.registry],
  });
  readonly plannerSeconds = new Histogram({
    name: "nestcloud_planner_round_seconds",
    help: "Wall time of one planning round",
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1, 2],
    registers: [this.registry],
  });
  readonly apiSeconds = new Histogram({
    name: "nestcloud_api_request_seconds",
    help: "API latency by route and status",
    labelNames: ["route", "status"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: "nestcloud_leader",
    help: "1 while this controller leads",
    registers: [this.registry],
  });
  readonly alerts = new Counter({
    name: "nestcloud_secvm_alerts_total",
    help: "Alerts security VMs' monitors raised, by monitor and severity",
    labelNames: ["monitor", "severity"],
    registers: [this.registry],
  });
  readonly channelSwitches = new Counter({
    name: "nestcloud_secvm_channel_switches_total",
    help: "Changes of a (security VM, target) pair's channel as placement changed",
    labelNames: ["from", "to"],
    registers: [this.registry],
  });
  readonly monitorPairs = new Gauge({
    name: "nestcloud_secvm_pairs",
    help: "(security VM, target) pairs by channel (none: a side is not placed)",
    labelNames: ["channel"],
    registers: [this.registry],
  });
  readonly monitorMoves = new Histogram({
    name: "nestcloud_secvm_monitor_move_seconds",
    help: "A monitor's move to its target's new host VM: asking the destination until its first round (the old one runs meanwhile)",
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 90],
    registers: [this.registry],
  });
  readonly monitoringGaps = new Histogram({
    name: "nestcloud_secvm_monitoring_gap_seconds",
    help: "Per monitor move, the longest the target ran with no monitor seeing it (0: made before broken)",
    buckets: [0, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 90],
    registers: [this.registry],
  });
  readonly monitorErrors = new Counter({
    name: "nestcloud_secvm_monitor_errors_total",
    help: "Failed attempts to start, move or read a security VM's monitors (retried next loop)",
    registers: [this.registry],
  });
}
