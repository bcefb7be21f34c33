# SPDX-License-Identifier: GPL-3.0-or-later
"""veth writes many netlink requests per datagram and deletes many pairs with one group
delete: a request failing in the middle of a batch must still leave nothing of the call
behind (also what the kernel did for the requests after it), and a teardown must delete
exactly the pairs named."""
import json
import time

from tests.support import harness
from tests.support import role_lab


def pairs(b, count):
    return [{'name': 'p%da' % number, 'peer': 'p%db' % number, 'peer_namespace': b,
             'addresses': ['10.81.%d.1/24' % number], 'peer_addresses': ['10.81.%d.2/24' % number]}
            for number in range(1, count + 1)]


def wait_for_carrier(ends, timeout=5.0):
    """The kernel reports a new carrier up to a second late (linkwatch); a snapshot taken
    before would differ from one taken after any later netlink change."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all('NO-CARRIER' not in harness.links(ns)[ifname]['flags'] for ns, ifname in ends):
            return
        time.sleep(0.1)
    raise AssertionError('no carrier on %s' % (ends,))


def assert_rolled_back(result, before, watched, *expected):
    assert result.get('failed') and result['_rc'] != 0, result
    for text in expected:
        assert text in result['msg'], result['msg']
    assert 'everything this call had created was removed' in result['msg'], result['msg']
    assert role_lab.settled_snapshot(watched) == before


def test_third_of_five_creations_fails_and_the_pairs_after_it_go_too(netns):
    """The third peer name is an altname of lo (invisible to a by-name lookup): the kernel
    refuses it and still creates pairs 4 and 5 of the same datagram; all four new pairs go."""
    a, b = netns('ba'), netns('bb')
    harness.sh(['ip', '-n', b, 'link', 'property', 'add', 'dev', 'lo', 'altname', 'p3b'])
    before = role_lab.settled_snapshot([a, b])
    result = harness.run_module('veth', {'namespace': a, 'pairs': pairs(b, 5)})
    assert_rolled_back(result, before, [a, b], 'creating p3a@%s <-> p3b@%s' % (a, b), 'EEXIST')


def test_third_of_five_addresses_fails_and_everything_added_goes(netns):
    """Pair 1 exists already and gets an address; pairs 2-5 are new. New links in ``a`` have
    IPv6 off, so the third pair's IPv6 address is refused while the addresses of pairs 4
    and 5 in the same datagram are added: the new pairs and pair 1's new address go, pair 1
    stays as it was."""
    a, b = netns('ba'), netns('bb')
    harness.sh(['ip', '-n', a, 'link', 'add', 'p1a', 'type', 'veth', 'peer', 'name', 'p1b', 'netns', b])
    harness.sh(['ip', '-n', b, 'link', 'set', 'p1b', 'up'])
    harness.sh(['ip', '-n', a, 'link', 'set', 'p1a', 'up'])
    harness.nsexec(a, ['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1'])
    wait_for_carrier([(a, 'p1a'), (b, 'p1b')])
    before = role_lab.settled_snapshot([a, b])
    items = pairs(b, 5)
    items[2]['addresses'].append('fd45:81::1/64')
    result = harness.run_module('veth', {'namespace': a, 'pairs': items})
    assert_rolled_back(result, before, [a, b], 'adding fd45:81::1/64 to p3a@%s' % a)
    assert sorted(harness.links(a)) == ['lo', 'p1a'] and sorted(harness.links(b)) == ['lo', 'p1b']


def test_teardown_deletes_exactly_the_named_pairs_at_once(netns):
    a, b = netns('ba'), netns('bb')
    created = harness.run_module('veth', {'namespace': a, 'pairs': pairs(b, 6) + [
        {'name': 'x1', 'peer': 'x2', 'addresses': ['10.82.0.1/24']}]})
    assert created['changed'] and not created.get('failed'), created
    # Not named in the teardown: an unrelated veth in a group of its own, and a bridge.
    harness.sh(['ip', '-n', a, 'link', 'add', 'keep1', 'group', '7', 'type', 'veth', 'peer', 'name', 'keep2'])
    harness.sh(['ip', '-n', a, 'link', 'add', 'br-keep', 'type', 'bridge'])
    absent = [{'name': 'p%da' % number} for number in range(1, 6)] + [{'name': 'x1'}, {'name': 'nothere'}]
    preview = harness.run_module('veth', {'namespace': a, 'state': 'absent', 'pairs': absent}, check=True)
    assert preview['changed'] and sorted(harness.links(a)) == sorted(
        ['lo', 'br-keep', 'keep1', 'keep2', 'x1', 'x2'] + ['p%da' % n for n in range(1, 7)])

    result = harness.run_module('veth', {'namespace': a, 'state': 'absent', 'pairs': absent})
    assert result['changed'] and not result.get('failed'), result
    assert sorted(harness.links(a)) == ['br-keep', 'keep1', 'keep2', 'lo', 'p6a']
    assert sorted(harness.links(b)) == ['lo', 'p6b']
    groups = dict((link['ifname'], link['group']) for link in json.loads(harness.sh(['ip', '-n', a, '-j', 'link'])))
    assert groups['keep1'] == '7' and groups['p6a'] == groups['br-keep'] == 'default'
    assert [p['changed'] for p in result['pairs']] == [True] * 6 + [False]
    again = harness.run_module('veth', {'namespace': a, 'state': 'absent', 'pairs': absent})
    assert not again['changed'] and not again.get('failed'), again
