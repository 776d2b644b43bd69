// The guest side of bench:secvm --follow: shell commands (run in the guest through its agent)
// that start three generators of numbered, detectable events, one per monitor, and read how
// far each has got.
//   memory   a process named ev<n> (5 digits) started every second, alive EVENT_LIFE_S (the
//            memory monitor reports it started; /tmp/ev.log counts them);
//   disk     a file ncav<n>.txt carrying nestcloud's AV test marker written every second on
//            the guest's first ext4 data disk and synced (integrity and a ClamAV signature on
//            the marker report it; /tmp/ncav.log counts them); none without a data disk;
//   network  a UDP datagram with nestcloud's IDS test marker every 50 ms, its number in its
//            ports (scripts/guest/workload.c `packets`; /tmp/nc-packets.status counts them).
// Both one-a-second generators run in one loop, so the guest forks little besides the events.

/** How long each memory event's process lives: far longer than any wait for a round. */
export const EVENT_LIFE_S = 90;
/** The marker the disk events carry (a ClamAV body signature on it names them). */
export const AV_MARKER = "NESTCLOUD-AV-TEST";
/** The ClamAV body signature a disk monitor needs to report them as malware (agent schema's shape). */
export const AV_SIGNATURE = {
  name: "Nestcloud.Follow.Test",
  hex: Buffer.from(AV_MARKER).toString("hex"),
} as const;
/** Where the packets go (user-mode networking's gateway) and their destination port base. */
export const PACKET_DST = "10.0.2.2";
export const PACKET_DST_BASE = 9;
export const PACKET_INTERVAL_MS = 50;

/** Starts the generators (returns at once; they run until stopped or `max` seconds). */
export function startGeneratorsCommand(max = 7200): string {
  const loop =
    `d=$(awk '$3=="ext4" && $2!="/" {print $2; exit}' /proc/mounts); ` +
    `if [ -n "$d" ]; then mkdir -p "$d/ncav"; echo "$d" > /tmp/ncav.dir; fi; ` +
    `mkdir -p /tmp/ev; i=0; while [ $i -lt ${max} ] && [ ! -e /tmp/ev.stop ]; do i=$((i+1)); ` +
    `n=$(printf 'ev%05d' $i); printf '#!/bin/sh\\nsleep ${EVENT_LIFE_S}\\n' > /tmp/ev/$n; ` +
    `chmod +x /tmp/ev/$n; /tmp/ev/$n & echo $n >> /tmp/ev.log; ` +
    `if [ -n "$d" ]; then f=$(printf 'ncav%05d' $i); ` +
    `printf '${AV_MARKER} %s\\n' $f > "$d/ncav/$f.txt"; sync; echo $f >> /tmp/ncav.log; fi; ` +
    `sleep 1; done`;
  return (
    `rm -f /tmp/ev.stop; (${loop}) </dev/null >/dev/null 2>&1 & ` +
    `nc-wl start packets ${PACKET_INTERVAL_MS} ${PACKET_DST} ${PACKET_DST_BASE} >/dev/null; echo started`
  );
}

export const STOP_GENERATORS_COMMAND = "touch /tmp/ev.stop; nc-wl stop packets; true";

/** Prints the generators' counts on one line. */
export const READ_COUNTS_COMMAND =
  `echo "memory=$(cat /tmp/ev.log 2>/dev/null | wc -l) disk=$(cat /tmp/ncav.log 2>/dev/null | wc -l) ` +
  `diskdir=$(cat /tmp/ncav.dir 2>/dev/null) $(cat /tmp/nc-packets.status 2>/dev/null)"`;

export interface GeneratorCounts {
  /** The last event of each kind made so far (events are numbered from 1). */
  readonly memory: number;
  readonly disk: number;
  /** Packets attempted (the last number); `sent` of them left the guest. */
  readonly network: number;
  readonly sent: number;
  readonly errors: number;
  /** The disk events' folder ("" without a data disk). */
  readonly diskDir: string;
}

export function parseCounts(out: string): GeneratorCounts {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? 0);
  return {
    memory: num(/\bmemory=(\d+)/),
    disk: num(/\bdisk=(\d+)/),
    network: num(/\bseq=(\d+)/),
    sent: num(/\bsent=(\d+)/),
    errors: num(/\berrors=(\d+)/),
    diskDir: /\bdiskdir=(\S*)/.exec(out)?.[1] ?? "",
  };
}
