# SPDX-License-Identifier: GPL-3.0-or-later
"""The veth module against the real kernel. Both ends of every pair live in namespaces
the test made (``netns`` fixture); iproute2's view (ip -j) is the independent oracle."""
import json
import subprocess
import sys
import time

import pytest

from tests.support import harness


def ip_json(ns, args):
    out = harness.sh(['ip', '-n', ns, '-j'] + list(args), check=False).strip()
    return json.loads(out or '[]')


def peer_of(ns, ifname):
    """(peer name, peer namespace) of veth ``ifname`` in ``ns``, as iproute2 sees it."""
    info = ip_json(ns, ['link', 'show', 'dev', ifname])[0]
    if 'link_netnsid' not in info:
        return info['link'], ns
    names = dict((entry['nsid'], entry.get('name')) for entry in ip_json(ns, ['netns', 'list-id']))
    peer_ns = names[info['link_netnsid']]
    peers = [link['ifname'] for link in ip_json(peer_ns, ['link', 'show']) if link['ifindex'] == info['link_index']]
    return peers[0], peer_ns


def global_addresses(ns, ifname):
    """Addresses of ifname without the kernel's IPv6 link-local ones."""
    return [a for a in harness.addresses(ns).get(ifname, []) if not a.startswith('fe80:')]


def is_up(ns, ifname):
    return 'UP' in harness.links(ns)[ifname]['flags']


def mtu(ns, ifname):
    return harness.links(ns)[ifname]['mtu']


def snapshot(names):
    """Links, addresses, routes, sysctls and rulesets of ``names`` plus this run's
    namespace list (other test runs may add theirs meanwhile)."""
    return harness.snapshot_own(names)


def article_args(a, b, **extra):
    args = {'namespace': a, 'name': 'veth1', 'peer': 'veth2', 'peer_namespace': b,
            'addresses': ['10.45.0.2/24', 'fd42:45::2/64'], 'peer_addresses': ['10.45.0.3/24', 'fd42:45::3/64']}
    args.update(extra)
    return args


def test_create_then_unchanged_with_diff(run, netns):
    a, b = netns(), netns()
    result = run('veth', article_args(a, b, mtu=1400), diff=True)
    assert result['_rc'] == 0 and result['changed'], result
    line = ('veth1@%s <-> veth2@%s mtu=1400 up addresses=[10.45.0.2/24, fd42:45::2/64] '
            'peer_addresses=[10.45.0.3/24, fd42:45::3/64]' % (a, b))
    assert result['diff']['before'] == ''
    assert result['diff']['after'] == line + '\n'
    assert result['commands'][0] == ('ip -n %s link add veth1 up mtu 1400 type veth peer name veth2 mtu 1400 '
                                     'netns %s' % (a, b))
    assert 'ip -n %s addr add fd42:45::3/64 dev veth2 nodad' % b in result['commands']
    assert result['pairs'][0]['before'] is None and result['pairs'][0]['after']['peer_namespace'] == b

    assert peer_of(a, 'veth1') == ('veth2', b)
    assert global_addresses(a, 'veth1') == ['10.45.0.2/24', 'fd42:45::2/64']
    assert global_addresses(b, 'veth2') == ['10.45.0.3/24', 'fd42:45::3/64']
    assert mtu(a, 'veth1') == mtu(b, 'veth2') == 1400
    assert is_up(a, 'veth1') and is_up(b, 'veth2')

    again = run('veth', article_args(a, b, mtu=1400), diff=True)
    assert again['_rc'] == 0 and not again['changed'], again
    assert again['commands'] == []
    assert again['diff']['before'] == again['diff']['after'] == line + '\n'


def test_ipv6_is_usable_at_once(run, netns):
    """No DAD wait: a TCP connection over IPv6 right after the module returns."""
    a, b = netns(), netns()
    assert run('veth', article_args(a, b))['changed']
    server = subprocess.Popen(
        ['ip', 'netns', 'exec', b, sys.executable, '-c',
         'import socket\n'
         's = socket.socket(socket.AF_INET6)\n'
         "s.bind(('fd42:45::3', 18080))\n"  # fails with EADDRNOTAVAIL while the address is tentative
         's.listen(1)\n'
         "print('listening', flush=True)\n"
         'c, _ = s.accept()\n'
         "c.sendall(b'hello over ipv6')\n"
         'c.close()\n'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == 'listening', server.stderr.read()
        client = harness.nsexec(a, [sys.executable, '-c',
                                    'import socket\n'
                                    "c = socket.create_connection(('fd42:45::3', 18080), timeout=5)\n"
                                    "print(c.recv(100).decode())\n"])
        assert client.strip() == 'hello over ipv6'
    finally:
        server.kill()
        server.wait()


def test_check_mode_changes_nothing(run, netns):
    a, b = netns(), netns()
    before = snapshot([a, b])
    result = run('veth', article_args(a, b), check=True, diff=True)
    assert result['_rc'] == 0 and result['changed'], result
    assert 'veth1@%s <-> veth2@%s' % (a, b) in result['diff']['after']
    assert snapshot([a, b]) == before

    assert run('veth', article_args(a, b))['changed']
    harness.sh(['ip', '-n', b, 'addr', 'del', '10.45.0.3/24', 'dev', 'veth2'])
    drifted = snapshot([a, b])
    check = run('veth', article_args(a, b), check=True)
    assert check['changed'] and check['commands'] == ['ip -n %s addr add 10.45.0.3/24 dev veth2' % b]
    assert snapshot([a, b]) == drifted


def test_check_mode_accepts_a_namespace_that_does_not_exist_yet(run, netns):
    a, future = netns(), netns(create=False)
    result = run('veth', article_args(a, future), check=True)
    assert result['_rc'] == 0 and result['changed'], result
    assert 'peer_namespace: namespace %s does not exist' % future in str(result.get('warnings'))
    assert future not in harness.list_netns()
    assert 'veth1' not in harness.links(a)


def test_absent_deletes_both_ends(run, netns):
    a, b = netns(), netns()
    assert run('veth', article_args(a, b))['changed']
    result = run('veth', {'namespace': a, 'name': 'veth1', 'peer': 'veth2', 'peer_namespace': b, 'state': 'absent'},
                 diff=True)
    assert result['_rc'] == 0 and result['changed'], result
    assert result['commands'] == ['ip -n %s link del veth1' % a]
    assert result['diff']['before'].startswith('veth1@%s <-> veth2@%s mtu=1500 up' % (a, b))
    assert result['diff']['after'] == ''
    assert 'veth1' not in harness.links(a) and 'veth2' not in harness.links(b)

    again = run('veth', {'namespace': a, 'name': 'veth1', 'state': 'absent'})
    assert again['_rc'] == 0 and not again['changed']


def test_drift_is_repaired(run, netns):
    a, b = netns(), netns()
    assert run('veth', article_args(a, b, mtu=1400))['changed']
    harness.sh(['ip', '-n', b, 'addr', 'del', 'fd42:45::3/64', 'dev', 'veth2'])
    harness.sh(['ip', '-n', a, 'link', 'set', 'veth1', 'mtu', '1300'])
    harness.sh(['ip', '-n', b, 'link', 'set', 'veth2', 'down'])

    result = run('veth', article_args(a, b, mtu=1400), diff=True)
    assert result['_rc'] == 0 and result['changed'], result
    assert result['commands'] == ['ip -n %s link set veth1 mtu 1400' % a,
                                  'ip -n %s link set veth2 up' % b,
                                  'ip -n %s addr add fd42:45::3/64 dev veth2 nodad' % b]
    assert 'mtu=1300/1400 up/down' in result['diff']['before']
    assert global_addresses(b, 'veth2') == ['10.45.0.3/24', 'fd42:45::3/64']
    assert mtu(a, 'veth1') == 1400 and is_up(b, 'veth2')
    assert not run('veth', article_args(a, b, mtu=1400))['changed']


def test_unlisted_addresses_kept_unless_purged(run, netns):
    a, b = netns(), netns()
    assert run('veth', article_args(a, b))['changed']
    harness.sh(['ip', '-n', a, 'addr', 'add', '10.77.0.9/32', 'dev', 'veth1'])

    kept = run('veth', article_args(a, b))
    assert not kept['changed'] and '10.77.0.9/32' in global_addresses(a, 'veth1')

    purged = run('veth', article_args(a, b, purge_addresses=True))
    assert purged['changed'] and purged['commands'] == ['ip -n %s addr del 10.77.0.9/32 dev veth1' % a]
    assert global_addresses(a, 'veth1') == ['10.45.0.2/24', 'fd42:45::2/64']
    # The kernel's link-local address is never purged.
    assert any(addr.startswith('fe80:') for addr in harness.addresses(a)['veth1'])


@pytest.mark.parametrize('change, field', [
    ({'name': 'veth-name-too-long'}, 'name'),
    ({'peer_namespace': 'bad/name'}, 'peer_namespace'),
    ({'peer_addresses': ['10.45.0.3/33']}, 'peer_addresses[0]'),
    ({'addresses': ['not-an-address/24']}, 'addresses[0]'),
    ({'peer_namespace': 'MISSING'}, 'peer_namespace'),
])
def test_bad_input_fails_naming_the_field_and_changes_nothing(run, netns, change, field):
    a, b = netns(), netns()
    missing = netns(create=False)
    change = dict((k, missing if v == 'MISSING' else v) for k, v in change.items())
    before = snapshot([a, b, missing])
    result = run('veth', article_args(a, b, **change))
    assert result['_rc'] == 1 and result['failed'], result
    assert result['field'] == field
    assert result['msg'].startswith('invalid input: %s=' % field)
    assert snapshot([a, b, missing]) == before


def test_conflict_in_second_pair_fails_before_creating_the_first(run, netns):
    host, t1, t2 = netns(), netns(), netns()
    harness.sh(['ip', '-n', t2, 'link', 'add', 'eth0', 'type', 'bridge'])
    before = snapshot([host, t1, t2])
    result = run('veth', {'namespace': host, 'pairs': [
        {'name': 'to-t1', 'peer': 'eth0', 'peer_namespace': t1, 'addresses': ['10.1.0.1/24']},
        {'name': 'to-t2', 'peer': 'eth0', 'peer_namespace': t2, 'addresses': ['10.2.0.1/24']},
    ]})
    assert result['_rc'] == 1 and result['failed'], result
    assert result['conflicts'] == ['pairs[1].name: to-t2@%s does not exist but the peer name eth0@%s is taken by '
                                   'a bridge' % (host, t2)]
    assert 'recreate: true' in result['msg']
    assert snapshot([host, t1, t2]) == before


def test_failure_half_way_rolls_back_created_pairs(run, netns):
    host, t1, t2 = netns(), netns(), netns()
    # IPv6 is off for new interfaces in t2, so adding an IPv6 address there fails at apply time.
    harness.nsexec(t2, ['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1'])
    before = snapshot([host, t1, t2])
    result = run('veth', {'namespace': host, 'pairs': [
        {'name': 'to-t1', 'peer': 'eth0', 'peer_namespace': t1, 'addresses': ['10.1.0.1/24'],
         'peer_addresses': ['10.1.0.2/24']},
        {'name': 'to-t2', 'peer': 'eth0', 'peer_namespace': t2, 'peer_addresses': ['fd42:2::2/64']},
    ]})
    assert result['_rc'] == 1 and result['failed'], result
    assert 'adding fd42:2::2/64 to eth0@%s' % t2 in result['msg']
    assert 'everything this call had created was removed' in result['msg']
    assert snapshot([host, t1, t2]) == before
    assert 'to-t1' not in harness.links(host) and 'eth0' not in harness.links(t1)


def test_wrong_peer_is_reported_and_fixed_only_with_recreate(run, netns):
    a, b, c = netns(), netns(), netns()
    harness.sh(['ip', '-n', a, 'link', 'add', 'veth1', 'type', 'veth', 'peer', 'name', 'veth2', 'netns', b])
    before = snapshot([a, b, c])

    wrong_ns = run('veth', article_args(a, c))
    assert wrong_ns['_rc'] == 1, wrong_ns
    assert wrong_ns['conflicts'] == ['name: veth1@%s exists but its peer is veth2@%s, not veth2@%s' % (a, b, c)]
    wrong_name = run('veth', article_args(a, b, peer='veth3'))
    assert wrong_name['conflicts'] == ['name: veth1@%s exists but its peer is veth2@%s, not veth3@%s' % (a, b, b)]
    assert snapshot([a, b, c]) == before

    fixed = run('veth', article_args(a, c, recreate=True), diff=True)
    assert fixed['_rc'] == 0 and fixed['changed'], fixed
    assert fixed['commands'][0] == 'ip -n %s link del veth1' % a
    assert fixed['diff']['before'].startswith('veth1@%s <-> veth2@%s' % (a, b))
    assert peer_of(a, 'veth1') == ('veth2', c)
    assert 'veth2' not in harness.links(b)
    assert not run('veth', article_args(a, c))['changed']


def test_name_taken_by_a_bridge(run, netns):
    a, b = netns(), netns()
    harness.sh(['ip', '-n', a, 'link', 'add', 'veth1', 'type', 'bridge'])
    refused = run('veth', article_args(a, b))
    assert refused['_rc'] == 1
    assert refused['conflicts'] == ['name: veth1@%s exists and is a bridge, not a veth' % a]
    assert harness.links(a)['veth1']['flags']  # still there
    absent = run('veth', {'namespace': a, 'name': 'veth1', 'state': 'absent'})
    assert absent['_rc'] == 1 and 'refusing to delete it' in absent['msg']

    replaced = run('veth', article_args(a, b, recreate=True))
    assert replaced['_rc'] == 0 and replaced['changed'], replaced
    assert peer_of(a, 'veth1') == ('veth2', b)


def test_both_ends_in_one_namespace(run, netns):
    a = netns()
    args = {'namespace': a, 'name': 'left', 'peer': 'right', 'addresses': ['10.9.0.1/30'],
            'peer_addresses': ['10.9.0.2/30'], 'up': False}
    result = run('veth', args, diff=True)
    assert result['_rc'] == 0 and result['changed'], result
    assert result['diff']['after'] == ('left@%s <-> right@%s mtu=1500 down addresses=[10.9.0.1/30] '
                                       'peer_addresses=[10.9.0.2/30]\n' % (a, a))
    assert peer_of(a, 'left') == ('right', a)
    assert not is_up(a, 'left') and not is_up(a, 'right')
    assert not run('veth', args)['changed']


def test_ends_in_the_modules_own_namespace(run, netns, tmp_path):
    own, other = netns(), netns()
    python = harness.python_in_namespace(own, tmp_path)
    # namespace omitted: the first end goes where the module runs.
    result = run('veth', {'name': 'up0', 'peer': 'down0', 'peer_namespace': other,
                          'addresses': ['10.8.0.1/24']}, python=python)
    assert result['_rc'] == 0 and result['changed'], result
    assert result['commands'][0] == 'ip link add up0 up type veth peer name down0 netns %s' % other
    assert peer_of(own, 'up0') == ('down0', other)
    # The module's own namespace named explicitly is the same namespace: nothing to do.
    same = run('veth', {'namespace': own, 'name': 'up0', 'peer': 'down0', 'peer_namespace': other,
                        'addresses': ['10.8.0.1/24']}, python=python)
    assert same['_rc'] == 0 and not same['changed'], same
    # Only the peer in the module's namespace: created from there, the mirror image.
    mirrored = run('veth', {'namespace': other, 'name': 'x1', 'peer': 'x2', 'peer_namespace': own},
                   python=python)
    assert mirrored['_rc'] == 0 and mirrored['changed'], mirrored
    assert peer_of(other, 'x1') == ('x2', own)


def test_many_pairs_in_one_call(run, netns):
    host = netns()
    tenants = [netns(create=False) for dummy in range(40)]
    assert run('netns', {'namespaces': [{'name': t} for t in tenants]})['created'] == tenants
    pairs = [{'name': 'to%d' % i, 'peer': 'eth0', 'peer_namespace': t,
              'addresses': ['10.%d.%d.1/24' % (100 + i // 200, i % 200), 'fd42:%x::1/64' % i],
              'peer_addresses': ['10.%d.%d.2/24' % (100 + i // 200, i % 200), 'fd42:%x::2/64' % i]}
             for i, t in enumerate(tenants)]
    started = time.time()
    result = run('veth', {'namespace': host, 'pairs': pairs})
    elapsed = time.time() - started
    assert result['_rc'] == 0 and result['changed'], result
    assert len([c for c in result['commands'] if ' link add ' in c]) == 40
    assert peer_of(host, 'to39') == ('eth0', tenants[39])
    assert global_addresses(tenants[7], 'eth0') == ['10.100.7.2/24', 'fd42:7::2/64']
    assert elapsed < 15, elapsed
    again = run('veth', {'namespace': host, 'pairs': pairs})
    assert not again['changed'] and again['commands'] == []
    gone = run('veth', {'namespace': host, 'state': 'absent', 'pairs': [{'name': p['name']} for p in pairs]})
    assert gone['changed'] and not any(name.startswith('to') for name in harness.links(host))
