# SPDX-License-Identifier: GPL-3.0-or-later
"""netns_probe against real namespaces: ICMP/TCP/UDP reachability with round-trip times,
fast failure for closed ports, the one-shot listener's view of the peer address (the
article's tcpdump evidence behind MASQUERADE and through DNAT), IPv6, check mode, bad
input, and no listener process left behind."""
import re
import time

import pytest

from tests.support import harness, probe_lab
from tests.support.probe_lab import HOST1, HOST1_INNER, HOST2, MYSPACE, V6_A, V6_B


@pytest.fixture(scope='module')
def pair():
    with probe_lab.built(probe_lab.pair_lab) as lab:
        yield lab


@pytest.fixture(scope='module')
def article():
    with probe_lab.built(probe_lab.article_lab) as lab:
        yield lab


def probe(**args):
    return harness.run_module('netns_probe', args)


def assert_answered(result, count):
    assert result['_rc'] == 0, result
    assert result['changed'] is False
    assert result['reachable'] is True, result
    assert (result['sent'], result['received']) == (count, count), result
    rtt = result['rtt_ms']
    assert 0 < rtt['min'] <= rtt['avg'] <= rtt['max'] < 1000, rtt
    assert [a['seq'] for a in result['attempts']] == list(range(1, count + 1))
    assert all(a['ok'] and a['error'] is None and a['rtt_ms'] > 0 for a in result['attempts'])


def no_processes_in(namespace):
    """The listener child must be gone; poll briefly because the kernel reaps asynchronously."""
    from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import pids_by_namespace
    deadline = time.monotonic() + 2
    while pids_by_namespace()(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids_by_namespace()(namespace) == []


def state_of(namespaces):
    """harness.snapshot_many without nft packet counters, which the probe's own packets move,
    and with only this test run's namespaces (other test runs may be adding theirs)."""
    state = harness.snapshot_many(namespaces)
    state['_netns'] = [name for name in state['_netns'] if name.startswith(harness.PREFIX)
                       and not name[len(harness.PREFIX):][:1].isdigit()]
    for name in namespaces:
        rules = state[name]['rulesets']
        rules['nft'] = [re.sub(r'counter packets \d+ bytes \d+', 'counter', line) for line in rules['nft']]
    return state


# --- two namespaces on one veth ------------------------------------------------------------

@pytest.mark.parametrize('target', [HOST1, V6_B], ids=['ipv4', 'ipv6'])
def test_icmp_reachable_with_rtt(pair, target):
    result = probe(namespace=pair.a, target=target, protocol='icmp', count=3, timeout=2)
    assert_answered(result, 3)
    assert 'observed_peer' not in result


@pytest.mark.parametrize('target,source', [(HOST1, HOST2), (V6_B, V6_A)], ids=['ipv4', 'ipv6'])
@pytest.mark.parametrize('protocol', ['tcp', 'udp'])
def test_tcp_udp_reachable_and_listener_sees_the_client(pair, protocol, target, source):
    result = probe(namespace=pair.a, target=target, protocol=protocol, port=7001, count=2,
                   listener=dict(namespace=pair.b))
    assert_answered(result, 2)
    # Without NAT the listener sees exactly the client's own address and port.
    locals_ = [a['local'] for a in result['attempts']]
    assert all(local['address'] == source for local in locals_)
    assert result['observed_peers'] == locals_
    assert result['observed_peer'] == locals_[0]
    assert result['listener']['port'] == 7001 and result['listener']['namespace'] == pair.b
    assert no_processes_in(pair.b)


def test_icmp_listener_sees_the_echo_id(pair):
    result = probe(namespace=pair.a, target=HOST1, protocol='icmp', icmp_id=4321, count=2,
                   listener=dict(namespace=pair.b))
    assert_answered(result, 2)
    assert result['observed_peers'] == [{'address': HOST2, 'port': None, 'id': 4321}] * 2


@pytest.mark.parametrize('protocol', ['tcp', 'udp'])
@pytest.mark.parametrize('target', [HOST1, V6_B], ids=['ipv4', 'ipv6'])
def test_closed_port_is_unreachable_quickly(pair, protocol, target):
    started = time.monotonic()
    result = probe(namespace=pair.a, target=target, protocol=protocol, port=7999, timeout=30)
    elapsed = time.monotonic() - started
    assert result['_rc'] == 0, result
    assert result['reachable'] is False
    assert (result['sent'], result['received']) == (1, 0)
    assert result['rtt_ms'] == {'min': None, 'avg': None, 'max': None}
    assert 'refused' in result['attempts'][0]['error']
    # Well below the 30 s timeout, with room for a busy machine's module start-up.
    assert elapsed < 8, 'a closed port must fail at once, not after the timeout (%.1fs)' % elapsed


def test_unrouted_target_is_unreachable_quickly(pair):
    started = time.monotonic()
    result = probe(namespace=pair.a, target='192.168.45.9', protocol='icmp', timeout=30)
    assert time.monotonic() - started < 8
    assert result['reachable'] is False
    assert 'unreachable' in result['attempts'][0]['error'].lower()


def test_listener_on_other_port_is_stopped_when_the_probe_fails(pair):
    result = probe(namespace=pair.a, target=HOST1, protocol='tcp', port=7002, timeout=1,
                   listener=dict(namespace=pair.b, port=7003))
    assert result['_rc'] == 0, result
    assert result['reachable'] is False
    assert result['observed_peer'] is None and result['observed_peers'] == []
    assert no_processes_in(pair.b)


def test_listener_that_cannot_bind_fails_clearly(pair):
    # 192.168.1.15 is a's address, not b's: binding it in b fails.
    result = probe(namespace=pair.a, target=HOST1, protocol='udp', port=7004,
                   listener=dict(namespace=pair.b, address=HOST2))
    assert result['_rc'] != 0 and result['failed']
    assert 'listener' in result['msg'] and HOST2 in result['msg'] and 'ssign' in result['msg']
    assert no_processes_in(pair.b)


def test_check_mode_probes_and_changes_nothing(pair):
    before = state_of([pair.a, pair.b])
    result = harness.run_module('netns_probe', dict(namespace=pair.a, target=HOST1, protocol='udp', port=7005,
                                                    listener=dict(namespace=pair.b)), check=True)
    assert_answered(result, 1)
    assert result['observed_peer']['address'] == HOST2
    assert state_of([pair.a, pair.b]) == before


@pytest.mark.parametrize('args,field,fragment', [
    (dict(target='192.168.1.300'), 'target', 'not a valid'),
    (dict(target='fe80::1'), 'target', 'link-local'),
    (dict(target=HOST1, protocol='tcp', port=0), 'port', '1 to 65535'),
    (dict(target=HOST1, protocol='udp'), 'port', 'required'),
    (dict(target=HOST1, protocol='icmp', port=80), 'port', 'only used'),
    (dict(target=HOST1, count=0), 'count', 'from 1'),
    (dict(target=HOST1, timeout=0), 'timeout', 'seconds'),
    (dict(target=HOST1, icmp_id=70000), 'icmp_id', '65535'),
    (dict(target=HOST1, protocol='tcp', port=80, icmp_id=1), 'icmp_id', 'only used'),
    (dict(target=HOST1, protocol='tcp', port=80, listener=dict(namespace='x', protocol='udp')),
     'listener.protocol', 'same as protocol'),
    (dict(target=HOST1, protocol='tcp', port=80, listener=dict(namespace='x', address=V6_B)),
     'listener.address', 'mixes'),
    (dict(target=HOST1, namespace='../etc'), 'namespace', 'single path component'),
])
def test_bad_input_fails_before_sending(pair, args, field, fragment):
    args.setdefault('namespace', pair.a)
    result = probe(**args)
    assert result['_rc'] != 0 and result['failed'], result
    assert result['field'] == field, result
    assert fragment in result['msg'], result['msg']


def test_missing_namespace_fails_and_creates_nothing(pair):
    missing = harness.unique_name('nx')
    for args in (dict(namespace=missing, target=HOST1),
                 dict(namespace=pair.a, target=HOST1, listener=dict(namespace=missing))):
        result = probe(**args)
        assert result['_rc'] != 0 and result['namespace'] == missing, result
        assert 'does not exist' in result['msg']
    assert missing not in harness.list_netns()


# --- the article's topology -----------------------------------------------------------

def test_masquerade_listener_at_host2_sees_host1_address(article):
    """Article 2.1: with the MASQUERADE, host2 sees host1's eth0 address, not 192.168.45.3."""
    result = probe(namespace=article.myspace, target=HOST2, protocol='icmp', count=2,
                   listener=dict(namespace=article.host2))
    assert_answered(result, 2)
    assert [peer['address'] for peer in result['observed_peers']] == [HOST1, HOST1]

    result = probe(namespace=article.myspace, target=HOST2, protocol='udp', port=7010,
                   listener=dict(namespace=article.host2))
    assert_answered(result, 1)
    assert result['attempts'][0]['local']['address'] == MYSPACE
    assert result['observed_peer']['address'] == HOST1


def test_host2_cannot_reach_myspace_directly(article):
    """host2 has no route to the inner subnet: only the published port leads inside."""
    result = probe(namespace=article.host2, target=MYSPACE, protocol='icmp', timeout=0.5)
    assert result['reachable'] is False


def test_dnat_published_port_lands_on_myspace(article):
    result = probe(namespace=article.host2, target=HOST1, protocol='tcp', port=8080,
                   listener=dict(namespace=article.myspace, port=80))
    assert_answered(result, 1)
    # Plain DNAT keeps the client address: myspace sees host2 itself, same port.
    assert result['observed_peer'] == result['attempts'][0]['local']
    assert result['observed_peer']['address'] == HOST2
    assert no_processes_in(article.myspace)


def test_dnat_with_masquerade_towards_target_shows_host1_inner_address(article):
    result = probe(namespace=article.host2, target=HOST1, protocol='tcp', port=8081,
                   listener=dict(namespace=article.myspace, port=81))
    assert_answered(result, 1)
    assert result['observed_peer']['address'] == HOST1_INNER
