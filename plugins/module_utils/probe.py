# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reachability probes from inside a namespace, and a one-shot listener in another.

The client side enters the source namespace in-process (``netns_session.entered``) and
uses plain sockets: TCP connect, a UDP datagram that expects an answer, or an ICMP echo
over a raw socket (root only, which the module is anyway; it needs no ``ping`` binary
and lets the caller choose the ICMP identifier). Sockets belong to the namespace they
were created in, so they keep working after the process has returned to its own.

The listener is a forked child that enters the other namespace, binds, reports
"ready" through a pipe and then, for each connection, datagram or echo request that
carries this probe's token, reports the peer address it saw before answering. That
is the article's tcpdump evidence made machine-readable: behind a MASQUERADE the
listener sees the NAT host's address, not the inner one. The child cannot outlive
the call: the parent kills and reaps it in every case, the kernel kills it if the
parent dies (PR_SET_PDEATHSIG), and an alarm bounds its lifetime.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import errno
import json
import os
import select
import signal
import socket
import struct
import time

from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import entered

ICMP_ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
ICMP_ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
# Errors that quote our request back: destination unreachable, time exceeded.
ICMP_ERRORS = {socket.AF_INET: (3, 11), socket.AF_INET6: (1, 3)}
ICMP_PROTO = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}

READY_TIMEOUT = 5.0       # a listener that cannot bind within this is broken
TCP_ECHO_WAIT = 2.0       # how long the listener waits for a connected client's token
_PR_SET_PDEATHSIG = 1


class ListenerError(Exception):
    """The one-shot listener could not start (bind failed, namespace missing, ...)."""


def family_of(address):
    return socket.AF_INET6 if ':' in str(address) else socket.AF_INET


def wildcard_address(family):
    return '::' if family == socket.AF_INET6 else '0.0.0.0'


def new_token():
    """Bytes that mark our own probe traffic (the listener ignores anything else)."""
    return b'lnt-probe-' + os.urandom(8).hex().encode('ascii')


# --- ICMP echo packets ------------------------------------------------------------------

def icmp_checksum(data):
    """RFC 1071 internet checksum."""
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff


def build_echo_request(family, ident, seq, payload):
    """An ICMP/ICMPv6 echo request. For ICMPv6 the kernel fills in the checksum
    (it must: the checksum covers the IPv6 pseudo-header)."""
    header = struct.pack('!BBHHH', ICMP_ECHO_REQUEST[family], 0, 0, ident, seq)
    if family == socket.AF_INET:
        checksum = icmp_checksum(header + payload)
        header = header[:2] + struct.pack('!H', checksum) + header[4:]
    return header + payload


def strip_ipv4_header(packet):
    """IPv4 raw sockets deliver the IP header too; IPv6 raw sockets do not."""
    if len(packet) < 20:
        return None, b''
    ihl = (packet[0] & 0x0f) * 4
    source = socket.inet_ntop(socket.AF_INET, packet[12:16])
    return source, packet[ihl:]


def parse_icmp(family, message):
    """An ICMP message (without IP header) as a dict; errors carry the quoted echo's id/seq."""
    if len(message) < 8:
        return None
    icmp_type, code, dummy_checksum, ident, seq = struct.unpack('!BBHHH', message[:8])
    parsed = {'type': icmp_type, 'code': code, 'id': ident, 'seq': seq, 'payload': message[8:]}
    if icmp_type in ICMP_ERRORS[family]:
        quoted = message[8:]
        if family == socket.AF_INET:
            if len(quoted) < 20:
                return parsed
            quoted = quoted[(quoted[0] & 0x0f) * 4:]
        else:
            quoted = quoted[40:]  # fixed IPv6 header; echo requests carry no extension headers
        if len(quoted) >= 8:
            fields = struct.unpack('!BBHHH', quoted[:8])
            parsed['quoted'] = {'type': fields[0], 'id': fields[3], 'seq': fields[4]}
    return parsed


def describe_icmp_error(family, parsed, source):
    kind = 'destination unreachable' if parsed['type'] == ICMP_ERRORS[family][0] else 'time exceeded'
    return '%s (ICMP type %d code %d) from %s' % (kind, parsed['type'], parsed['code'], source)


# --- client attempts ------------------------------------------------------------------

def _attempt(seq, rtt=None, error=None, local=None):
    return {
        'seq': seq,
        'ok': error is None,
        'rtt_ms': round(rtt * 1000.0, 3) if rtt is not None and error is None else None,
        'error': error,
        'local': local,
    }


def _endpoint(sockname):
    return {'address': sockname[0], 'port': sockname[1]}


def _error_text(exc):
    if isinstance(exc, socket.timeout):
        return 'timed out'
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused (port closed)'
    return '%s' % (exc.strerror or exc) if isinstance(exc, OSError) else str(exc)


def tcp_attempt(family, target, port, timeout, seq, token, expect_echo):
    """Connect (the handshake time is the rtt); with a listener also exchange the token."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        started = time.monotonic()
        sock.connect((target, port))
        rtt = time.monotonic() - started
        local = _endpoint(sock.getsockname())
        if expect_echo:
            sock.sendall(token)
            received = b''
            while len(received) < len(token):
                chunk = sock.recv(len(token) - len(received))
                if not chunk:
                    break
                received += chunk
            if received != token:
                return _attempt(seq, error='connected, but the listener did not echo the probe', local=local)
        return _attempt(seq, rtt=rtt, local=local)
    except (OSError, socket.timeout) as exc:
        return _attempt(seq, error=_error_text(exc))
    finally:
        sock.close()


def udp_attempt(family, target, port, timeout, seq, token):
    """One datagram; success is an answer from the target (an echoing listener, or any
    service that replies). A closed port answers ICMP port unreachable, which a connected
    UDP socket reports as ECONNREFUSED, so it fails fast; silence is a timeout."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.connect((target, port))
        local = _endpoint(sock.getsockname())
        payload = token + (b':%d' % seq)
        started = time.monotonic()
        deadline = started + timeout
        sock.send(payload)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _attempt(seq, error='no answer (timed out)', local=local)
            sock.settimeout(remaining)
            data = sock.recv(65535)
            # An echo of another (late) attempt is not this attempt's answer.
            if data.startswith(token) and data != payload:
                continue
            return _attempt(seq, rtt=time.monotonic() - started, local=local)
    except (OSError, socket.timeout) as exc:
        return _attempt(seq, error=_error_text(exc))
    finally:
        sock.close()


def open_icmp_socket(family):
    return socket.socket(family, socket.SOCK_RAW, ICMP_PROTO[family])


def icmp_attempt(sock, family, target, timeout, seq, ident, token):
    """One echo request on a raw socket; wait for the reply with our id, seq and token."""
    payload = token + struct.pack('!H', seq)
    packet = build_echo_request(family, ident, seq, payload)
    started = time.monotonic()
    deadline = started + timeout
    try:
        sock.sendto(packet, (target, 0))
    except OSError as exc:
        return _attempt(seq, error=_error_text(exc))
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _attempt(seq, error='no echo reply (timed out)')
        if not select.select([sock], [], [], remaining)[0]:
            continue
        data, sender = sock.recvfrom(65535)
        if family == socket.AF_INET:
            source, message = strip_ipv4_header(data)
        else:
            source, message = sender[0], data
        parsed = parse_icmp(family, message)
        if parsed is None:
            continue
        if (parsed['type'] == ICMP_ECHO_REPLY[family] and parsed['id'] == ident
                and parsed['seq'] == seq and parsed['payload'] == payload):
            return _attempt(seq, rtt=time.monotonic() - started)
        quoted = parsed.get('quoted')
        if quoted and quoted['id'] == ident and quoted['seq'] == seq \
                and quoted['type'] == ICMP_ECHO_REQUEST[family]:
            return _attempt(seq, error=describe_icmp_error(family, parsed, source))


def run_attempts(namespace, protocol, target, port, count, timeout, token, icmp_id=None,
                 expect_echo=False):
    """``count`` attempts from inside ``namespace``, one after the other."""
    family = family_of(target)
    attempts = []
    with entered(namespace):
        if protocol == 'icmp':
            sock = open_icmp_socket(family)
            try:
                for seq in range(1, count + 1):
                    attempts.append(icmp_attempt(sock, family, target, timeout, seq, icmp_id, token))
            finally:
                sock.close()
        else:
            for seq in range(1, count + 1):
                if protocol == 'tcp':
                    attempts.append(tcp_attempt(family, target, port, timeout, seq, token, expect_echo))
                else:
                    attempts.append(udp_attempt(family, target, port, timeout, seq, token))
    return attempts


def summarize(attempts):
    """sent, received, reachable (at least one answer) and rtt_ms min/avg/max."""
    rtts = [a['rtt_ms'] for a in attempts if a['ok']]
    return {
        'sent': len(attempts),
        'received': len(rtts),
        'reachable': bool(rtts),
        'rtt_ms': {
            'min': min(rtts) if rtts else None,
            'avg': round(sum(rtts) / len(rtts), 3) if rtts else None,
            'max': max(rtts) if rtts else None,
        },
    }


# --- the one-shot listener ------------------------------------------------------------

class Listener(object):
    """A forked child serving up to ``expected`` probes in ``namespace``.

    Use as a context manager: entering starts it and waits until it is bound (raising
    ListenerError if it cannot bind), leaving always kills and reaps it.
    """

    def __init__(self, namespace, family, protocol, address, port, expected, lifetime, token):
        self.namespace = namespace
        self.family = family
        self.protocol = protocol
        self.address = address or wildcard_address(family)
        self.port = port
        self.expected = expected
        self.lifetime = lifetime
        self.token = token
        self.pid = None
        self._fd = None
        self._buffer = b''
        self.peers = []
        self.errors = []
        self.bound = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()
        return False

    def start(self):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
            os.close(read_fd)
            status = 0
            try:
                self._child(write_fd)
            except BaseException as exc:  # never let a forked child return into the module
                _emit(write_fd, {'event': 'error', 'message': '%s: %s' % (type(exc).__name__, exc)})
                status = 1
            finally:
                os._exit(status)
        os.close(write_fd)
        self.pid, self._fd = pid, read_fd
        event = self._next_event(time.monotonic() + READY_TIMEOUT)
        if event is None or event.get('event') != 'ready':
            reason = event.get('message') if event else 'it did not report ready within %ss' % READY_TIMEOUT
            self.stop()
            raise ListenerError('the listener in namespace %r could not listen on %s port %s/%s: %s'
                                % (self.namespace, self.address, self.port, self.protocol, reason))
        self.bound = event.get('bound')

    def collect(self, wanted, grace):
        """Read the peers reported so far, waiting up to ``grace`` seconds for ``wanted``."""
        deadline = time.monotonic() + grace
        while len(self.peers) < wanted:
            event = self._next_event(deadline)
            if event is None:
                break
        return list(self.peers)

    def stop(self):
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise
            _reap(self.pid)
            self.pid = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _next_event(self, deadline):
        """The next event line from the child, or None at the deadline or its exit."""
        while b'\n' not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not select.select([self._fd], [], [], remaining)[0]:
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b'\n', 1)
        event = json.loads(line.decode('utf-8'))
        if event.get('event') == 'peer':
            self.peers.append(event['peer'])
        elif event.get('event') == 'error':
            self.errors.append(event.get('message'))
        return event

    # The rest runs in the child only.

    def _child(self, write_fd):  # pragma: no cover - forked child
        _die_with_parent()
        signal.alarm(max(1, int(self.lifetime + 0.999)))
        with entered(self.namespace):
            sock = self._listening_socket()
        _emit(write_fd, {'event': 'ready', 'bound': _endpoint(sock.getsockname()[:2])
                         if self.protocol != 'icmp' else {'address': self.address, 'port': None}})
        serve = {'tcp': self._serve_tcp, 'udp': self._serve_udp, 'icmp': self._serve_icmp}[self.protocol]
        served = 0
        while served < self.expected:
            if serve(sock, write_fd):
                served += 1
        _emit(write_fd, {'event': 'done'})

    def _listening_socket(self):  # pragma: no cover - forked child
        if self.protocol == 'icmp':
            return open_icmp_socket(self.family)
        kind = socket.SOCK_STREAM if self.protocol == 'tcp' else socket.SOCK_DGRAM
        sock = socket.socket(self.family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((self.address, self.port))
        if self.protocol == 'tcp':
            sock.listen(16)
        return sock

    def _serve_tcp(self, sock, write_fd):  # pragma: no cover - forked child
        conn, peer = sock.accept()
        try:
            _emit(write_fd, {'event': 'peer', 'peer': _endpoint(peer[:2])})
            conn.settimeout(TCP_ECHO_WAIT)
            received = b''
            try:
                while len(received) < len(self.token):
                    chunk = conn.recv(len(self.token) - len(received))
                    if not chunk:
                        break
                    received += chunk
                conn.sendall(received)
            except (OSError, socket.timeout):
                pass  # a client that only checks the handshake sends nothing
        finally:
            conn.close()
        return True

    def _serve_udp(self, sock, write_fd):  # pragma: no cover - forked child
        data, peer = sock.recvfrom(65535)
        if not data.startswith(self.token):
            return False
        # Report before answering, so the report is in the pipe when the client sees the echo.
        _emit(write_fd, {'event': 'peer', 'peer': _endpoint(peer[:2])})
        sock.sendto(data, peer)
        return True

    def _serve_icmp(self, sock, write_fd):  # pragma: no cover - forked child
        # The kernel answers the echo itself; the raw socket only gets a copy to look at.
        data, sender = sock.recvfrom(65535)
        if self.family == socket.AF_INET:
            source, message = strip_ipv4_header(data)
        else:
            source, message = sender[0], data
        parsed = parse_icmp(self.family, message)
        if (parsed is None or parsed['type'] != ICMP_ECHO_REQUEST[self.family]
                or not parsed['payload'].startswith(self.token)):
            return False
        _emit(write_fd, {'event': 'peer', 'peer': {'address': source, 'port': None, 'id': parsed['id']}})
        return True


def _emit(fd, event):
    data = (json.dumps(event) + '\n').encode('utf-8')
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _die_with_parent():  # pragma: no cover - forked child
    """Ask the kernel to SIGKILL us if the module process dies first."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the alarm still bounds our lifetime


def _reap(pid):
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            if exc.errno == errno.ECHILD:
                return
            raise
