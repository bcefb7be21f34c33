# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's small service: an HTTP server that answers every GET with JSON saying
which namespace served it, on which address, and which client address it saw.

That last field is the DNAT evidence of the article: a client that connected to
host1:8080 is answered from inside myspace (192.168.45.3:80), and the client address is
left untouched (only the destination was translated).

    python3 whoami.py start --netns myspace --bind 192.168.45.3 --port 80 --pidfile F
    python3 whoami.py stop --pidfile F

`start` is idempotent (prints "already running" when the pidfile names a live server);
`stop` too (prints "not running"). The server enters the namespace itself (setns), so no
`ip netns exec` and no extra mount namespace is involved.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import ctypes
import errno
import json
import os
import signal
import socket
import sys
import time

try:
    from http.server import BaseHTTPRequestHandler, HTTPServer
except ImportError:  # pragma: no cover - Python 2 is not supported, keep compile checks happy
    BaseHTTPRequestHandler = object
    HTTPServer = None

CLONE_NEWNET = 0x40000000


def enter_namespace(name):
    """setns() into /run/netns/NAME (network namespace only)."""
    path = os.path.join('/run/netns', name)
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, 'setns(%s): %s' % (path, os.strerror(err)))
    finally:
        os.close(fd)


def running_pid(pidfile):
    """The pid recorded in ``pidfile`` if that process is a whoami server, else None."""
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return None
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            cmdline = handle.read().split(b'\0')
    except (IOError, OSError):
        return None
    # A recycled pid belongs to some other program: only our own script counts.
    return pid if any(arg.endswith(b'whoami.py') for arg in cmdline) else None


class Handler(BaseHTTPRequestHandler):
    server_version = 'whoami/1'

    def do_GET(self):
        local = self.connection.getsockname()
        body = json.dumps({
            'service': 'whoami',
            'namespace': self.server.netns_label,
            'served_on': '%s:%d' % (local[0], local[1]),
            'client': '%s:%d' % (self.client_address[0], self.client_address[1]),
        }, sort_keys=True).encode() + b'\n'
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass  # a daemon has no terminal; the JSON answer is the log


def serve(args, ready_fd):
    """Runs in the daemon: enter the namespace, bind, report readiness, serve forever."""
    try:
        if args.netns:
            enter_namespace(args.netns)
        server = HTTPServer((args.bind, args.port), Handler)
        server.netns_label = args.netns or socket.gethostname()
        with open(args.pidfile + '.tmp', 'w') as handle:
            handle.write('%d\n' % os.getpid())
        os.rename(args.pidfile + '.tmp', args.pidfile)
    except Exception as exc:  # report to the waiting parent, which prints it and fails
        os.write(ready_fd, ('error: %s' % exc).encode())
        os.close(ready_fd)
        os._exit(1)
    os.write(ready_fd, b'ok')
    os.close(ready_fd)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        try:
            os.unlink(args.pidfile)
        except OSError:
            pass


def start(args):
    pid = running_pid(args.pidfile)
    if pid:
        print('already running (pid %d)' % pid)
        return 0
    rfd, wfd = os.pipe()
    if os.fork() == 0:
        # First child: new session, then a grandchild that no terminal or pipe holds on to.
        os.close(rfd)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.chdir('/')
        serve(args, wfd)
        os._exit(0)
    os.close(wfd)
    answer = b''
    while True:
        chunk = os.read(rfd, 512)
        if not chunk:
            break
        answer += chunk
    os.close(rfd)
    os.wait()
    if answer != b'ok':
        print('whoami could not start: %s' % answer.decode(errors='replace'), file=sys.stderr)
        return 1
    print('started (pid %d) in namespace %s on %s:%d' % (running_pid(args.pidfile) or 0, args.netns or '-',
                                                         args.bind, args.port))
    return 0


def stop(args):
    pid = running_pid(args.pidfile)
    if not pid:
        print('not running')
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 5
    while os.path.exists('/proc/%d' % pid) and time.time() < deadline:
        time.sleep(0.1)
    if os.path.exists('/proc/%d' % pid):
        os.kill(pid, signal.SIGKILL)
    try:
        os.unlink(args.pidfile)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    print('stopped (pid %d)' % pid)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('action', choices=['start', 'stop'])
    parser.add_argument('--pidfile', required=True)
    parser.add_argument('--netns', help='network namespace to serve in (name under /run/netns)')
    parser.add_argument('--bind', default='0.0.0.0')
    parser.add_argument('--port', type=int, default=80)
    args = parser.parse_args(argv)
    if args.action == 'start':
        return start(args)
    return stop(args)


if __name__ == '__main__':
    sys.exit(main())
