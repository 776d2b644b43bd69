/*
 * nestcloud's TAP writer for the network monitor (monitor/network/tap.ts compiles and runs
 * it, inside the monitor's network namespace). Node cannot create a TAP device (that takes
 * ioctl(TUNSETIFF) on /dev/net/tun), so this does only that:
 *
 *   tapwriter <ifname>
 *
 * creates TAP device <ifname> (IFF_TAP | IFF_NO_PI: whole Ethernet frames, no extra header)
 * with IPv6 off (the namespace's kernel sends nothing of its own through it) and a 64 KiB MTU,
 * brings it up,
 * prints "READY <ifname>\n" on stdout, then reads frames from stdin, each a 4-byte big-endian
 * length and the frame (the framing of QEMU's filter-mirror), and writes each to the device,
 * where Suricata captures it. A length of 0 or over 65535+18 (the receiver already refused
 * those: this only guards itself) ends it with exit code 3; end of stdin ends it with 0. The
 * device goes when the process does (it is not persistent). Writes to a TAP device do not
 * block; a frame the kernel refuses is counted and reported at exit on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FRAME (65535 + 18)

static int read_full(int fd, unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r == 0) return got == 0 ? 0 : -1;
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    got += (size_t)r;
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2 || strlen(argv[1]) == 0 || strlen(argv[1]) >= IFNAMSIZ) {
    fprintf(stderr, "usage: tapwriter <ifname (< %d chars)>\n", IFNAMSIZ);
    return 2;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    perror("tapwriter: open /dev/net/tun");
    return 1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    perror("tapwriter: TUNSETIFF");
    return 1;
  }
  char path[128];
  snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifr.ifr_name);
  int v6 = open(path, O_WRONLY | O_CLOEXEC);
  if (v6 >= 0) {
    if (write(v6, "1", 1) != 1) perror("tapwriter: disable_ipv6");
    close(v6);
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
    perror("tapwriter: SIOCGIFFLAGS");
    return 1;
  }
  /* Frames up to 64 KiB (a guest's TSO) pass whole, and Suricata sizes its capture by the MTU. */
  struct ifreq mtu = ifr;
  mtu.ifr_mtu = 65535;
  if (ioctl(s, SIOCSIFMTU, &mtu) < 0) perror("tapwriter: SIOCSIFMTU (the default MTU stays)");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
    perror("tapwriter: SIOCSIFFLAGS");
    return 1;
  }
  close(s);
  printf("READY %s\n", ifr.ifr_name);
  fflush(stdout);

  static unsigned char frame[MAX_FRAME];
  unsigned char hdr[4];
  unsigned long long written = 0, refused = 0;
  int rc = 0;
  for (;;) {
    int r = read_full(0, hdr, 4);
    if (r == 0) break;
    if (r < 0) {
      rc = 1;
      break;
    }
    uint32_t n = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) | hdr[3];
    if (n == 0 || n > MAX_FRAME) {
      fprintf(stderr, "tapwriter: bad frame length %u\n", n);
      rc = 3;
      break;
    }
    if (read_full(0, frame, n) != 1) {
      rc = 1;
      break;
    }
    if (write(fd, frame, n) == (ssize_t)n)
      written++;
    else
      refused++;
  }
  fprintf(stderr, "tapwriter: %llu frames written, %llu refused\n", written, refused);
  return rc;
}
