# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's measurement of the path packets take through a NAT host (make lab SCENARIO=nodeport).

Run inside the NAT host's network namespace (site.yml runs it on node1 through the
linuxnet.netns.netns connection plugin); it opens ONE new TCP connection from a client
namespace to ADDRESS:PORT, sends an HTTP GET, reads the answer, and has the kernel trace
every packet of exactly that connection through the NAT host's netfilter hooks:

    python3 nat_path.py --client-netns lnlab-client --address 172.31.0.1 --port 30080

How: the client's socket is bound first, so its source port is known; a table of the lab's
own (inet lnlab_nat_path, deleted again before the script ends) sets the nftrace bit on the
packets whose conntrack original tuple is that connection, in both directions, at priority
-150 (after conntrack, before DNAT); `nft monitor trace` reports each chain a traced packet
goes through and each rule that matched it. That works for the rules of both backends of
linuxnet.netns.nat_rule (nftables, and iptables on the nf_tables kernel API: iptables-nft).

Prints one JSON document: the connection, the answer, every packet with the chains it went
through (hook, chain type, table, chain, the rules that matched and their verdicts), counts
per chain, and the route the NAT host chose for the translated destination. Nothing in the
NAT host stays changed: only the lab's trace table is added, and it is deleted again.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import re
import select
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whoami import enter_namespace  # noqa: E402  pylint: disable=wrong-import-position

TABLE = 'lnlab_nat_path'
READY_PORT = 9  # discard: the readiness probe's datagrams to 127.0.0.1 are traced, then dropped by the kernel
TRACE_RE = re.compile(r'^trace id (\S+) (\S+) (\S+) (\S+) (packet: |rule |verdict |policy )(.*)$')
COMMENT_RE = re.compile(r'\s*(?:comment "(?:[^"\\]|\\.)*"|counter packets [0-9]+ bytes [0-9]+)')
TCP_FLAGS = (('fin', 0x01), ('syn', 0x02), ('rst', 0x04), ('psh', 0x08), ('ack', 0x10))


def nft(script):
    proc = subprocess.Popen(['nft', '-f', '-'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(script.encode())
    if proc.returncode != 0:
        raise RuntimeError('nft -f failed: %s' % err.decode(errors='replace').strip())
    return out


def read_json(argv):
    return json.loads(subprocess.check_output(argv).decode() or 'null')


class Client(object):
    """A child process in the client namespace: bind (port known), wait for go, connect, GET."""

    def __init__(self, netns, address, port, timeout):
        self.to_child_r, self.to_child_w = os.pipe()
        self.from_child_r, self.from_child_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            try:
                os.close(self.to_child_w)
                os.close(self.from_child_r)
                self._child(netns, address, port, timeout)
            finally:
                os._exit(0)
        os.close(self.to_child_r)
        os.close(self.from_child_w)
        self.buffer = b''
        first = json.loads(self._line(timeout))
        if 'sport' not in first:
            self.close()
            raise RuntimeError('the client could not start: %s' % first.get('error'))
        self.sport = int(first['sport'])

    def _child(self, netns, address, port, timeout):
        def report(document):
            os.write(self.from_child_w, json.dumps(document).encode() + b'\n')
        try:
            enter_namespace(netns)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(('0.0.0.0', 0))
            report({'sport': sock.getsockname()[1]})
            if os.read(self.to_child_r, 1) != b'g':
                return  # the parent gave up before the measurement started
            sock.settimeout(timeout)
            sock.connect((address, port))
            local = sock.getsockname()
            sock.sendall(('GET / HTTP/1.0\r\nHost: %s:%d\r\n\r\n' % (address, port)).encode())
            data = b''
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            sock.close()
            body = data.split(b'\r\n\r\n', 1)[-1].decode(errors='replace')
            try:
                answer = json.loads(body)
            except ValueError:
                answer = {'raw': body}
            report({'ok': True, 'local': '%s:%d' % local, 'answer': answer})
        except Exception as exc:  # reported to the parent, which fails with it
            report({'ok': False, 'error': str(exc)})

    def _line(self, timeout):
        deadline = time.time() + timeout
        while b'\n' not in self.buffer:
            left = deadline - time.time()
            ready = select.select([self.from_child_r], [], [], max(left, 0))[0]
            if not ready:
                raise RuntimeError('the client did not answer within %.1f s' % timeout)
            chunk = os.read(self.from_child_r, 65536)
            if not chunk:
                raise RuntimeError('the client ended without answering')
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b'\n', 1)
        return line.decode()

    def run(self, timeout):
        os.write(self.to_child_w, b'g')
        result = json.loads(self._line(timeout))
        os.waitpid(self.pid, 0)
        return result

    def close(self):
        for fd in (self.to_child_w, self.from_child_r):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.waitpid(self.pid, os.WNOHANG)
        except OSError:
            pass


class Monitor(object):
    """`nft monitor trace`, read as it prints."""

    def __init__(self):
        self.proc = subprocess.Popen(['nft', 'monitor', 'trace'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.text = b''

    def read(self, seconds):
        """Read what arrives within ``seconds``; True when something did."""
        got = False
        deadline = time.time() + seconds
        while True:
            left = deadline - time.time()
            if left <= 0:
                return got
            ready = select.select([self.proc.stdout], [], [], left)[0]
            if not ready:
                return got
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return got
            self.text += chunk
            got = True

    def wait_ready(self, timeout):
        """Send datagrams to 127.0.0.1:9 (traced by our table) until the monitor reports one."""
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            deadline = time.time() + timeout
            while time.time() < deadline:
                probe.sendto(b'ready?', ('127.0.0.1', READY_PORT))
                self.read(0.1)
                if b'udp dport %d' % READY_PORT in self.text:
                    return
            raise RuntimeError('nft monitor trace reported nothing within %.1f s' % timeout)
        finally:
            probe.close()

    def settle(self, quiet, timeout):
        """Keep reading until nothing arrived for ``quiet`` seconds (at most ``timeout``)."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.read(quiet):
            pass

    def stop(self):
        self.proc.terminate()
        rest = self.proc.communicate()[0]
        self.text += rest or b''
        return self.text.decode(errors='replace')


def chain_kinds():
    """{(family, table, chain): (type, hook)} of the base chains of the ruleset."""
    kinds = {}
    listing = read_json(['nft', '-j', 'list', 'chains']) or {}
    for item in listing.get('nftables', []):
        chain = item.get('chain')
        if chain and chain.get('hook'):
            kinds[(chain['family'], chain['table'], chain['name'])] = (chain.get('type', 'filter'), chain['hook'])
    return kinds


def flags_text(fields):
    match = re.search(r'tcp flags == (\S+)', fields)
    if not match:
        return ''
    value = match.group(1)
    if value.startswith('0x'):
        bits = int(value, 16)
        return '|'.join(name.upper() for name, bit in TCP_FLAGS if bits & bit)
    return value.upper()


def field(fields, name):
    match = re.search(r'(?:^| )%s (\S+)' % re.escape(name), fields)
    return match.group(1).strip('"') if match else None


def parse(text, kinds, sport, own_table):
    """Packets (in the order they arrived) with the chains each went through."""
    packets = []
    current = {}  # trace id -> its packet (ids are reused by later packets)
    for line in text.splitlines():
        match = TRACE_RE.match(line.strip())
        if not match:
            continue
        trace_id, family, table, chain, what, rest = match.groups()
        what = what.strip().rstrip(':')
        if table == own_table:
            if what == 'packet':
                if 'udp dport %d' % READY_PORT in rest:  # the readiness probe
                    current.pop(trace_id, None)
                    continue
                packet = {
                    'n': len(packets) + 1, 'iif': field(rest, 'iif'),
                    'src': '%s:%s' % (field(rest, 'ip saddr'), field(rest, 'tcp sport')),
                    'dst': '%s:%s' % (field(rest, 'ip daddr'), field(rest, 'tcp dport')),
                    'flags': flags_text(rest), 'chains': []}
                packet['direction'] = 'original' if field(rest, 'tcp sport') == str(sport) else 'reply'
                packets.append(packet)
                current[trace_id] = packet
            continue
        packet = current.get(trace_id)
        if packet is None:
            continue
        entry = chain_entry(packet, kinds, family, table, chain, what == 'packet')
        if what == 'packet':
            entry.update(iif=field(rest, 'iif'), oif=field(rest, 'oif'),
                         src='%s:%s' % (field(rest, 'ip saddr'), field(rest, 'tcp sport')),
                         dst='%s:%s' % (field(rest, 'ip daddr'), field(rest, 'tcp dport')))
        elif what == 'rule':
            rule, dummy, verdict = rest.rpartition(' (verdict ')
            entry['rules'].append({'rule': COMMENT_RE.sub('', rule).strip(), 'verdict': verdict.rstrip(')').strip()})
        elif what == 'policy':
            entry['policy'] = rest.strip()
    return packets


def chain_entry(packet, kinds, family, table, chain, new):
    """The packet's entry for this chain: a base chain's evaluation starts with a "packet:"
    event (``new``); a chain jumped to has none and belongs to the hook of the chain that
    jumped; events after a jump returns belong to the chain that jumped."""
    key = (family, table, chain)
    if not new:
        for entry in reversed(packet['chains']):
            if (entry['family'], entry['table'], entry['chain']) == key:
                return entry
            if kinds.get((entry['family'], entry['table'], entry['chain'])):
                break  # not past the base chain that is being evaluated
    base = kinds.get(key)
    if base is None:
        base = (packet['chains'][-1]['type'], packet['chains'][-1]['hook']) if packet['chains'] else ('filter', '?')
    entry = {'family': family, 'table': table, 'chain': chain, 'type': base[0], 'hook': base[1],
             'ours': table == 'linuxnet_netns' or chain.startswith('LNT-'),
             'iif': None, 'oif': None, 'src': None, 'dst': None, 'rules': [], 'policy': None}
    packet['chains'].append(entry)
    return entry


def counts(packets):
    """How many of the packets went through each (hook, type, table chain), and through ours."""
    per_chain = {}
    for packet in packets:
        seen = set()
        for entry in packet['chains']:
            label = '%s %s %s %s' % (entry['hook'], entry['type'], '%s %s' % (entry['family'], entry['table']),
                                     entry['chain'])
            if label not in seen:
                seen.add(label)
                per_chain[label] = per_chain.get(label, 0) + 1

    def through(hook, kind):
        return sum(1 for packet in packets
                   if any(e['ours'] and e['hook'] == hook and e['type'] == kind for e in packet['chains']))

    def matched(hook, kind):
        return sum(1 for packet in packets
                   if any(e['ours'] and e['hook'] == hook and e['type'] == kind and e['rules'] for e in packet['chains']))

    return {
        'packets': len(packets),
        'original': sum(1 for p in packets if p['direction'] == 'original'),
        'reply': sum(1 for p in packets if p['direction'] == 'reply'),
        'per_chain': per_chain,
        'our_nat_prerouting': through('prerouting', 'nat'),
        'our_nat_prerouting_matched': matched('prerouting', 'nat'),
        'our_nat_postrouting': through('postrouting', 'nat'),
        'our_nat_postrouting_matched': matched('postrouting', 'nat'),
        'our_forward': through('forward', 'filter'),
        'our_forward_matched': matched('forward', 'filter'),
    }


def route_of(packets):
    """The NAT host's route for the first packet's translated destination, as `ip route get` says."""
    first = packets[0] if packets else None
    hop = [e for e in (first or {}).get('chains', []) if e['hook'] == 'forward']
    if not hop:
        return None
    destination = hop[0]['dst'].split(':')[0]
    argv = ['ip', '-j', 'route', 'get', destination, 'from', first['src'].split(':')[0], 'iif', first['iif']]
    try:
        route = (read_json(argv) or [{}])[0]
    except (subprocess.CalledProcessError, ValueError):
        return None
    text = destination + (' via %s' % route['gateway'] if route.get('gateway') else '') + ' dev %s' % route.get('dev')
    return {'destination': destination, 'gateway': route.get('gateway'), 'dev': route.get('dev'), 'text': text}


def measure(args):
    kinds = chain_kinds()
    client = Client(args.client_netns, args.address, args.port, args.timeout)
    monitor = None
    try:
        nft('add table inet %s\ndelete table inet %s\n' % (TABLE, TABLE))  # a stale one from an aborted run
        nft('\n'.join([
            'table inet %s {' % TABLE,
            '  chain trace {',
            '    type filter hook prerouting priority -150; policy accept;',
            '    meta l4proto udp ip daddr 127.0.0.1 udp dport %d meta nftrace set 1' % READY_PORT,
            '    meta l4proto tcp ct original proto-src %d ct original ip daddr %s ct original proto-dst %d'
            ' meta nftrace set 1' % (client.sport, args.address, args.port),
            '  }',
            '}', '']))
        monitor = Monitor()
        monitor.wait_ready(args.timeout)
        result = client.run(args.timeout)
        monitor.settle(0.4, args.timeout)
        text = monitor.stop()
        monitor = None
    finally:
        client.close()
        if monitor is not None:
            monitor.stop()
        nft('add table inet %s\ndelete table inet %s\n' % (TABLE, TABLE))
    if not result.get('ok'):
        raise RuntimeError('the connection failed: %s' % result.get('error'))
    packets = parse(text, kinds, client.sport, TABLE)
    return {
        'connection': {'client': result['local'], 'target': '%s:%d' % (args.address, args.port)},
        'answer': result['answer'],
        'packets': packets,
        'counts': counts(packets),
        'route': route_of(packets),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--client-netns', required=True, help='namespace (under /run/netns) the client runs in')
    parser.add_argument('--address', required=True, help='address of this host the client connects to')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--timeout', type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        document = measure(args)
    except Exception as exc:  # one line for the playbook's error message
        print('nat_path: %s' % exc, file=sys.stderr)
        return 1
    print(json.dumps(document, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
