/**
 * Whether the peer of a Unix stream socket has read everything written to it: Linux's
 * SIOCOUTQ (= TIOCOUTQ) on our end, through libc's ioctl (koffi: Node has no ioctl). For an
 * AF_UNIX stream socket it counts the memory of the messages the peer has not consumed
 * (not bytes), so it is 0 exactly when the peer read all we wrote. The console uses it to
 * acknowledge a keystroke only once QEMU took it from its chardev socket into the guest's
 * UART (whose state migrates), never while it still sits in a socket buffer that dies with
 * a source QEMU.
 */
import type { Socket } from "node:net";
import koffi from "koffi";

const SIOCOUTQ = 0x5411;

type Ioctl = (fd: number, req: number, out: number[]) => number;
let ioctl: Ioctl | null | undefined;

function load(): Ioctl | null {
  if (ioctl !== undefined) return ioctl;
  try {
    const libc = koffi.load("libc.so.6");
    ioctl = libc.func("int ioctl(int fd, unsigned long req, _Out_ int *out)") as Ioctl;
  } catch {
    ioctl = null;
  }
  return ioctl;
}

/** The socket's file descriptor (Node keeps it on its handle; not part of the public API). */
function fdOf(sock: Socket): number | null {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : null;
}

/**
 * Unconsumed data in `sock`'s send queue (0: the peer read everything; a positive number is
 * kernel memory, not a byte count), or null when it cannot be told (no fd, no libc).
 */
export function unreadByPeer(sock: Socket): number | null {
  const f = load();
  const fd = fdOf(sock);
  if (!f || fd === null || sock.destroyed) return null;
  // Node writes asynchronously: what it still holds has not reached the kernel yet.
  if (sock.writableLength > 0) return sock.writableLength;
  const out = [0];
  return f(fd, SIOCOUTQ, out) === 0 ? out[0] : null;
}
