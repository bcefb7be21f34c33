# SPDX-License-Identifier: GPL-3.0-or-later
"""nat_rule's DNAT with several endpoints, run for real in namespaces with both backends.

    client  eth0 10.61.0.10/24, default via the router
    router  ext0 10.61.0.1/24; epa0 10.62.1.1/24; epb0 10.62.2.1/24 (the module's namespace)
    epa     eth0 10.62.1.10/24, default via the router; a listener on :80 answering "epa <peer>"
    epb     eth0 10.62.2.10/24, default via the router; a listener on :80 answering "epb <peer>"

The router publishes tcp :30080 on its own addresses with endpoints epa:80 and epb:80. Proven
by connections from the client: round robin gives each endpoint exactly half; check mode
changes nothing; the diff names every endpoint's line; a second run changes nothing; client-IP
affinity sends every connection to one endpoint and, on nftables, has its lnt_aff_ sets only
while it is on (on iptables, its recent lists); removing an endpoint deletes the conntrack
entries whose replies come from it (an established flow among them), keeps the other
endpoint's, and sends new flows to the one left; state=absent gives the router back exactly
as it was."""
import collections
import re
import subprocess
import sys

import pytest

from tests.support import harness
from tests.support import traffic

CLIENT, ROUTER = '10.61.0.10', '10.61.0.1'
ENDPOINTS = {'epa': ('10.62.1.1', '10.62.1.10', 'epa0'), 'epb': ('10.62.2.1', '10.62.2.10', 'epb0')}
PORT, TARGET_PORT = 30080, 80

# Answers each connection with "<tag> <peer>" and keeps it open until the peer closes it, so that
# a client that stays connected makes an ESTABLISHED conntrack entry. Exits by itself.
LISTENER = r'''
import selectors, socket, sys, time
sel = selectors.DefaultSelector()
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[2]))); server.listen(32); sel.register(server, selectors.EVENT_READ)
print("ready", flush=True)
deadline = time.time() + 90
while time.time() < deadline:
    for key, dummy in sel.select(timeout=1):
        if key.fileobj is server:
            conn, peer = server.accept()
            conn.sendall(("%s %s\n" % (sys.argv[1], peer[0])).encode())
            sel.register(conn, selectors.EVENT_READ)
        elif not key.fileobj.recv(100):
            sel.unregister(key.fileobj); key.fileobj.close()
'''

# Connects, prints what the endpoint answered, and stays connected until killed (at most 60 s).
HOLDER = r'''
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(conn.recv(100).decode().strip(), flush=True)
time.sleep(60)
'''


class Lab(object):
    def __init__(self):
        self.made, self.procs, self.ns = [], [], {}
        self.client = self.namespace('client', 'epc')
        self.router = self.namespace('router', 'epr')
        self.wire(self.router, 'ext0', ROUTER, self.client, CLIENT)
        harness.sh(['ip', '-n', self.client, 'route', 'add', 'default', 'via', ROUTER])
        for tag, (gateway, address, ifname) in sorted(ENDPOINTS.items()):
            ns = self.namespace(tag, tag)
            self.wire(self.router, ifname, gateway, ns, address)
            harness.sh(['ip', '-n', ns, 'route', 'add', 'default', 'via', gateway])
        harness.nsexec(self.router, ['sysctl', '-qw', 'net.ipv4.ip_forward=1'])
        for tag in ENDPOINTS:
            self.start([sys.executable, '-c', LISTENER, tag, str(TARGET_PORT)], self.ns[tag], expect='ready')

    def namespace(self, role, tag):
        self.ns[role] = harness.add_netns(tag, self.made)
        return self.ns[role]

    @staticmethod
    def wire(ns, ifname, address, peer_ns, peer_address):
        harness.wire(ns, ifname, address + '/24', peer_ns, 'eth0', peer_address + '/24')

    def start(self, argv, ns, expect=None):
        """A process in ``ns``; returns its first line of output (``expect``: required)."""
        proc = subprocess.Popen(['ip', 'netns', 'exec', ns] + argv, stdout=subprocess.PIPE, text=True,
                                env=harness.ENV)
        self.procs.append(proc)
        line = proc.stdout.readline().strip()
        if expect is not None and line != expect:
            raise AssertionError('%s in %s printed %r' % (argv[:3], ns, line))
        return line

    def hold(self):
        """A connection from the client that stays open: the tag of the endpoint it reached."""
        answer = self.start([sys.executable, '-c', HOLDER, ROUTER, str(PORT)], self.client)
        assert answer.split()[0] in ENDPOINTS, answer
        return answer.split()[0]

    def connect(self, count):
        """``count`` connections in turn from the client: how many each endpoint answered
        (``unreachable``: how many none did)."""
        answers = [traffic.connect(self.client, ROUTER, PORT) for dummy in range(count)]
        for answer in answers:
            # source_nat none: the endpoint sees the client itself
            assert answer.startswith('unreachable:') or answer.split() in (
                [tag, CLIENT] for tag in ENDPOINTS), answers
        return collections.Counter(answer.split()[0].rstrip(':') for answer in answers)

    def close(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for name in self.made:
            harness.delete_netns(name)


@pytest.fixture
def lab():
    built = Lab()
    try:
        yield built
    finally:
        built.close()


def endpoint(tag):
    return {'address': ENDPOINTS[tag][1], 'port': TARGET_PORT}


def args(lab, backend, tags=('epa', 'epb'), **extra):
    rule = dict(kind='dnat', protocol='tcp', port=PORT, endpoints=[endpoint(tag) for tag in tags],
                balance='round_robin', **extra)
    return dict(namespace=lab.router, backend=backend, rules=[rule])


def nat(options, check=False, diff=False):
    result = harness.run_module('nat_rule', options, check=check, diff=diff)
    assert result['_rc'] == 0 and not result.get('failed'), result
    assert result['backend'] == options['backend']
    return result


def our_table(lab):
    return harness.nsexec(lab.router, ['nft', 'list', 'table', 'inet', 'linuxnet_netns'], check=False)


def conntrack_entries(lab):
    result = harness.run_module('conntrack_info', dict(namespace=lab.router, protocol='tcp', dport=PORT))
    assert result['_rc'] == 0, result
    return result['entries']


def replies_from(entries, tag):
    return [entry for entry in entries if entry['reply']['src'] == ENDPOINTS[tag][1]]


def test_round_robin_check_mode_diff_idempotence_and_absent(lab, backend):
    pristine = harness.snapshot(lab.router)
    assert lab.connect(1) == {'unreachable': 1}, 'nothing listens on the router itself'
    options = args(lab, backend)

    planned = nat(options, check=True, diff=True)
    assert planned['changed'] is True and planned['rules_removed'] == []
    assert harness.snapshot(lab.router) == pristine, 'check mode changed the router'
    after = planned['diff']['after']
    for tag in ENDPOINTS:
        target = '%s:%d' % (ENDPOINTS[tag][1], TARGET_PORT)
        assert any(target in line and str(PORT) in line for line in after.splitlines()), after
        assert target not in planned['diff']['before']
    pick = '--mode nth --every 2' if backend == 'iptables' else 'numgen inc mod 2'
    assert len([line for line in after.splitlines() if pick in line]) == 2, after  # prerouting and output

    applied = nat(options, diff=True)
    assert applied['changed'] is True and applied['rules_added'] == planned['rules_added']
    assert all(line in applied['diff']['after'] for line in applied['rules_added'])
    again = nat(options)
    assert again['changed'] is False and again['rules_added'] == again['rules_removed'] == []

    assert lab.connect(8) == {'epa': 4, 'epb': 4}, 'round robin: exactly half each'

    removed = nat(dict(options, state='absent'))
    assert removed['changed'] is True and len(removed['rules_removed']) == len(applied['rules_added'])
    assert harness.snapshot(lab.router) == pristine, 'absent left something behind'
    assert lab.connect(1) == {'unreachable': 1}, 'the published port is gone'


def test_affinity_on_then_off(lab, backend):
    nat(args(lab, backend))
    on = args(lab, backend, affinity_timeout=30)
    switched = nat(on)
    assert switched['changed'] is True
    assert nat(on)['changed'] is False, 'the affinity lists are not made again'

    if backend == 'nftables':
        sets = re.findall(r'set (lnt_aff_4_30_[0-9a-f]{12}) \{', our_table(lab))
        assert len(set(sets)) == 2, our_table(lab)
    else:
        saved = harness.nsexec(lab.router, ['iptables-save', '-t', 'nat'])
        names = set(re.findall(r'--name (lnt_aff_4_30_[0-9a-f]{12})', saved))
        assert len(names) == 2, saved
        lists = harness.nsexec(lab.router, ['ls', '/proc/net/xt_recent']).split()
        assert names <= set(lists), lists
        sets = sorted(names)
    first = lab.connect(1)
    assert lab.connect(5) == {list(first)[0]: 5}, 'affinity: the client keeps its endpoint'

    off = nat(args(lab, backend))
    assert off['changed'] is True
    if backend == 'nftables':
        listing = our_table(lab)
        assert 'lnt_aff_' not in listing, listing  # the sets of the accepts (lnt_forward_...) stay
        assert '%s:%d' % (ENDPOINTS['epb'][1], TARGET_PORT) in listing, 'the rule itself stays'
    else:
        assert '-m recent' not in harness.nsexec(lab.router, ['iptables-save', '-t', 'nat'])
        lists = harness.nsexec(lab.router, ['ls', '/proc/net/xt_recent'], check=False).split()
        assert not set(sets) & set(lists), lists
    assert lab.connect(4) == {'epa': 2, 'epb': 2}, 'balanced again'


def test_removing_an_endpoint_deletes_its_conntrack_entries(lab, backend):
    nat(args(lab, backend))
    held = sorted([lab.hold(), lab.hold()])
    assert held == ['epa', 'epb'], 'round robin: one held connection on each endpoint'
    lab.connect(2)  # closed flows (TIME_WAIT) from both endpoints too
    before = conntrack_entries(lab)
    from_epb = replies_from(before, 'epb')
    assert any(entry['state'] == 'ESTABLISHED' for entry in from_epb), before
    kept = replies_from(before, 'epa')
    assert kept and len(from_epb) >= 2

    shrunk = nat(args(lab, backend, tags=('epa',)))
    assert shrunk['changed'] is True
    assert shrunk['conntrack_deleted'] == len(from_epb), (shrunk['conntrack_deleted'], from_epb)
    assert shrunk['namespaces'][0]['conntrack_deleted'] == len(from_epb)
    after = conntrack_entries(lab)
    assert replies_from(after, 'epb') == [], after
    assert len(replies_from(after, 'epa')) == len(kept), 'the remaining endpoint keeps its flows'
    assert any(entry['state'] == 'ESTABLISHED' for entry in replies_from(after, 'epa'))

    assert lab.connect(4) == {'epa': 4}, 'new flows go to the endpoint left'
    assert nat(args(lab, backend, tags=('epa',)))['conntrack_deleted'] == 0
