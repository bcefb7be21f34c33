# SPDX-License-Identifier: GPL-3.0-or-later
"""DNAT rules with several endpoints (nat_model, nat_nftables, nat_iptables): validation of
endpoints, balance, affinity_timeout, source_nat and isolate's allow_ports; the lines a rule
with endpoints expands to (a single endpoint is exactly the former to_address rule, tags
included); nft and iptables rendering of the pick and affinity matches; the affinity sets
plan_table adds and deletes; a real nft listing with sets; conntrack cleanup per endpoint;
and the default --mask of a listed recent match, which -D must not name."""
import ipaddress
import re

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables as ipt
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_conntrack as ct
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_model as m
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_nftables as nft
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError

WEB = dict(kind='dnat', protocol='tcp', port=8080, destination='192.168.1.32', to_address='192.168.45.3', to_port=80)
EPS3 = [{'address': '10.244.1.10', 'port': 8080}, {'address': '10.244.2.10', 'port': 8080},
        {'address': '10.244.3.10', 'port': 8080}]
NODEPORT = dict(kind='dnat', protocol='tcp', port=30080, endpoints=EPS3, hairpin=False, forward='none')
ISOLATE = dict(kind='isolate', destination='10.244.2.0/24', out_interface='vpod')
AFF_NAME = re.compile(r'^lnt_aff_([46])_([0-9]+)_[0-9a-f]{12}$')


def rule(**item):
    return m.parse_rule('', item)


def parsed(item):
    return m.parse_rule('', dict(item))


def rejected(item, field, reason, prefix='rules[2].'):
    with pytest.raises(ValidationError) as info:
        m.parse_rule(prefix, item)
    assert info.value.field == prefix + field, str(info.value)
    assert reason in info.value.reason, info.value.reason
    return info.value


def ep(address, port=None):
    return m.Target(ipaddress.ip_address(address), (port, port) if port else None)


def specs(item, chain=None):
    """iptables spec + target of each entry (the comment left out), optionally of one chain."""
    return [e.text.split(' -m comment')[0] + e.text.split('"')[-1] for e in ipt.iptables_entries([parsed(item)])
            if chain is None or e.chain == chain]


def exprs(item, chain=None):
    """The nft expression of each line (as a rule; nft_entries turns some into set elements)."""
    return [nft.nft_expr(line) for dummy_rid, line in m.ordered_lines([parsed(item)])
            if chain is None or line.chain == chain]


# --- validation ------------------------------------------------------------------------------

class TestParseEndpoints:
    def test_endpoints_parse_into_targets_with_their_ports(self):
        r = rule(kind='dnat', protocol='udp', port=53,
                 endpoints=[{'address': '10.0.0.1'}, {'address': '10.0.0.2', 'port': '5353'}])
        assert r.endpoints == (ep('10.0.0.1'), ep('10.0.0.2', 5353))
        assert (r.family, r.balance, r.affinity_timeout, r.source_nat) == (4, 'random', None, 'none')
        assert r.target_ports(r.endpoints[0]) == (53, 53) and r.target_ports(r.endpoints[1]) == (5353, 5353)
        assert r.to_address == ipaddress.ip_address('10.0.0.1'), 'the first endpoint stands for to_address'
        assert parsed(dict(NODEPORT, balance='round_robin', affinity_timeout='90')).affinity_timeout == 90

    def test_to_address_is_one_endpoint(self):
        r = parsed(WEB)
        assert r.endpoints == (ep('192.168.45.3', 80),)
        assert parsed(dict(WEB, to_port=None)).endpoints == (ep('192.168.45.3'),)

    def test_ipv6_endpoints(self):
        r = rule(kind='dnat', protocol='tcp', port=443, endpoints=[{'address': 'fd45::3'}, {'address': 'fd46::3'}])
        assert r.family == 6 and r.rule_ids() == ['dnat,p=tcp,d=local-ipv6,port=443']

    @pytest.mark.parametrize('item, field, reason', [
        (dict(NODEPORT, endpoints=[]), 'endpoints', 'must be a non-empty list of {address, port}'),
        (dict(NODEPORT, endpoints='10.0.0.1'), 'endpoints', 'must be a non-empty list'),
        (dict(NODEPORT, endpoints={'address': '10.0.0.1'}), 'endpoints', 'must be a non-empty list'),
        (dict(NODEPORT, endpoints=[{'port': 80}]), 'endpoints[0].address', 'each endpoint needs an address'),
        (dict(NODEPORT, endpoints=[{'address': '10.0.0.1'}, '10.0.0.2']), 'endpoints[1].address',
         'each endpoint needs an address'),
        (dict(NODEPORT, endpoints=[{'address': '10.0.0.1', 'weight': 2}]), 'endpoints[0].weight',
         'unknown key (allowed: address, port)'),
        (dict(NODEPORT, endpoints=[{'address': '10.0.0.1', 'port': 80}, {'address': '10.0.0.1', 'port': '80'}]),
         'endpoints[1].address', 'the same endpoint is listed twice'),
        (dict(NODEPORT, endpoints=[{'address': '10.0.0.1'}, {'address': '10.0.0.1'}]),
         'endpoints[1].address', 'the same endpoint is listed twice'),
        (dict(NODEPORT, port='30000-30010', endpoints=[{'address': '10.0.0.1', 'port': 80}]),
         'endpoints[0].port', 'cannot be combined with a port range (port=30000-30010)'),
        (dict(NODEPORT, endpoints=[{'address': '10.0.0.1', 'port': 0}]), 'endpoints[0].port', 'from 1 to 65535'),
        (dict(NODEPORT, endpoints=[{'address': '10.0.0.1', 'port': 65536}]), 'endpoints[0].port',
         'from 1 to 65535'),
        (dict(NODEPORT, endpoints=[{'address': '127.0.0.1'}]), 'endpoints[0].address', 'loopback'),
        (dict(NODEPORT, endpoints=[{'address': '10.0.0.1'}, {'address': '224.0.0.1'}]), 'endpoints[1].address',
         'must be a unicast address'),
        (dict(NODEPORT, endpoints=[{'address': '10.0.0.0/24'}]), 'endpoints[0].address', 'not a valid'),
        (dict(NODEPORT, to_address='10.0.0.9'), 'to_address', 'is mutually exclusive with endpoints'),
        (dict(NODEPORT, to_port=80), 'to_port', 'is mutually exclusive with endpoints'),
        (dict(WEB, balance='random'), 'balance', 'applies only with endpoints'),
        (dict(WEB, affinity_timeout=30), 'affinity_timeout', 'applies only with endpoints'),
        (dict(NODEPORT, balance='least_conn'), 'balance', 'must be one of random, round_robin'),
        (dict(NODEPORT, affinity_timeout=0), 'affinity_timeout', 'from 1 to 604800'),
        (dict(NODEPORT, affinity_timeout=604801), 'affinity_timeout', 'from 1 to 604800'),
        (dict(NODEPORT, affinity_timeout=-5), 'affinity_timeout', 'from 1 to 604800'),
        (dict(NODEPORT, affinity_timeout=True), 'affinity_timeout', 'from 1 to 604800'),
        (dict(NODEPORT, affinity_timeout='3h'), 'affinity_timeout', 'from 1 to 604800'),
        (dict(NODEPORT, source_nat='dnat'), 'source_nat', 'must be one of none, masquerade, snat'),
        (dict(NODEPORT, to_source='10.0.0.5'), 'to_source',
         'applies to a dnat only with source_nat=snat (source_nat is none)'),
        (dict(NODEPORT, source_nat='masquerade', to_source='10.0.0.5'), 'to_source',
         'applies to a dnat only with source_nat=snat (source_nat is masquerade)'),
        (dict(NODEPORT, source_nat='snat'), 'to_source', 'source_nat=snat needs to_source'),
        (dict(NODEPORT, source_nat='snat', to_source='127.0.0.1'), 'to_source', 'loopback'),
        (dict(kind='masquerade', source='10.0.0.0/8', out_interface='eth0', endpoints=EPS3), 'endpoints',
         'applies only to kind dnat (this rule is masquerade)'),
        (dict(kind='snat', source='10.0.0.0/8', to_source='10.1.1.1', balance='random'), 'balance',
         'applies only to kind dnat (this rule is snat)'),
        (dict(kind='masquerade', source='10.0.0.0/8', out_interface='eth0', affinity_timeout=30),
         'affinity_timeout', 'applies only to kind dnat'),
        (dict(kind='masquerade', source='10.0.0.0/8', out_interface='eth0', source_nat='snat'), 'source_nat',
         'applies only to kind dnat'),
        (dict(ISOLATE, endpoints=EPS3), 'endpoints', 'does not apply to kind isolate'),
        (dict(ISOLATE, source_nat='masquerade'), 'source_nat', 'does not apply to kind isolate'),
    ])
    def test_rejects_with_field_and_reason(self, item, field, reason):
        rejected(item, field, reason)

    @pytest.mark.parametrize('item', [
        dict(NODEPORT, endpoints=[{'address': '10.0.0.1'}, {'address': 'fd45::1'}]),
        dict(NODEPORT, destination='fd12::1', endpoints=[{'address': '10.0.0.1'}]),
        dict(NODEPORT, source_nat='snat', to_source='fd12::1'),
    ])
    def test_mixed_families_are_refused(self, item):
        with pytest.raises(ValidationError) as info:
            m.parse_rule('rules[2].', item)
        assert info.value.field.startswith('rules[2].') and 'mixes IPv4 and IPv6' in info.value.reason

    def test_a_family_mix_among_endpoints_names_the_endpoint(self):
        rejected(dict(NODEPORT, endpoints=[{'address': '10.0.0.1'}, {'address': 'fd45::1'}]),
                 'endpoints[1].address', 'mixes IPv4 and IPv6')

    def test_every_error_is_collected_with_its_rule_index(self):
        items = [('rules[0].', dict(NODEPORT, endpoints=[])), ('rules[1].', dict(NODEPORT, port=30081)),
                 ('rules[2].', dict(NODEPORT, port=30082, affinity_timeout=0))]
        with pytest.raises(m.ValidationErrors) as info:
            m.parse_rules(items)
        assert [e.field for e in info.value.errors] == ['rules[0].endpoints', 'rules[2].affinity_timeout']

    def test_absent_needs_no_endpoints(self):
        r = rule(kind='dnat', protocol='tcp', port=30080, state='absent')
        assert r.endpoints == () and ipt.iptables_entries([r]) == []

    def test_check_seconds(self):
        assert m.check_seconds('t', 1) == 1 and m.check_seconds('t', '604800') == 604800
        for bad in (0, 604801, True, False, None, 'x', [30]):
            with pytest.raises(ValidationError) as info:
                m.check_seconds('t', bad)
            assert info.value.field == 't' and 'from 1 to 604800' in info.value.reason


class TestAllowPorts:
    def test_parsed_with_defaults(self):
        allowed = [{'port': 80}, {'protocol': 'udp', 'port': '5000-5010', 'source': '192.168.1.0/24'}]
        r = parsed(dict(ISOLATE, allow_ports=allowed))
        assert r.allow_ports == (('tcp', (80, 80), None),
                                 ('udp', (5000, 5010), ipaddress.ip_network('192.168.1.0/24')))

    @pytest.mark.parametrize('item, field, reason', [
        (dict(ISOLATE, allow_ports='80'), 'allow_ports[0]', 'must be a dictionary with protocol, port and source'),
        (dict(ISOLATE, allow_ports=[80]), 'allow_ports[0]', 'must be a dictionary with protocol, port and source'),
        (dict(ISOLATE, allow_ports=[{'port': 80}, {'port': 81, 'sources': '10.0.0.0/8'}]), 'allow_ports[1].sources',
         'unknown key (allowed: protocol, port, source)'),
        (dict(ISOLATE, allow_ports=[{'port': 80, 'protocol': 'icmp'}]), 'allow_ports[0].protocol',
         'must be one of tcp, udp, sctp'),
        (dict(ISOLATE, allow_ports=[{'protocol': 'tcp'}]), 'allow_ports[0].port', 'the port (or "first-last")'),
        (dict(ISOLATE, allow_ports=[{'port': 0}]), 'allow_ports[0].port', 'from 1 to 65535'),
        (dict(ISOLATE, allow_ports=[{'port': '90-80'}]), 'allow_ports[0].port', 'must not exceed'),
        (dict(ISOLATE, allow_ports=[{'port': 80, 'source': 'fd00::/64'}]), 'allow_ports[0].source',
         'mixes IPv4 and IPv6'),
        (dict(ISOLATE, allow_ports=[{'port': 80, 'source': '10.0.0.1/8'}]), 'allow_ports[0].source', 'host bits'),
        (dict(WEB, allow_ports=[{'port': 80}]), 'allow_ports', 'applies only to kind isolate'),
        (dict(kind='masquerade', source='10.0.0.0/8', out_interface='eth0', allow_ports=[{'port': 80}]),
         'allow_ports', 'applies only to kind isolate'),
    ])
    def test_rejects_with_field_and_reason(self, item, field, reason):
        rejected(item, field, reason)

    def test_lines_accept_each_port_before_the_replies_and_the_drop(self):
        allowed = [{'port': 80}, {'protocol': 'udp', 'port': '5000-5010', 'source': '192.168.1.0/24'}]
        lines = specs(dict(ISOLATE, allow_ports=allowed))
        assert lines == [
            '-d 10.244.2.0/24 -o vpod -p tcp -m tcp --dport 80 -j ACCEPT',
            '-s 192.168.1.0/24 -d 10.244.2.0/24 -o vpod -p udp -m udp --dport 5000:5010 -j ACCEPT',
            '-d 10.244.2.0/24 -o vpod -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
            '-d 10.244.2.0/24 -o vpod -j DROP',
        ]
        assert exprs(dict(ISOLATE, allow_ports=[{'port': 80}]))[0] == \
            'ip daddr 10.244.2.0/24 oifname "vpod" tcp dport 80 accept'

    def test_allow_ports_are_not_part_of_the_identity(self):
        assert parsed(dict(ISOLATE, allow_ports=[{'port': 80}])).rule_ids() == parsed(ISOLATE).rule_ids()


# --- one endpoint is the former rule ------------------------------------------------------------

# The tags the former model (commit 90af83a, before endpoints) wrote for WEB, in entry order:
# rules already in a namespace must keep their tags, or every upgrade would rewrite them.
WEB_TAGS_BEFORE_ENDPOINTS = {
    'iptables': ['471b398e', 'bb6ab626', '407a3f66', '0af4f8d2', '0946783e'],
}


def entries_of(item, backend):
    render = ipt.iptables_entries if backend == 'iptables' else nft.nft_entries
    return [(e.family, e.table, e.chain, e.tag, e.text) for e in render([parsed(item)])]


class TestOneEndpoint:
    # nft: since 0.3.0 these lines are elements of sets and maps (a one-time rewrite on upgrade)
    @pytest.mark.parametrize('backend', ['iptables'])
    def test_the_tags_of_a_to_address_rule_did_not_change(self, backend):
        tags = [entry[3] for entry in entries_of(WEB, backend)]
        assert tags == ['lnt:dnat,p=tcp,d=192.168.1.32,port=8080 %s' % digest
                        for digest in WEB_TAGS_BEFORE_ENDPOINTS[backend]]

    @pytest.mark.parametrize('backend', ['iptables', 'nft'])
    @pytest.mark.parametrize('to_address_form, endpoints_form', [
        (WEB, dict(kind='dnat', protocol='tcp', port=8080, destination='192.168.1.32',
                   endpoints=[{'address': '192.168.45.3', 'port': 80}])),
        (dict(kind='dnat', protocol='tcp', port=8080, to_address='192.168.45.3', in_interface='eth0',
              out_interface='veth1'),
         dict(kind='dnat', protocol='tcp', port=8080, in_interface='eth0', out_interface='veth1',
              endpoints=[{'address': '192.168.45.3'}])),
        (dict(kind='dnat', protocol='udp', port='5000-5010', to_address='fd45::3'),
         dict(kind='dnat', protocol='udp', port='5000-5010', endpoints=[{'address': 'fd45::3'}])),
    ])
    def test_one_endpoint_renders_byte_identical_entries(self, backend, to_address_form, endpoints_form):
        old, new = entries_of(to_address_form, backend), entries_of(endpoints_form, backend)
        assert new == old and len(old) >= 3

    def test_one_endpoint_has_no_pick_and_balance_changes_nothing(self):
        one = dict(NODEPORT, endpoints=EPS3[:1])
        assert all('pick' not in line.matches for line in m.logical_lines(parsed(one)))
        assert entries_of(dict(one, balance='round_robin'), 'iptables') == entries_of(one, 'iptables')
        assert entries_of(dict(one, balance='round_robin'), 'nft') == entries_of(one, 'nft')


# --- several endpoints -----------------------------------------------------------------------------

class TestChoiceLines:
    def test_random_takes_one_in_k_of_what_reaches_each_line(self):
        r = parsed(NODEPORT)
        pre = [line for line in m.logical_lines(r) if line.chain == 'prerouting']
        assert [line.get('pick') for line in pre] == [('random', 3), ('random', 2), None]
        assert [str(line.to_addr) for line in pre] == ['10.244.1.10', '10.244.2.10', '10.244.3.10']
        base = '-p tcp -m tcp --dport 30080 -m addrtype --dst-type LOCAL '
        assert specs(NODEPORT, 'LNT-PREROUTING') == [
            base + '-m statistic --mode random --probability 0.3333333333 -j DNAT --to-destination 10.244.1.10:8080',
            base + '-m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.244.2.10:8080',
            base + '-j DNAT --to-destination 10.244.3.10:8080',
        ]

    def test_round_robin_takes_every_kth(self):
        base = '-p tcp -m tcp --dport 30080 -m addrtype --dst-type LOCAL '
        assert specs(dict(NODEPORT, balance='round_robin'), 'LNT-PREROUTING') == [
            base + '-m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 10.244.1.10:8080',
            base + '-m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.244.2.10:8080',
            base + '-j DNAT --to-destination 10.244.3.10:8080',
        ]

    def test_nft_numgen(self):
        assert exprs(NODEPORT, 'prerouting') == [
            'meta nfproto ipv4 fib daddr type local tcp dport 30080 numgen random mod 3 0 dnat ip to 10.244.1.10:8080',
            'meta nfproto ipv4 fib daddr type local tcp dport 30080 numgen random mod 2 0 dnat ip to 10.244.2.10:8080',
            'meta nfproto ipv4 fib daddr type local tcp dport 30080 dnat ip to 10.244.3.10:8080',
        ]
        assert [e.split(' numgen ')[1].split(' dnat')[0] for e in
                exprs(dict(NODEPORT, balance='round_robin'), 'prerouting')[:2]] == ['inc mod 3 0', 'inc mod 2 0']

    def test_every_chain_that_picks_picks_the_same_way(self):
        """Host-originated (output) and the endpoint reaching itself (in_interface) pick too."""
        r = parsed(dict(NODEPORT, hairpin=True, in_interface='eth0'))
        dnats = [line for line in m.logical_lines(r) if line.action == 'dnat']
        # prerouting from in_interface, prerouting from each endpoint itself, output
        assert len(dnats) == 3 + 3 * 3 + 3
        for start in range(0, len(dnats), 3):
            assert [line.get('pick') for line in dnats[start:start + 3]] == [('random', 3), ('random', 2), None]
        assert [str(line.get('src')) for line in dnats[3:12:3]] == ['10.244.1.10', '10.244.2.10', '10.244.3.10']
        hairpin = [line for line in m.logical_lines(r) if line.chain == 'postrouting']
        assert [(str(line.get('src')), str(line.get('dst')), line.action) for line in hairpin] == [
            ('10.244.1.10', '10.244.1.10', 'masquerade'), ('10.244.2.10', '10.244.2.10', 'masquerade'),
            ('10.244.3.10', '10.244.3.10', 'masquerade')]


def affinity_names(item):
    return [line.get('affinity')[0] for line in m.logical_lines(parsed(item))
            if line.chain == 'prerouting' and line.get('affinity') and line.get('affinity')[1] == 'remember']


class TestAffinity:
    AFF = dict(NODEPORT, affinity_timeout=30)

    def test_check_lines_first_then_remember_lines(self):
        pre = [line for line in m.logical_lines(parsed(self.AFF)) if line.chain == 'prerouting']
        assert [line.get('affinity')[1] for line in pre] == ['check'] * 3 + ['remember'] * 3
        assert [line.get('pick') for line in pre] == [None, None, None, ('random', 3), ('random', 2), None]
        # a check line and a remember line of one endpoint use that endpoint's list
        assert [(line.get('affinity')[0], str(line.to_addr)) for line in pre[:3]] == \
            [(line.get('affinity')[0], str(line.to_addr)) for line in pre[3:]]
        names = affinity_names(self.AFF)
        base = '-p tcp -m tcp --dport 30080 -m addrtype --dst-type LOCAL '
        lines = specs(self.AFF, 'LNT-PREROUTING')
        assert lines[0] == (base + '-m recent --update --seconds 30 --reap --name %s --rsource '
                                   '-j DNAT --to-destination 10.244.1.10:8080' % names[0])
        assert lines[3] == (base + '-m statistic --mode random --probability 0.3333333333 '
                                   '-m recent --set --name %s --rsource -j DNAT --to-destination 10.244.1.10:8080'
                            % names[0])
        assert lines[5] == base + '-m recent --set --name %s --rsource -j DNAT --to-destination 10.244.3.10:8080' \
            % names[2]

    def test_names_are_stable_and_differ_per_endpoint_timeout_and_rule(self):
        names = affinity_names(self.AFF)
        assert all(AFF_NAME.match(name).groups() == ('4', '30') for name in names)
        assert len(set(names)) == 3
        assert affinity_names(dict(self.AFF)) == names, 'the same rule gives the same names'
        assert affinity_names(dict(self.AFF, balance='round_robin')) == names
        assert affinity_names(dict(self.AFF, endpoints=EPS3[::-1])) == names[::-1], 'a name follows its endpoint'
        longer = affinity_names(dict(self.AFF, affinity_timeout=60))
        assert all(AFF_NAME.match(name).group(2) == '60' for name in longer) and not set(longer) & set(names)
        assert not set(affinity_names(dict(self.AFF, port=30081))) & set(names)
        moved = dict(self.AFF, endpoints=[dict(EPS3[0], port=8081)] + EPS3[1:])
        assert affinity_names(moved)[1:] == names[1:] and affinity_names(moved)[0] != names[0]
        v6 = affinity_names(dict(self.AFF, endpoints=[{'address': 'fd45::1'}, {'address': 'fd45::2'}]))
        assert all(AFF_NAME.match(name).group(1) == '6' for name in v6)

    def test_nft_checks_and_updates_the_set(self):
        names = affinity_names(self.AFF)
        pre = exprs(self.AFF, 'prerouting')
        # (nft lists these without the meta nfproto, which the saddr match implies; tags do not care)
        assert pre[0] == ('meta nfproto ipv4 fib daddr type local tcp dport 30080 ip saddr @{0} update @{0} '
                          '{{ ip saddr }} '
                          'dnat ip to 10.244.1.10:8080'.format(names[0]))
        assert pre[3] == ('meta nfproto ipv4 fib daddr type local tcp dport 30080 numgen random mod 3 0 '
                          'update @{0} {{ ip saddr }} dnat ip to 10.244.1.10:8080'.format(names[0]))
        v6 = dict(self.AFF, endpoints=[{'address': 'fd45::1'}, {'address': 'fd45::2'}])
        [name6] = affinity_names(v6)[:1]
        assert exprs(v6, 'prerouting')[0] == ('meta nfproto ipv6 fib daddr type local tcp dport 30080 ip6 saddr @{0} '
                                              'update @{0} '
                                              '{{ ip6 saddr }} dnat ip6 to fd45::1'.format(name6))

    def test_affinity_sets_of_the_entries(self):
        names = affinity_names(self.AFF)
        assert nft.affinity_sets(nft.nft_entries([parsed(self.AFF)])) == dict((name, (4, 30)) for name in names)
        assert nft.affinity_sets(nft.nft_entries([parsed(NODEPORT)])) == {}
        v6 = dict(self.AFF, affinity_timeout=600, endpoints=[{'address': 'fd45::1'}])
        assert list(nft.affinity_sets(nft.nft_entries([parsed(v6)])).values()) == [(6, 600)]

    def test_affinity_changes_the_lines_in_place(self):
        on, off = ipt.iptables_entries([parsed(self.AFF)]), ipt.iptables_entries([parsed(NODEPORT)])
        assert set(e.rule_id for e in on) == set(e.rule_id for e in off)
        keep, remove, add = m.plan_entries(on, off, {on[0].rule_id})
        assert len(remove) == 6 and len(add) == 3 and keep == []


class TestSourceNatOfDnat:
    def postrouting(self, item):
        return [line for line in m.logical_lines(parsed(item)) if line.chain == 'postrouting']

    def test_none_writes_no_source_nat(self):
        assert self.postrouting(NODEPORT) == []
        # hairpin masquerades only an endpoint reaching itself
        assert all(line.get('src') == line.get('dst') for line in self.postrouting(dict(NODEPORT, hairpin=True)))

    def test_masquerade_only_the_flows_this_rule_dnated_to_each_endpoint(self):
        lines = self.postrouting(dict(NODEPORT, source_nat='masquerade'))
        assert len(lines) == 3
        for line, endpoint in zip(lines, EPS3):
            assert line.action == 'masquerade' and str(line.get('dst')) == endpoint['address']
            assert line.get('ct_dnat') is True and line.get('ct_orig_dport') == (30080, 30080)
            assert line.get('dport') == (8080, 8080) and 'src' not in line.matches
        assert specs(dict(NODEPORT, source_nat='masquerade'), 'LNT-POSTROUTING')[0] == (
            '-d 10.244.1.10/32 -p tcp -m tcp --dport 8080 -m conntrack --ctstate DNAT --ctorigdstport 30080 '
            '-j MASQUERADE')

    def test_snat_with_a_published_address(self):
        item = dict(NODEPORT, destination='192.168.1.11', source_nat='snat', to_source='192.168.1.11')
        assert specs(item, 'LNT-POSTROUTING')[1] == (
            '-d 10.244.2.10/32 -p tcp -m tcp --dport 8080 -m conntrack --ctstate DNAT --ctorigdst 192.168.1.11 '
            '--ctorigdstport 30080 -j SNAT --to-source 192.168.1.11')
        assert exprs(item, 'postrouting')[1] == (
            'ip daddr 10.244.2.10 tcp dport 8080 ct status dnat ct original ip daddr 192.168.1.11 '
            'ct original proto-dst 30080 snat ip to 192.168.1.11')

    def test_an_endpoint_without_port_keeps_the_published_port(self):
        item = dict(NODEPORT, endpoints=[{'address': '10.244.1.10'}], source_nat='masquerade')
        assert specs(item, 'LNT-POSTROUTING') == [
            '-d 10.244.1.10/32 -p tcp -m tcp --dport 30080 -m conntrack --ctstate DNAT --ctorigdstport 30080 '
            '-j MASQUERADE']

    def test_every_source_nat_line_needs_dnat_state_and_the_original_port(self):
        for source_nat, extra in (('masquerade', {}), ('snat', {'to_source': '10.1.1.1'})):
            item = dict(NODEPORT, hairpin=True, source_nat=source_nat, **extra)
            translating = [line for line in self.postrouting(item) if line.get('src') != line.get('dst')]
            assert len(translating) == 3
            assert all(line.get('ct_dnat') and line.get('ct_orig_dport') == (30080, 30080) for line in translating)


class TestForwardLines:
    def test_two_accepts_per_endpoint(self):
        item = dict(NODEPORT, forward='scoped', out_interface='eth1')
        assert specs(item, 'LNT-FORWARD') == [
            line for address in ('10.244.1.10', '10.244.2.10', '10.244.3.10') for line in (
                '-d %s/32 -o eth1 -p tcp -m tcp --dport 8080 -m conntrack --ctstate DNAT --ctorigdstport 30080 '
                '-j ACCEPT' % address,
                '-s %s/32 -p tcp -m tcp --sport 8080 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT' % address)]

    def test_hairpin_accept_per_endpoint_with_in_interface(self):
        item = dict(NODEPORT, forward='scoped', hairpin=True, in_interface='eth0',
                    endpoints=[{'address': '10.244.1.10'}, {'address': '10.244.2.10', 'port': 80}])
        lines = [line for line in m.logical_lines(parsed(item)) if line.chain == 'forward']
        shown = [(str(line.get('src')), str(line.get('dst')), line.get('dport'), line.get('sport')) for line in lines]
        assert shown == [
            ('None', '10.244.1.10', (30080, 30080), None), ('10.244.1.10', 'None', None, (30080, 30080)),
            ('10.244.1.10', '10.244.1.10', (30080, 30080), None),
            ('None', '10.244.2.10', (80, 80), None), ('10.244.2.10', 'None', None, (80, 80)),
            ('10.244.2.10', '10.244.2.10', (80, 80), None)]

    def test_forward_none_and_both(self):
        assert specs(dict(NODEPORT, forward='none'), 'LNT-FORWARD') == []
        both = specs(dict(NODEPORT, forward='both', in_interface='eth0', out_interface='eth1'), 'LNT-FORWARD')
        assert both == ['-i eth0 -o eth1 -j ACCEPT', '-i eth1 -o eth0 -j ACCEPT']


# --- nftables: affinity sets in the plan and in a real listing ----------------------------------------

AFF_RULE = dict(kind='dnat', protocol='tcp', port=30080, balance='round_robin', affinity_timeout=30,
                source_nat='masquerade', hairpin=False, forward='none',
                endpoints=[{'address': '10.77.0.2', 'port': 80}, {'address': '10.77.0.3', 'port': 80}])
AFF_ID = 'dnat,p=tcp,d=local-ipv4,port=30080'
SET_A, SET_B = 'lnt_aff_4_30_23c998538133', 'lnt_aff_4_30_16116f7ef187'  # of 10.77.0.2:80 and 10.77.0.3:80
SNAT_SET = 'lnt_postrouting_533e92687dee'  # the source NAT of both endpoints' DNAT'ed flows

# What `nft -a list table inet linuxnet_netns` (nft 1.0.6) printed in a scratch namespace after
# the batch nat_nftables.plan_table made for AFF_RULE on an empty table, one client remembered
# with `nft add element` and a set of an administrator's own (admin_block) added to the table.
# The source NAT of the two endpoints is one set (lnt_postrouting_...) and the rule looking it up.
LISTING_WITH_SETS = """table inet linuxnet_netns { # handle 1
    set lnt_aff_4_30_16116f7ef187 { # handle 5
        type ipv4_addr
        size 65535
        flags dynamic,timeout
        timeout 30s
        elements = { 10.61.0.10 expires 29s992ms }
    }

    set lnt_aff_4_30_23c998538133 { # handle 6
        type ipv4_addr
        size 65535
        flags dynamic,timeout
        timeout 30s
    }

    set lnt_postrouting_533e92687dee { # handle 7
        type ipv4_addr . inet_service . inet_service
        elements = { 10.77.0.2 . 80 . 30080 @TAG@54adae8a",
                 10.77.0.3 . 80 . 30080 @TAG@10ea8cea" }
    }

    set admin_block { # handle 13
        type ipv4_addr
    }

    chain prerouting { # handle 1
        type nat hook prerouting priority dstnat; policy accept;
        @PUB@ ip saddr @lnt_aff_4_30_23c998538133 update @lnt_aff_4_30_23c998538133 { ip saddr } dnat ip to 10.77.0.2:80 @TAG@54eaa559" # handle 9
        @PUB@ ip saddr @lnt_aff_4_30_16116f7ef187 update @lnt_aff_4_30_16116f7ef187 { ip saddr } dnat ip to 10.77.0.3:80 @TAG@af41c1b3" # handle 10
        @PUB@ numgen inc mod 2 0 update @lnt_aff_4_30_23c998538133 { ip saddr } dnat ip to 10.77.0.2:80 @TAG@fac6586d" # handle 11
        @PUB@ update @lnt_aff_4_30_16116f7ef187 { ip saddr } dnat ip to 10.77.0.3:80 @TAG@573fcfb4" # handle 12
    }

    chain output { # handle 2
        type nat hook output priority -100; policy accept;
    }

    chain postrouting { # handle 3
        type nat hook postrouting priority srcnat; policy accept;
        ct status dnat ip daddr . tcp dport . ct original proto-dst @lnt_postrouting_533e92687dee masquerade @SET@ # handle 8
    }

    chain forward { # handle 4
        type filter hook forward priority filter; policy accept;
    }
}
""".replace('    ', '\t').replace(  # nft indents with tabs
    '@TAG@', 'comment \"lnt:dnat,p=tcp,d=local-ipv4,port=30080 ').replace('@PUB@', 'fib daddr type local tcp dport 30080').replace(
    '@SET@', 'comment "lnt-set lnt_postrouting_533e92687dee"')


def set_line(name, family=4, timeout=30):
    return 'add set inet linuxnet_netns %s { type %s; flags dynamic,timeout; timeout %ds; }' % (
        name, 'ipv4_addr' if family == 4 else 'ipv6_addr', timeout)


def first_index(lines, predicate):
    return min(index for index, line in enumerate(lines) if predicate(line))


class TestNftListingWithSets:
    def test_parse_listing_records_sets_and_only_rules_as_entries(self):
        table = nft.parse_listing(LISTING_WITH_SETS)
        assert table.sets == [SET_B, SET_A, SNAT_SET, 'admin_block']
        assert table.policies == {'prerouting': 'accept', 'output': 'accept', 'postrouting': 'accept',
                                  'forward': 'accept'}
        # the elements of our set are entries (no handle, no order); the rule looking it up is not
        assert [(e.chain, e.handle, e.unordered) for e in table.entries] == [(SNAT_SET, None, True)] * 2 + [
            ('prerouting', 9, False), ('prerouting', 10, False), ('prerouting', 11, False), ('prerouting', 12, False)]
        assert [e.slot[1] for e in table.entries[:2]] == ['10.77.0.2 . 80 . 30080', '10.77.0.3 . 80 . 30080']
        assert table.container_rules == {SNAT_SET: [('postrouting', 8)]} and table.container_order == [SNAT_SET]
        assert set(e.rule_id for e in table.entries) == {AFF_ID}
        assert not any('elements' in e.text or 'ipv4_addr' in e.text for e in table.entries)

    def test_the_names_our_model_gives_are_the_ones_nft_listed(self):
        assert affinity_names(AFF_RULE) == [SET_A, SET_B]
        listed = [e.tag for e in nft.parse_listing(LISTING_WITH_SETS).entries]
        assert sorted(listed) == sorted(e.tag for e in nft.nft_entries([parsed(AFF_RULE)]))

    def test_the_applied_listing_needs_nothing(self):
        table = nft.parse_listing(LISTING_WITH_SETS)
        keep, remove, add = m.plan_entries(table.entries, nft.nft_entries([parsed(AFF_RULE)]), {AFF_ID})
        assert (len(keep), remove, add) == (6, [], [])
        assert nft.plan_table(table, keep, remove, add) == [], 'no set added again, admin_block left alone'

    def test_affinity_off_deletes_our_sets_after_their_rules_and_never_a_foreign_set(self):
        table = nft.parse_listing(LISTING_WITH_SETS)
        off = dict(AFF_RULE)
        del off['affinity_timeout']
        keep, remove, add = m.plan_entries(table.entries, nft.nft_entries([parsed(off)]), {AFF_ID})
        [tx] = nft.plan_table(table, keep, remove, add)
        assert tx.lines[:6] == ['delete rule inet linuxnet_netns prerouting handle %d' % handle
                                for handle in (9, 10, 11, 12)] + [
            'delete set inet linuxnet_netns %s' % SET_B, 'delete set inet linuxnet_netns %s' % SET_A]
        assert [line.split(' comment ')[0] for line in tx.lines[6:]] == [
            'add rule inet linuxnet_netns prerouting meta nfproto ipv4 fib daddr type local tcp dport 30080 '
            'numgen inc mod 2 0 dnat ip to 10.77.0.2:80',
            'add rule inet linuxnet_netns prerouting meta nfproto ipv4 fib daddr type local tcp dport 30080 '
            'dnat ip to 10.77.0.3:80']
        assert not any('admin_block' in line for line in tx.lines)
        assert "nft 'delete set inet linuxnet_netns %s'" % SET_A in tx.commands

    def test_a_new_timeout_adds_new_sets_before_their_rules_and_deletes_the_old_ones(self):
        table = nft.parse_listing(LISTING_WITH_SETS)
        longer = dict(AFF_RULE, affinity_timeout=60)
        keep, remove, add = m.plan_entries(table.entries, nft.nft_entries([parsed(longer)]), {AFF_ID})
        [tx] = nft.plan_table(table, keep, remove, add)
        new_names = affinity_names(longer)
        wanted = sorted(set_line(n, timeout=60) for n in new_names)
        assert [line for line in tx.lines if line.startswith('add set')] == wanted
        for name in new_names:
            assert first_index(tx.lines, lambda line, n=name: line.startswith('add set') and n in line) < \
                first_index(tx.lines, lambda line, n=name: line.startswith('add rule') and '@' + n in line)
        deleted = [line for line in tx.lines if line.startswith('delete set')]
        assert deleted == ['delete set inet linuxnet_netns %s' % SET_B, 'delete set inet linuxnet_netns %s' % SET_A]
        assert first_index(tx.lines, lambda line: line.startswith('delete set')) > \
            max(index for index, line in enumerate(tx.lines) if line.startswith('delete rule'))
        assert len([line for line in tx.lines if line.startswith('delete rule')]) == 4, 'postrouting kept'

    def test_a_new_table_gets_the_sets_before_any_rule(self):
        [tx] = nft.plan_table(nft.NftTable(), [], [], nft.nft_entries([parsed(AFF_RULE)]))
        assert tx.lines[5:7] == [set_line(SET_B), set_line(SET_A)]
        assert tx.lines[7:9] == [
            'add set inet linuxnet_netns %s { type ipv4_addr . inet_service . inet_service; }' % SNAT_SET,
            'insert rule inet linuxnet_netns postrouting meta l4proto tcp ct status dnat ip daddr . tcp dport . '
            'ct original proto-dst @%s masquerade comment "lnt-set %s"' % (SNAT_SET, SNAT_SET)]
        assert all(line.startswith('add rule') for line in tx.lines[9:13])
        assert [line.split(' comment ')[0] for line in tx.lines[13:]] == [
            'add element inet linuxnet_netns %s { 10.77.0.2 . 80 . 30080' % SNAT_SET,
            'add element inet linuxnet_netns %s { 10.77.0.3 . 80 . 30080' % SNAT_SET]
        v6 = dict(AFF_RULE, affinity_timeout=90, endpoints=[{'address': 'fd77::2'}])
        [tx6] = nft.plan_table(nft.NftTable(), [], [], nft.nft_entries([parsed(v6)]))
        assert tx6.lines[5] == set_line(affinity_names(v6)[0], family=6, timeout=90)

    def test_sets_of_rules_this_call_does_not_manage_stay(self):
        other = dict(AFF_RULE, port=30081)
        current = nft.nft_entries([parsed(AFF_RULE), parsed(other)])
        for handle, entry in enumerate(current, start=20):
            entry.handle = handle
        table = nft.NftTable(exists=True, policies=dict((c[0], 'accept') for c in nft.CHAINS), entries=current,
                             sets=sorted(affinity_names(AFF_RULE) + affinity_names(other) + ['lnt_other', 'x', SNAT_SET]))
        table.container_rules, table.container_order = {SNAT_SET: [('postrouting', 40)]}, [SNAT_SET]
        off = dict(AFF_RULE)
        del off['affinity_timeout']
        keep, remove, add = m.plan_entries(current, nft.nft_entries([parsed(off)]), {AFF_ID})
        [tx] = nft.plan_table(table, keep, remove, add)
        deleted = sorted(line.split()[-1] for line in tx.lines if line.startswith('delete set'))
        assert deleted == sorted(affinity_names(AFF_RULE))
        assert not any(line.startswith('add set') for line in tx.lines)

    def test_an_unused_set_of_ours_is_deleted_even_without_rule_changes(self):
        table = nft.parse_listing(LISTING_WITH_SETS)
        table.sets.append('lnt_aff_4_99_0123456789ab')
        [tx] = nft.plan_table(table, table.entries, [], [])
        assert tx.lines == ['delete set inet linuxnet_netns lnt_aff_4_99_0123456789ab']


# --- conntrack cleanup per endpoint ------------------------------------------------------------------

UDP = dict(kind='dnat', protocol='udp', port=5353, hairpin=False, forward='none',
           endpoints=[{'address': '10.244.1.10'}, {'address': '10.244.2.10'}])
UDP_ID = 'dnat,p=udp,d=local-ipv4,port=5353'


def change(old_item, new_item, render=ipt.iptables_entries):
    """The cleanups of replacing ``old_item`` (as applied) with ``new_item``."""
    new = [parsed(new_item)] if new_item else []
    current = render([parsed(old_item)]) if old_item else []
    ids = set([UDP_ID, 'dnat,p=tcp,d=local-ipv4,port=30080'])
    keep, remove, add = m.plan_entries(current, render(new), ids)
    return ct.conntrack_cleanups(new, remove, add, None, kept=keep)


class TestCleanupsWithEndpoints:
    @pytest.mark.parametrize('render', [ipt.iptables_entries, nft.nft_entries])
    def test_a_removed_endpoint_is_the_only_stale_target(self, render):
        tcp = dict(NODEPORT, endpoints=EPS3)
        cleanups = change(tcp, dict(tcp, endpoints=[EPS3[0], EPS3[2]]), render)
        assert cleanups == [ct.Cleanup(4, 'tcp', None, (30080, 30080), ep('10.244.2.10', 8080), None)]

    def test_a_removed_udp_endpoint_also_keeps_only_the_remaining_ones(self):
        cleanups = change(UDP, dict(UDP, endpoints=UDP['endpoints'][:1]))
        assert cleanups == [ct.Cleanup(4, 'udp', None, (5353, 5353), ep('10.244.2.10'), None),
                            ct.Cleanup(4, 'udp', None, (5353, 5353), None, (ep('10.244.1.10'),))]

    @pytest.mark.parametrize('render', [ipt.iptables_entries, nft.nft_entries])
    def test_an_endpoint_added_to_a_udp_rule_makes_nothing_stale(self, render):
        grown = dict(UDP, endpoints=UDP['endpoints'] + [{'address': '10.244.3.10'}])
        assert change(UDP, grown, render) == []
        assert change(UDP, dict(UDP, balance='round_robin'), render) == []
        assert change(UDP, dict(UDP, affinity_timeout=60), render) == [], 'the same endpoints'

    def test_a_new_udp_rule_keeps_all_its_endpoints(self):
        [cleanup] = change(None, UDP)
        assert cleanup == ct.Cleanup(4, 'udp', None, (5353, 5353), None, (ep('10.244.1.10'), ep('10.244.2.10')))

    def test_a_removed_rule_makes_every_endpoint_stale(self):
        removed = ipt.iptables_entries([parsed(dict(NODEPORT, endpoints=EPS3))])
        cleanups = ct.conntrack_cleanups([], removed, [], None)
        assert [c.stale_target for c in cleanups] == [ep(e['address'], 8080) for e in EPS3]
        assert all(c.keep_targets is None for c in cleanups)

    def test_an_endpoint_whose_port_changed_is_stale_under_its_old_port(self):
        moved = dict(UDP, endpoints=[{'address': '10.244.1.10', 'port': 53}, UDP['endpoints'][1]])
        cleanups = change(UDP, moved)
        assert cleanups[0] == ct.Cleanup(4, 'udp', None, (5353, 5353), ep('10.244.1.10'), None)
        assert cleanups[1].keep_targets == (ep('10.244.1.10', 53), ep('10.244.2.10'))

    def test_stale_entries_keep_every_remaining_endpoint(self):
        def entry(reply_src, reply_sport=5353, dst='192.168.1.11'):
            return {'protocol': 'udp', 'original': {'src': '172.31.0.10', 'dst': dst, 'sport': 40000, 'dport': 5353},
                    'reply': {'src': reply_src, 'dst': '172.31.0.10', 'sport': reply_sport, 'dport': 40000}}

        entries = [entry('10.244.1.10'), entry('10.244.2.10'), entry('10.244.3.10'), entry('192.168.1.11'),
                   entry('10.244.2.10', reply_sport=53), entry('10.244.3.10', dst='8.8.8.8')]
        local = {ipaddress.ip_address('192.168.1.11')}
        keep = ct.Cleanup(4, 'udp', None, (5353, 5353), None, (ep('10.244.1.10'), ep('10.244.2.10', 5353)))
        assert ct.stale_entries(keep, ct.parse_flows(entries), local) == [entries[2], entries[3], entries[4]]
        stale = ct.Cleanup(4, 'udp', None, (5353, 5353), ep('10.244.3.10'), None)
        assert ct.stale_entries(stale, ct.parse_flows(entries), local) == [entries[2]]


# --- iptables: the default mask of a listed recent match ---------------------------------------------

# As iptables-save v1.8.9 (nf_tables) listed the affinity lines nat_rule wrote in a scratch namespace.
SAVED_V4 = ('-p tcp -m tcp --dport 30080 -m addrtype --dst-type LOCAL -m recent --update --seconds 30 --reap '
            '--name lnt_aff_4_30_23c998538133 --mask 255.255.255.255 --rsource -m comment --comment '
            '"lnt:dnat,p=tcp,d=local-ipv4,port=30080 3ee1220e" -j DNAT --to-destination 10.77.0.2:80')
SAVED_V6 = ('-p udp -m udp --dport 30053 -m addrtype --dst-type LOCAL -m statistic --mode random --probability '
            '0.50000000000 -m recent --set --name lnt_aff_6_60_8e860b337d5f --mask '
            'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource -m comment --comment '
            '"lnt:dnat,p=udp,d=local-ipv6,port=30053 1e97d282" -j DNAT --to-destination fd77::2')


class TestDeletable:
    def test_the_default_masks_are_dropped(self):
        assert ipt.deletable(SAVED_V4) == SAVED_V4.replace(' --mask 255.255.255.255', '')
        assert ipt.deletable(SAVED_V6) == SAVED_V6.replace(' --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '')
        assert '--mask' not in ipt.deletable(SAVED_V4) and '--mask' not in ipt.deletable(SAVED_V6)
        assert '--rsource -m comment' in ipt.deletable(SAVED_V4)

    def test_anything_else_is_left_as_it_is(self):
        other_mask = SAVED_V4.replace('255.255.255.255', '255.255.255.0')
        assert ipt.deletable(other_mask) == other_mask
        short_v6 = SAVED_V6.replace('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ffff::')
        assert ipt.deletable(short_v6) == short_v6
        plain = ('-s 192.168.45.0/24 -o eth0 -m comment --comment "lnt:masq,s=192.168.45.0/24,o=eth0 68a96732" '
                 '-j MASQUERADE')
        assert ipt.deletable(plain) == plain

    @pytest.mark.parametrize('family, saved', [(4, SAVED_V4), (6, SAVED_V6)])
    def test_plan_view_deletes_with_the_deletable_spec(self, family, saved):
        text = ('*nat\n:PREROUTING ACCEPT [0:0]\n:LNT-PREROUTING - [0:0]\n'
                '-A PREROUTING -m comment --comment "lnt:jump" -j LNT-PREROUTING\n'
                '-A LNT-PREROUTING %s\nCOMMIT\n' % saved)
        view = ipt.XtablesView(family, 'nft', ipt.parse_save(text))
        [entry] = view.entries()
        assert entry.text == saved
        [tx] = [tx for tx in ipt.plan_view(view, [], [entry], [], tables=('nat',)) if tx.data]
        assert tx.lines[1] == '-D LNT-PREROUTING %s' % ipt.deletable(saved)
        assert not any('--mask' in line for line in tx.lines)
        assert not any('--mask' in command for command in tx.commands)
