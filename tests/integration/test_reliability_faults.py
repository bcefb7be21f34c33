# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults inside one module call (issue 6): a failure half-way leaves nothing of that call
behind; the xtables lock held by another process makes our call wait, then succeed; two
calls at the same time end with no duplicate rule.

Half-way failures are provoked with kernel state that validation cannot see (and should
not try to): a name taken as an interface *altname*, IPv6 disabled in the peer namespace,
a directory where a namespace file would go, an onlink route over a link that is down."""
import fcntl
import os
import threading
import time

import pytest

from tests.support import harness
from tests.support import role_lab


@pytest.fixture
def pair(netns):
    """Two namespaces with nothing in them yet but lo, settled."""
    a, b = netns('fa'), netns('fb')
    role_lab.settled_snapshot([a, b])
    return a, b


def assert_failed_and_unchanged(result, before, watched, *expected):
    after = role_lab.settled_snapshot(watched)
    assert result.get('failed') and result['_rc'] != 0, result
    for text in expected:
        assert text in result['msg'], result['msg']
    assert 'everything this call had created was removed' in result['msg'], result['msg']
    assert after == before


def test_veth_second_pair_cannot_be_created(pair):
    """Three pairs; the third's peer name is taken by an altname of lo in the peer namespace
    (invisible to a by-name link lookup): the kernel refuses it after two pairs exist."""
    a, b = pair
    harness.sh(['ip', '-n', b, 'link', 'property', 'add', 'dev', 'lo', 'altname', 'taken0'])
    before = role_lab.settled_snapshot([a, b])
    result = harness.run_module('veth', {'namespace': a, 'pairs': [
        {'name': 'p1a', 'peer': 'p1b', 'peer_namespace': b, 'addresses': ['10.74.1.1/24']},
        {'name': 'p2a', 'peer': 'p2b', 'peer_namespace': b, 'addresses': ['10.74.2.1/24']},
        {'name': 'p3a', 'peer': 'taken0', 'peer_namespace': b}]})
    assert_failed_and_unchanged(result, before, [a, b], 'creating p3a@%s <-> taken0@%s' % (a, b), 'EEXIST')


def test_veth_configuration_fails_after_the_pairs_exist(pair):
    """IPv6 is disabled in the peer namespace: both pairs get created, then adding the
    second peer's IPv6 address fails; both pairs must be gone again."""
    a, b = pair
    harness.nsexec(b, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'])
    before = role_lab.settled_snapshot([a, b])
    result = harness.run_module('veth', {'namespace': a, 'pairs': [
        {'name': 'q1a', 'peer': 'q1b', 'peer_namespace': b, 'addresses': ['10.74.3.1/24']},
        {'name': 'q2a', 'peer': 'q2b', 'peer_namespace': b, 'peer_addresses': ['fd45:74::2/64']}]})
    assert_failed_and_unchanged(result, before, [a, b], 'fd45:74::2/64', 'q2b@%s' % b)


def test_netns_second_namespace_cannot_be_created(netns):
    """A directory sits where the second namespace's file would go: the first namespace,
    already created by then, is removed again (no namespace, no placeholder file)."""
    first, second = netns('fn', create=False), netns('fn', create=False)
    os.mkdir('/run/netns/' + second)
    try:
        before = harness.snapshot_own([first])
        result = harness.run_module('netns', {'namespaces': [{'name': first}, {'name': second}]})
        assert result.get('failed') and result['_rc'] != 0, result
        assert second in result['msg'] and 'everything this call had created was removed' in result['msg']
        assert not os.path.lexists('/run/netns/' + first)
        assert harness.snapshot_own([first]) == before
    finally:
        os.rmdir('/run/netns/' + second)


def test_netns_route_third_route_rejected_by_the_kernel(pair):
    """Two routes are added, the third (onlink over a link that is down) is refused by the
    kernel: the first two are removed again."""
    a, b = pair
    harness.sh(['ip', '-n', a, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'p0', 'netns', b])
    harness.sh(['ip', '-n', a, 'link', 'add', 'v1', 'type', 'veth', 'peer', 'name', 'p1', 'netns', b])
    harness.sh(['ip', '-n', a, 'addr', 'add', '10.75.0.1/24', 'dev', 'v0'])
    harness.sh(['ip', '-n', b, 'addr', 'add', '10.75.0.2/24', 'dev', 'p0'])
    for ns, ifname in ((a, 'v0'), (b, 'p0')):
        harness.sh(['ip', '-n', ns, 'link', 'set', ifname, 'up'])
    before = role_lab.settled_snapshot([a, b])
    result = harness.run_module('netns_route', {'routes': [
        {'namespace': a, 'dest': '10.76.0.0/24', 'gateway': '10.75.0.2'},
        {'namespace': a, 'dest': '10.76.1.0/24', 'gateway': '10.75.0.2'},
        {'namespace': a, 'dest': '10.77.0.0/24', 'gateway': '10.78.0.1', 'device': 'v1', 'onlink': True}]})
    assert_failed_and_unchanged(result, before, [a, b], 'routes[2]', '10.77.0.0/24')


# --- the xtables lock -------------------------------------------------------------------------

def legacy_namespace(netns):
    """A namespace whose rules are in iptables-legacy (a foreign one), so that nat_rule writes
    there with iptables-legacy-restore -w, which takes the xtables lock (iptables-nft and
    nft do not use that lock at all)."""
    ns = netns('fx')
    harness.nsexec(ns, ['iptables-legacy', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.79.0.0/16',
                        '-j', 'MASQUERADE'])
    return ns


RULES = [{'kind': 'masquerade', 'source': '10.80.%d.0/24' % i, 'out_interface': 'eth0'} for i in range(2)] + [
    {'kind': 'dnat', 'protocol': 'tcp', 'port': 8080, 'to_address': '10.80.0.2', 'to_port': 80}]


def legacy_lines(ns):
    out = harness.nsexec(ns, ['iptables-legacy-save'])
    return [line for line in out.splitlines() if line.startswith('-A')]


def test_call_waits_for_the_xtables_lock_then_succeeds(netns, tmp_path, monkeypatch):
    """Another process holds the xtables lock: our iptables-restore waits for it instead of
    failing, and the rules land once it is free. The lock is iptables' own mechanism at a
    private path (XTABLES_LOCKFILE, which iptables honours), because /run/xtables.lock is
    shared by every namespace of the machine and this test holds it for several seconds;
    the assertions that the call was blocked while it was held prove the path is used."""
    ns = legacy_namespace(netns)
    lockfile = str(tmp_path / 'xtables.lock')
    monkeypatch.setitem(harness.ENV, 'XTABLES_LOCKFILE', lockfile)
    results = []
    fd = os.open(lockfile, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: results.append(
            harness.run_module('nat_rule', {'namespace': ns, 'rules': RULES})))
        worker.start()
        blocked = harness.wait_for(lambda: harness.legacy_restore_processes(ns, lockfile), timeout=60)
        time.sleep(1.0)
        still_running = worker.is_alive()
        untouched = legacy_lines(ns)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    worker.join(60)
    assert blocked, 'nat_rule never reached iptables-legacy-restore'
    assert still_running, 'the call finished while the lock was held'
    assert not any('lnt:' in line for line in untouched), untouched
    result = results[0]
    assert not result.get('failed'), result
    assert result['changed'] and result['backend'] == 'iptables'
    lines = legacy_lines(ns)
    assert len(jump_lines(lines)) == 4  # PREROUTING, OUTPUT, POSTROUTING, FORWARD
    assert any('10.80.0.0/24' in line and 'MASQUERADE' in line for line in lines)
    assert any('--to-destination 10.80.0.2:80' in line for line in lines)
    assert '-A POSTROUTING -s 10.79.0.0/16 -j MASQUERADE' in lines  # the foreign rule stays


def jump_lines(lines):
    return [line for line in lines if '"lnt:jump"' in line]


def test_two_calls_at_once_leave_no_duplicate_rule(netns, tmp_path, monkeypatch):
    """Two calls at once, the first made to wait on the (private) xtables lock in the middle
    of its write. Without a lock of the collection both would read the namespace before
    either writes, both block on the xtables lock, then both append the jumps to our
    chains (duplicates). The modules hold one lock across read-compare-write, so the second
    call reads only after the first wrote and changes nothing. The test waits at most 5 s
    for a second blocked writer, so it makes the writes overlap whenever they can."""
    ns = legacy_namespace(netns)
    lockfile = str(tmp_path / 'xtables.lock')
    monkeypatch.setitem(harness.ENV, 'XTABLES_LOCKFILE', lockfile)
    results = []
    fd = os.open(lockfile, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        workers = [threading.Thread(target=lambda: results.append(
            harness.run_module('nat_rule', {'namespace': ns, 'rules': RULES}))) for dummy in range(2)]
        for worker in workers:
            worker.start()
        assert harness.wait_for(lambda: harness.legacy_restore_processes(ns, lockfile), timeout=60), 'no call reached the lock'
        harness.wait_for(lambda: len(harness.legacy_restore_processes(ns, lockfile)) >= 2, timeout=5)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    for worker in workers:
        worker.join(60)
    assert [r.get('failed') for r in results] == [None, None], results
    lines = legacy_lines(ns)
    jumps = jump_lines(lines)
    assert len(jumps) == len(set(jumps)) == 4, jumps  # PREROUTING, OUTPUT, POSTROUTING, FORWARD
    ours = [line for line in lines if 'lnt:' in line]
    assert len(ours) == len(set(ours)), ours
    assert sorted(r['changed'] for r in results) == [False, True]
