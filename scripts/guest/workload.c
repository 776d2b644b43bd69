/*
 * nestcloud guest workloads, compiled static at image build time (gcc -static -O2).
 *
 *   nc-workload dirty <MiB/s> <working-set MiB>
 *       Dirties pages of a working set at the requested rate (0 = as fast as possible).
 *       A page counts as dirtied when one word in it is written: that is what a migration
 *       has to re-send. Status: /tmp/nc-dirty.status, console: NESTCLOUD-DIRTY lines.
 *
 *   nc-workload verify <MiB>
 *       Write-and-verify. Every 4 KiB page carries a header (magic, page index, sequence
 *       number) and a body derived from both; the program keeps the expected sequence of
 *       every page. It keeps rewriting pages with new sequence numbers (so the migration has
 *       dirty pages to lose) and re-checks ALL pages in every sweep. A page whose content does
 *       not match what was last written is a lost write: it prints
 *       "NESTCLOUD-VERIFY LOST page=<i> expected=<seq> found=<seq> ..." and the status
 *       turns to state=LOST for good. Otherwise it prints "NESTCLOUD-VERIFY ok <sweeps>"
 *       every 2 s. Status: /tmp/nc-verify.status.
 *
 *   nc-workload packets <interval-ms> <dst-ip> <dst-port>
 *       A detectable packet every interval (bench:secvm --follow): UDP datagrams carrying
 *       nestcloud's IDS test marker ("NESTCLOUD-IDS-TEST seq=<n>", default rule sid 9000001),
 *       from source port 20000 + n % 40000 to port <dst-port> + n / 40000, so an IDS alert
 *       (which names the flow, not the payload) still tells which packet it was. Sent on an
 *       absolute schedule so a late wake-up does not stretch the interval.
 *       Status: /tmp/nc-packets.status.
 *
 *   nc-workload hang
 *       Makes the guest stop responding on purpose, without a panic (the virtual AMT's hung
 *       guest): turns off the kernel's real-time throttling (and, on kernels that have one,
 *       the fair server that would still give ordinary tasks 5%), takes SCHED_FIFO 99 and
 *       spins on the only vCPU for good. Every ordinary task starves: the heartbeat, the
 *       shells, the tty's echo (a kworker). The kernel keeps taking interrupts and nothing
 *       panics; only a reset ends it. Never returns.
 *
 * Status files are replaced atomically (write temp + rename) so a reader never sees half
 * a file; their format is key=value pairs on one line, deliberately not starting with
 * "NESTCLOUD-" so that console clients filtering asynchronous lines never drop them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define MAGIC 0x4e435645524946ULL /* "NCVERIF" */

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double uptime_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !stop_requested) {
  }
}

static void write_status(const char *name, const char *text) {
  char path[128], tmp[140];
  snprintf(path, sizeof path, "/tmp/nc-%s.status", name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fputs(text, f);
  fputc('\n', f);
  if (fclose(f) == 0) rename(tmp, path);
}

static uint8_t *alloc_region(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  return (uint8_t *)p;
}

/* ---- dirty ---------------------------------------------------------------------------- */

static int run_dirty(double rate_mib, double ws_mib) {
  size_t pages = (size_t)(ws_mib * 1024.0 * 1024.0 / PAGE);
  if (pages == 0 || rate_mib < 0) {
    fprintf(stderr, "dirty: need <MiB/s >= 0> <working-set MiB > 0>\n");
    return 2;
  }
  uint8_t *mem = alloc_region(pages * PAGE);
  double pages_per_s = rate_mib * 1024.0 * 1024.0 / PAGE;
  const double tick = 0.01; /* pace in 10 ms slices so the rate is smooth, not bursty */
  double start = now_s(), last_report = start, credit = 0;
  uint64_t dirtied = 0, counter = 0;
  size_t cursor = 0;
  char buf[256];
  while (!stop_requested) {
    double t0 = now_s();
    size_t todo;
    if (rate_mib == 0) {
      todo = pages; /* unthrottled: one full sweep per slice */
    } else {
      credit += pages_per_s * tick;
      todo = (size_t)credit;
      credit -= (double)todo;
    }
    for (size_t i = 0; i < todo; i++) {
      *(volatile uint64_t *)(mem + cursor * PAGE) = ++counter;
      cursor = (cursor + 1) % pages;
    }
    dirtied += todo;
    double t1 = now_s();
    if (t1 - last_report >= 2.0) {
      double el = t1 - start;
      double achieved = (double)dirtied * PAGE / (1024.0 * 1024.0) / (el > 0 ? el : 1);
      snprintf(buf, sizeof buf,
               "workload=dirty state=running target_mibs=%.1f ws_mib=%.1f dirtied_pages=%" PRIu64
               " achieved_mibs=%.1f uptime=%.2f",
               rate_mib, ws_mib, dirtied, achieved, uptime_s());
      write_status("dirty", buf);
      printf("NESTCLOUD-DIRTY pages=%" PRIu64 " mibs=%.1f\n", dirtied, achieved);
      fflush(stdout);
      last_report = t1;
    }
    if (rate_mib != 0) sleep_s(tick - (now_s() - t0));
  }
  snprintf(buf, sizeof buf, "workload=dirty state=stopped dirtied_pages=%" PRIu64 " uptime=%.2f", dirtied,
           uptime_s());
  write_status("dirty", buf);
  return 0;
}

/* ---- verify --------------------------------------------------------------------------- */

struct page_hdr {
  uint64_t magic;
  uint64_t index;
  uint64_t seq;
};

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

static void fill_page(uint8_t *p, uint64_t index, uint64_t seq) {
  struct page_hdr *h = (struct page_hdr *)p;
  h->magic = MAGIC;
  h->index = index;
  h->seq = seq;
  uint64_t *w = (uint64_t *)(p + sizeof *h);
  size_t words = (PAGE - sizeof *h) / 8;
  uint64_t base = mix(index * 0x9e3779b97f4a7c15ULL ^ seq);
  for (size_t i = 0; i < words; i++) w[i] = base + i;
}

/* Returns 0 when the page holds exactly what was written with (index, seq). */
static int check_page(const uint8_t *p, uint64_t index, uint64_t seq, uint64_t *found_seq) {
  const struct page_hdr *h = (const struct page_hdr *)p;
  *found_seq = h->seq;
  if (h->magic != MAGIC || h->index != index || h->seq != seq) return 1;
  const uint64_t *w = (const uint64_t *)(p + sizeof *h);
  size_t words = (PAGE - sizeof *h) / 8;
  uint64_t base = mix(index * 0x9e3779b97f4a7c15ULL ^ seq);
  for (size_t i = 0; i < words; i++)
    if (w[i] != base + i) return 2;
  return 0;
}

static int run_verify(double mib) {
  size_t pages = (size_t)(mib * 1024.0 * 1024.0 / PAGE);
  if (pages == 0) {
    fprintf(stderr, "verify: need <MiB > 0>\n");
    return 2;
  }
  uint8_t *mem = alloc_region(pages * PAGE);
  uint64_t *expected = (uint64_t *)alloc_region(pages * sizeof(uint64_t));
  uint64_t seq = 0, sweeps = 0, lost = 0, checked = 0;
  for (size_t i = 0; i < pages; i++) {
    expected[i] = ++seq;
    fill_page(mem + i * PAGE, i, expected[i]);
  }
  /* Rewrite an eighth of the pages between sweeps: enough churn for migration to chase. */
  size_t rewrite_per_sweep = pages / 8 ? pages / 8 : 1;
  size_t cursor = 0;
  double last_report = 0;
  char buf[320];
  while (!stop_requested) {
    for (size_t i = 0; i < pages; i++) {
      uint64_t found;
      int bad = check_page(mem + i * PAGE, i, expected[i], &found);
      checked++;
      if (bad) {
        lost++;
        printf("NESTCLOUD-VERIFY LOST page=%zu expected=%" PRIu64 " found=%" PRIu64 " kind=%s sweep=%" PRIu64
               "\n",
               i, expected[i], found, bad == 1 ? "header" : "body", sweeps);
        fflush(stdout);
        /* Re-arm the page so one loss is reported once, not on every sweep. */
        expected[i] = ++seq;
        fill_page(mem + i * PAGE, i, expected[i]);
      }
    }
    sweeps++;
    for (size_t k = 0; k < rewrite_per_sweep; k++) {
      expected[cursor] = ++seq;
      fill_page(mem + cursor * PAGE, cursor, expected[cursor]);
      cursor = (cursor + 1) % pages;
    }
    double t = now_s();
    if (t - last_report >= 2.0) {
      snprintf(buf, sizeof buf,
               "workload=verify state=%s sweeps=%" PRIu64 " pages=%zu writes=%" PRIu64 " checked=%" PRIu64
               " lost=%" PRIu64 " uptime=%.2f",
               lost ? "LOST" : "ok", sweeps, pages, seq, checked, lost, uptime_s());
      write_status("verify", buf);
      if (lost)
        printf("NESTCLOUD-VERIFY LOST total=%" PRIu64 " sweeps=%" PRIu64 "\n", lost, sweeps);
      else
        printf("NESTCLOUD-VERIFY ok %" PRIu64 "\n", sweeps);
      fflush(stdout);
      last_report = t;
    }
  }
  snprintf(buf, sizeof buf,
           "workload=verify state=%s-stopped sweeps=%" PRIu64 " pages=%zu lost=%" PRIu64 " uptime=%.2f",
           lost ? "LOST" : "ok", sweeps, pages, lost, uptime_s());
  write_status("verify", buf);
  return lost ? 1 : 0;
}

/* Best effort: a knob this kernel lacks is simply not there. */
static void write_knob(const char *path, const char *value) {
  FILE *f = fopen(path, "w");
  if (!f) return;
  fputs(value, f);
  fclose(f);
}

static int run_hang(void) {
  write_knob("/proc/sys/kernel/sched_rt_runtime_us", "-1");
  mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
  write_knob("/sys/kernel/debug/sched/fair_server/cpu0/runtime", "0");
  struct sched_param p = {.sched_priority = 99};
  if (sched_setscheduler(0, SCHED_FIFO, &p) != 0) {
    perror("sched_setscheduler");
    return 1;
  }
  for (;;) __asm__ volatile("" ::: "memory");
}

static int run_packets(double interval_ms, const char *dst_ip, int dst_port) {
  struct sockaddr_in dst = {0};
  dst.sin_family = AF_INET;
  if (inet_pton(AF_INET, dst_ip, &dst.sin_addr) != 1 || interval_ms <= 0 || dst_port <= 0 || dst_port > 60000) {
    fprintf(stderr, "packets: bad destination %s or interval\n", dst_ip);
    return 2;
  }
  uint64_t seq = 0, sent = 0, errors = 0;
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  char status[160], payload[64];
  while (!stop_requested) {
    seq++;
    int len = snprintf(payload, sizeof payload, "NESTCLOUD-IDS-TEST seq=%" PRIu64, seq);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1;
    struct sockaddr_in src = {0};
    src.sin_family = AF_INET;
    src.sin_port = htons((uint16_t)(20000 + seq % 40000));
    src.sin_addr.s_addr = htonl(INADDR_ANY);
    dst.sin_port = htons((uint16_t)(dst_port + seq / 40000));
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        bind(fd, (struct sockaddr *)&src, sizeof src) == 0 &&
        sendto(fd, payload, (size_t)len, 0, (struct sockaddr *)&dst, sizeof dst) == len)
      sent++;
    else
      errors++;
    if (fd >= 0) close(fd);
    snprintf(status, sizeof status, "seq=%" PRIu64 " sent=%" PRIu64 " errors=%" PRIu64, seq, sent, errors);
    write_status("packets", status);
    long ns = next.tv_nsec + (long)(interval_ms * 1e6);
    next.tv_sec += ns / 1000000000L;
    next.tv_nsec = ns % 1000000000L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR && !stop_requested) {
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  if (argc == 4 && strcmp(argv[1], "dirty") == 0) return run_dirty(atof(argv[2]), atof(argv[3]));
  if (argc == 3 && strcmp(argv[1], "verify") == 0) return run_verify(atof(argv[2]));
  if (argc == 2 && strcmp(argv[1], "hang") == 0) return run_hang();
  if (argc == 5 && strcmp(argv[1], "packets") == 0) return run_packets(atof(argv[2]), argv[3], atoi(argv[4]));
  fprintf(stderr, "usage: %s dirty <MiB/s> <working-set MiB> | verify <MiB> | packets <ms> <ip> <port> | hang\n",
          argv[0]);
  return 2;
}
