# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prove that a built topology works, so that a fast but broken run cannot pass.

Run as its own process (bench/run.py feeds it JSON on stdin): it opens sockets inside
lab namespaces by switching this thread's network namespace with setns(2) and back, so
a failure can never leave the bench itself in a lab namespace. For every sampled inner
namespace it checks, all between namespaces the bench made:

- ping: the inner namespace reaches the upstream address through the router;
- egress: a TCP connection from the inner namespace to a listener in the upstream
  namespace arrives from the router's uplink address (masquerade worked);
- ingress: a TCP connection from the upstream namespace to router:published_port is
  accepted in this inner namespace (the DNAT and its forward rule worked), which answers
  with its own name.

Prints one JSON object: {"ok": bool, "checks": [...]}; exit status 0 only if all passed.
"""

import ctypes
import json
import os
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
TIMEOUT = 3.0
EGRESS_PORT = 9000
_libc = ctypes.CDLL(None, use_errno=True)


class Namespaces(object):
    """Switch this thread between lab namespaces; always back to where it started."""

    def __init__(self):
        self.home = os.open('/proc/self/ns/net', os.O_RDONLY)

    def _setns(self, fd):
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, 'setns: %s' % os.strerror(err))

    def socket_in(self, name, make):
        fd = os.open('/run/netns/%s' % name, os.O_RDONLY)
        try:
            self._setns(fd)
            try:
                return make()
            finally:
                self._setns(self.home)
        finally:
            os.close(fd)


def tcp_listener(address, port):
    def make():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(8)
        sock.settimeout(TIMEOUT)
        return sock
    return make


def tcp_client():
    def make():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        return sock
    return make


def icmp_checksum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff


def ping(spaces, inner, target):
    """One ICMP echo from the inner namespace (raw socket: no ping binary needed)."""
    def make():
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        sock.settimeout(TIMEOUT)
        return sock
    sock = spaces.socket_in(inner, make)
    ident = os.getpid() & 0xffff
    payload = b'linuxnet.netns bench'
    header = struct.pack('!BBHHH', 8, 0, 0, ident, 1)
    packet = struct.pack('!BBHHH', 8, 0, icmp_checksum(header + payload), ident, 1) + payload
    deadline = time.monotonic() + TIMEOUT
    try:
        sock.sendto(packet, (target, 0))
        while time.monotonic() < deadline:
            data, peer = sock.recvfrom(2048)
            ihl = (data[0] & 0x0f) * 4
            kind, reply_id = struct.unpack('!BxxxH', data[ihl:ihl + 6])
            if kind == 0 and reply_id == ident and peer[0] == target:
                return True, 'echo reply from %s' % peer[0]
        return False, 'no echo reply from %s' % target
    except OSError as exc:
        return False, 'ping %s failed: %s' % (target, exc)
    finally:
        sock.close()


def check_egress(spaces, upstream, check):
    """Inner -> upstream listener; the listener must see the router's uplink address."""
    listener = spaces.socket_in(upstream, tcp_listener(check['upstream_address'], EGRESS_PORT))
    client = spaces.socket_in(check['inner'], tcp_client())
    try:
        client.connect((check['upstream_address'], EGRESS_PORT))
        conn, peer = listener.accept()
        conn.close()
        return peer[0] == check['router_address'], 'upstream saw %s' % peer[0]
    except OSError as exc:
        return False, 'egress connection failed: %s' % exc
    finally:
        client.close()
        listener.close()


def check_ingress(spaces, upstream, check):
    """Upstream -> router:published_port must land in this inner namespace."""
    listener = spaces.socket_in(check['inner'], tcp_listener('0.0.0.0', check['inner_port']))
    client = spaces.socket_in(upstream, tcp_client())
    try:
        client.connect((check['router_address'], check['published_port']))
        conn, peer = listener.accept()
        conn.sendall(check['inner'].encode())
        conn.close()
        answer = client.recv(256).decode()
        ok = answer == check['inner'] and peer[0] == check['upstream_address']
        return ok, 'answered by %r, which saw %s' % (answer, peer[0])
    except OSError as exc:
        return False, 'ingress connection to %s:%d failed: %s' % (
            check['router_address'], check['published_port'], exc)
    finally:
        client.close()
        listener.close()


def main():
    spec = json.load(sys.stdin)
    spaces = Namespaces()
    results = []
    for check in spec['checks']:
        ping_ok, ping_detail = ping(spaces, check['inner'], check['upstream_address'])
        egress_ok, egress_detail = check_egress(spaces, spec['upstream'], check)
        ingress_ok, ingress_detail = check_ingress(spaces, spec['upstream'], check)
        results.append({
            'inner': check['inner'],
            'ok': ping_ok and egress_ok and ingress_ok,
            'ping': [ping_ok, ping_detail],
            'egress': [egress_ok, egress_detail],
            'ingress': [ingress_ok, ingress_detail],
        })
    ok = bool(results) and all(result['ok'] for result in results)
    json.dump({'ok': ok, 'checks': results}, sys.stdout)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
