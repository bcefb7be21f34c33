# SPDX-License-Identifier: GPL-3.0-or-later
"""TCP traffic between the test's own namespaces: a listener that answers every connection
with "<tag> <peer address>" (so the client learns which namespace answered and which source
address it saw), and a one-shot client. Both are bounded in time; nothing runs in the root
namespace."""
import subprocess
import sys

from tests.support import harness

# Answers each connection on every port given with "<tag> <peer>"; exits by itself after a
# while so that no test can leave it running.
LISTENER = r'''
import selectors, socket, sys, time
sel = selectors.DefaultSelector()
tag = sys.argv[1]
for port in map(int, sys.argv[2:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
deadline = time.time() + 60
while time.time() < deadline:
    for key, dummy in sel.select(timeout=1):
        conn, peer = key.fileobj.accept()
        conn.sendall(("%s %s\n" % (tag, peer[0])).encode()); conn.close()
'''

CLIENT = r'''
import socket, sys
try:
    conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    conn.settimeout(float(sys.argv[3]))
    print(conn.recv(100).decode().strip())
except OSError as exc:
    print("unreachable: %s" % exc)
'''


def start_listener(ns, tag, ports):
    """A listener in ``ns`` on ``ports``, ready when this returns; stop it with stop()."""
    proc = subprocess.Popen(['ip', 'netns', 'exec', ns, sys.executable, '-c', LISTENER, tag]
                            + [str(port) for port in ports], stdout=subprocess.PIPE, text=True, env=harness.ENV)
    line = proc.stdout.readline().strip()
    if line != 'ready':
        stop(proc)
        raise AssertionError('listener in %s did not start: %r' % (ns, line))
    return proc


def stop(proc):
    proc.kill()
    proc.wait()


def connect(ns, address, port, timeout=1.5):
    """What a client in ``ns`` gets from address:port: "<tag> <peer>" or "unreachable: ..."."""
    proc = subprocess.run(['ip', 'netns', 'exec', ns, sys.executable, '-c', CLIENT, address, str(port), str(timeout)],
                          capture_output=True, text=True, env=harness.ENV, timeout=30, check=False)
    return proc.stdout.strip()
