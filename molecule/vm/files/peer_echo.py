# SPDX-License-Identifier: GPL-3.0-or-later
"""Both ends of a TCP connection that reports the addresses each end saw, for the packet
checks of molecule/vm; run on the VMs as 'python3 -c <this file> ...' (nothing is copied).

  serve PORT LABEL TIMEOUT   listen on PORT, then return (printing {"listening": PORT}) while
                             a background child answers the first connection with one JSON
                             line {"label", "peer", "local"}: the peer's address as seen here
                             and the local address it reached; the child exits after that
                             connection or TIMEOUT seconds
  connect HOST PORT TIMEOUT  connect (again while refused or unreachable, for up to TIMEOUT
                             seconds) and print {"reply": <the server's line>, "local": ...}"""
import json
import os
import socket
import sys
import time


def serve(port, label, timeout):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(('0.0.0.0', port))
    server.listen(4)
    if os.fork():
        print(json.dumps({'label': label, 'listening': port}))
        return 0
    # the child: detached, so that the command that started it returns at once
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    server.settimeout(timeout)
    try:
        conn, peer = server.accept()
        with conn:
            answer = {'label': label, 'peer': peer[0], 'local': conn.getsockname()[0]}
            conn.sendall(json.dumps(answer).encode() + b'\n')
    finally:
        os._exit(0)


def connect(host, port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=10) as conn:
                local = conn.getsockname()[0]
                reply = json.loads(conn.makefile().readline())
            print(json.dumps({'reply': reply, 'local': local}))
            return 0
        except (OSError, ValueError) as error:
            if time.monotonic() > deadline:
                print(json.dumps({'error': str(error)}))
                return 1
            time.sleep(0.5)


if __name__ == '__main__':
    if sys.argv[1] == 'serve':
        sys.exit(serve(int(sys.argv[2]), sys.argv[3], float(sys.argv[4])))
    sys.exit(connect(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
