# SPDX-License-Identifier: GPL-3.0-or-later
"""conntrack_info and conntrack.delete_listed against real namespaces: the article's
SNAT and DNAT entries at host1, two inner namespaces behind one SNAT address pinging
with the same ICMP id at the same time, filters, exact deletion, and bad input.

The module_utils functions run in a subprocess with the module interpreter, so the
LNT_MODULE_PYTHON pass exercises them under pyroute2 0.7.2 too."""
import json
import os
import re
import subprocess
import sys

import pytest

from tests.support import harness, probe_lab
from tests.support.paths import COLLECTIONS_ROOT
from tests.support.probe_lab import HOST1, HOST1_INNER, HOST2, INNER2, MYSPACE, V6_A, V6_B

ICMP_ID = 1234


@pytest.fixture(scope='module')
def article():
    with probe_lab.built(probe_lab.article_lab) as lab:
        yield lab


@pytest.fixture
def host1(article):
    """The article lab with host1's conntrack table emptied first (tests share the lab)."""
    article.flush_conntrack(article.host1)
    return article


@pytest.fixture(scope='module')
def pair():
    with probe_lab.built(probe_lab.pair_lab) as lab:
        yield lab


def info(**args):
    result = harness.run_module('conntrack_info', args)
    assert result['_rc'] == 0, result
    assert result['changed'] is False and result['commands'] == []
    assert result['count'] == len(result['entries'])
    return result


def probe(**args):
    result = harness.run_module('netns_probe', args)
    assert result['_rc'] == 0 and result['reachable'], result
    return result


def conntrack_util(function, *args, **kwargs):
    """Call plugins/module_utils/conntrack.FUNCTION with the module interpreter."""
    code = ('import json, sys\n'
            'from ansible_collections.linuxnet.netns.plugins.module_utils import conntrack\n'
            'def delete_matching(namespace, family, **criteria):\n'  # what nat_rule's cleanup does
            '    family = conntrack.normalize_family(family)\n'
            '    matches = conntrack.compile_filter(family=family, **criteria)\n'
            '    return conntrack.delete_listed(namespace, [e for e in conntrack.list_entries(namespace, family)'
            ' if matches(e)])\n'
            'call = json.loads(sys.argv[1])\n'
            'function = delete_matching if call["f"] == "delete_matching" else getattr(conntrack, call["f"])\n'
            'print(json.dumps(function(*call["args"], **call["kwargs"])))\n')
    env = dict(harness.ENV, PYTHONPATH=COLLECTIONS_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([harness.MODULE_PYTHON or sys.executable, '-c', code,
                           json.dumps(dict(f=function, args=args, kwargs=kwargs))],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def without_timeouts(entries):
    """Entries compared across two reads: the timeout counts down, and a closing TCP
    flow may move on (FIN_WAIT -> TIME_WAIT)."""
    return [dict(e, timeout=None, state=None) for e in entries]


def cli_entries(namespace):
    """What the conntrack tool itself lists, as (proto, orig src, orig dst) lines."""
    out = harness.nsexec(namespace, ['conntrack', '-L'], check=False)
    return sorted(re.findall(r'^(\w+)\s+\d+\s+\d+\s.*?src=(\S+) dst=(\S+)', out, re.M))


# --- the article ---------------------------------------------------------------------

def test_icmp_entry_replies_to_host1_egress_address(host1):
    probe(namespace=host1.myspace, target=HOST2, protocol='icmp', icmp_id=ICMP_ID)
    result = info(namespace=host1.host1, protocol='icmp')
    assert result['count'] == 1, result['entries']
    entry = result['entries'][0]
    assert entry['family'] == 'ipv4' and entry['state'] is None
    assert entry['original'] == {'src': MYSPACE, 'dst': HOST2, 'id': ICMP_ID, 'type': 8, 'code': 0}
    # The reply goes to host1's egress address: that is the MASQUERADE.
    assert entry['reply'] == {'src': HOST2, 'dst': HOST1, 'id': ICMP_ID, 'type': 0, 'code': 0}
    assert {'SRC_NAT', 'SEEN_REPLY', 'CONFIRMED'} <= set(entry['status'])
    assert 'DST_NAT' not in entry['status']
    assert 0 < entry['timeout'] <= 30 and entry['mark'] == 0 and entry['zone'] == 0
    # The same flow as the conntrack tool sees it.
    assert cli_entries(host1.host1) == [('icmp', MYSPACE, HOST2)]
    # Read-only: check mode returns the same entries.
    checked = harness.run_module('conntrack_info', dict(namespace=host1.host1, protocol='icmp'), check=True)
    assert checked['_rc'] == 0 and checked['changed'] is False
    assert without_timeouts(checked['entries']) == without_timeouts(result['entries'])


def test_tcp_dnat_entry_reply_source_is_myspace_port_80(host1):
    seen = probe(namespace=host1.host2, target=HOST1, protocol='tcp', port=8080,
                 listener=dict(namespace=host1.myspace, port=80))
    client_port = seen['attempts'][0]['local']['port']
    result = info(namespace=host1.host1, protocol='tcp', dport=8080)
    assert result['count'] == 1, result['entries']
    entry = result['entries'][0]
    assert entry['original'] == {'src': HOST2, 'dst': HOST1, 'sport': client_port, 'dport': 8080}
    assert entry['reply'] == {'src': MYSPACE, 'dst': HOST2, 'sport': 80, 'dport': client_port}
    assert 'DST_NAT' in entry['status'] and 'SRC_NAT' not in entry['status']
    assert entry['state'] in ('ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE')
    by_reply = info(namespace=host1.host1, reply_src=MYSPACE, reply_sport=80)['entries']
    assert without_timeouts(by_reply) == without_timeouts([entry])


def test_nat_kind_address_port_and_protocol_filters(host1):
    udp = probe(namespace=host1.myspace, target=HOST2, protocol='udp', port=7101,
                listener=dict(namespace=host1.host2))                                    # SNAT
    probe(namespace=host1.host2, target=HOST1, protocol='tcp', port=8080,
          listener=dict(namespace=host1.myspace, port=80))                               # DNAT
    probe(namespace=host1.host2, target=HOST1, protocol='tcp', port=8081,
          listener=dict(namespace=host1.myspace, port=81))                               # both
    probe(namespace=host1.host1, target=HOST2, protocol='icmp')                          # no NAT
    everything = info(namespace=host1.host1)
    assert everything['count'] == everything['total'] == 4
    sport = udp['attempts'][0]['local']['port']

    def flows(**filters):
        entries = info(namespace=host1.host1, **filters)['entries']
        return sorted((e['protocol'], e['original'].get('dport')) for e in entries)

    assert flows(nat='snat') == [('tcp', 8081), ('udp', 7101)]
    assert flows(nat='dnat') == [('tcp', 8080), ('tcp', 8081)]
    assert flows(nat='none') == [('icmp', None)]
    both = info(namespace=host1.host1, nat='both')['entries']
    # DNAT to myspace:81 and, towards myspace, a MASQUERADE to host1's inner address.
    assert [(e['reply']['src'], e['reply']['sport'], e['reply']['dst']) for e in both] == [(MYSPACE, 81, HOST1_INNER)]
    # One call per kind of filter; unit tests cover the combinations (compile_filter).
    assert flows(protocol='udp') == [('udp', 7101)]
    assert flows(family='ipv6') == []
    assert flows(src='192.168.45.0/24', dst=HOST2) == [('udp', 7101)]
    assert flows(sport=sport, dport=7101) == [('udp', 7101)]
    assert flows(reply_dst=HOST1, reply_dport=sport) == [('udp', 7101)]
    assert flows(reply_src=MYSPACE, reply_sport=80) == [('tcp', 8080)]
    assert flows(protocol='icmp', dport=7101) == []  # port filters never match ICMP


def test_delete_listed_deletes_exactly_the_matching_ones(host1):
    for port, count in ((7201, 2), (7202, 1)):  # each attempt is a new socket: a new flow
        probe(namespace=host1.myspace, target=HOST2, protocol='udp', port=port, count=count,
              listener=dict(namespace=host1.host2))
    probe(namespace=host1.myspace, target=HOST2, protocol='icmp')
    probe(namespace=host1.host2, target=HOST1, protocol='tcp', port=8080, listener=dict(namespace=host1.myspace, port=80))
    before = info(namespace=host1.host1)['entries']
    assert len(before) == 5

    deleted = conntrack_util('delete_matching', host1.host1, 'ipv4', protocol='udp', dst=HOST2, dport=7201)
    assert deleted == 2
    kept = [e for e in before if not (e['protocol'] == 'udp' and e['original']['dport'] == 7201)]
    assert without_timeouts(info(namespace=host1.host1)['entries']) == without_timeouts(kept)
    # The DNAT flow, by its reply source (the translated target).
    assert conntrack_util('delete_matching', host1.host1, 'ipv4', protocol='tcp', reply_src=MYSPACE, reply_sport=80) == 1
    # Nothing left that matches: a second call deletes nothing.
    assert conntrack_util('delete_matching', host1.host1, 'ipv4', protocol='tcp', reply_src=MYSPACE, reply_sport=80) == 0
    remaining = sorted((e['protocol'], e['original'].get('dport')) for e in info(namespace=host1.host1)['entries'])
    assert remaining == [('icmp', None), ('udp', 7202)]
    assert sorted(line[0] for line in cli_entries(host1.host1)) == ['icmp', 'udp']


# --- several inner namespaces behind one SNAT address --------------------------------

def test_same_icmp_id_from_two_namespaces_is_told_apart_by_translated_id():
    with probe_lab.built(probe_lab.shared_snat_lab) as lab:
        results = probe_lab.ping_in_turn(lab.inner, HOST2, ICMP_ID, lab.host2)
        for result in results:
            assert result['_rc'] == 0 and (result['sent'], result['received']) == (3, 3), result

        entries = info(namespace=lab.host1, protocol='icmp')['entries']
        assert len(entries) == 2, entries
        assert sorted(e['original']['src'] for e in entries) == [MYSPACE, INNER2]
        assert all(e['original']['id'] == ICMP_ID and e['original']['dst'] == HOST2 for e in entries)
        # Both replies go to the one SNAT address; only the translated id tells them apart.
        assert all(e['reply']['dst'] == HOST1 and 'SRC_NAT' in e['status'] for e in entries)
        reply_ids = [e['reply']['id'] for e in entries]
        assert len(set(reply_ids)) == 2
        # Host2 saw exactly those translated ids, each namespace's echoes under one of them.
        by_src = dict((e['original']['src'], e['reply']['id']) for e in entries)
        for index, source in enumerate((MYSPACE, INNER2)):
            peers = results[index]['observed_peers']
            assert peers == [{'address': HOST1, 'port': None, 'id': by_src[source]}] * 3, peers

        deleted = conntrack_util('delete_matching', lab.host1, 'ipv4', protocol='icmp', dst=HOST2)
        assert deleted == 2
        assert info(namespace=lab.host1, protocol='icmp')['count'] == 0


# --- IPv6, empty tables, bad input ------------------------------------------------------

def test_ipv6_entries_and_family_filter(pair):
    pair.flush_conntrack(pair.b)
    seen = probe(namespace=pair.a, target=V6_B, protocol='udp', port=7301, listener=dict(namespace=pair.b))
    probe(namespace=pair.a, target=V6_B, protocol='icmp', icmp_id=ICMP_ID)
    probe(namespace=pair.a, target=HOST1, protocol='icmp')
    v6 = info(namespace=pair.b, family='ipv6')
    assert v6['total'] == 2 and sorted(e['protocol'] for e in v6['entries']) == ['icmpv6', 'udp']
    udp = info(namespace=pair.b, family='ipv6', protocol='udp', src='fd45:1::/64', dport=7301)['entries']
    assert udp[0]['original'] == {'src': V6_A, 'dst': V6_B, 'sport': seen['attempts'][0]['local']['port'], 'dport': 7301}
    icmp6 = info(namespace=pair.b, protocol='icmpv6')['entries'][0]
    assert icmp6['original']['id'] == ICMP_ID and icmp6['original']['type'] == 128
    assert icmp6['reply']['type'] == 129
    assert info(namespace=pair.b, family='ipv4')['count'] == 1
    assert conntrack_util('delete_matching', pair.b, 6, protocol='udp', dport=7301) == 1
    assert info(namespace=pair.b, family='ipv6')['total'] == 1


def test_namespace_without_conntrack_rule_is_empty_with_a_warning(pair):
    probe(namespace=pair.b, target=HOST2, protocol='icmp')  # traffic, but a has no conntrack rule
    result = info(namespace=pair.a)
    assert result['entries'] == [] and result['total'] == 0
    assert 'uses conntrack' in json.dumps(result.get('warnings'))


@pytest.mark.parametrize('args,field,fragment', [
    (dict(src='192.168.1.300'), 'src', 'not a valid CIDR'),
    (dict(reply_dst='nope'), 'reply_dst', 'not a valid CIDR'),
    (dict(dport=0), 'dport', 'from 1 to 65535'),
    (dict(reply_sport=70000), 'reply_sport', 'from 1 to 65535'),
    (dict(family='ipv4', dst=V6_B), 'dst', 'not an ipv4 address'),
    (dict(namespace='a/b'), 'namespace', 'single path component'),
])
def test_bad_input_fails_clearly(pair, args, field, fragment):
    args.setdefault('namespace', pair.b)
    result = harness.run_module('conntrack_info', args)
    assert result['_rc'] != 0 and result['failed'], result
    assert result['field'] == field and fragment in result['msg'], result


def test_missing_namespace_fails_and_creates_nothing():
    missing = harness.unique_name('nx')
    result = harness.run_module('conntrack_info', dict(namespace=missing))
    assert result['_rc'] != 0 and result['namespace'] == missing and 'does not exist' in result['msg']
    assert missing not in harness.list_netns()


def test_bad_choice_is_rejected_by_the_argument_spec(pair):
    result = harness.run_module('conntrack_info', dict(namespace=pair.b, nat='masquerade'))
    assert result['_rc'] != 0 and 'nat' in result['msg'] and 'masquerade' in result['msg']
