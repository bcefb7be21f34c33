# SPDX-License-Identifier: GPL-3.0-or-later
"""plugins/module_utils/nat_model.py: validation of NAT rules, their ids, the lines a rule
expands to, rendering for iptables and nft, tags, the keep/remove/add plan, and which
conntrack entries a DNAT change makes stale."""
import ipaddress

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables as ipt
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_nftables as nft
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_conntrack as ct
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_model as m
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError

MASQ = dict(kind='masquerade', source='192.168.45.0/24', out_interface='eth0')
WEB = dict(kind='dnat', protocol='tcp', port=8080, destination='192.168.1.32', to_address='192.168.45.3', to_port=80)


def rule(**item):
    return m.parse_rule('', item)


def line_exprs(rules):
    """(chain, nft expression) of each line of ``rules`` rendered as a rule (nft_entries turns
    the lines that differ only in per-flow values into set elements: see test_nft_sets.py)."""
    return [(line.chain, nft.nft_expr(line)) for dummy_rid, line in m.ordered_lines(rules)]


def rejected(item, field, reason, prefix=''):
    with pytest.raises(ValidationError) as info:
        m.parse_rule(prefix, item)
    assert info.value.field == prefix + field, str(info.value)
    assert reason in info.value.reason, info.value.reason
    return info.value


# --- validation ----------------------------------------------------------------------------

class TestParseRule:
    def test_masquerade_takes_family_from_source_and_defaults(self):
        r = rule(**MASQ)
        assert (r.kind, r.family, r.state, r.forward) == ('masquerade', 4, 'present', 'scoped')
        assert r.source == ipaddress.ip_network('192.168.45.0/24') and r.out_interface == 'eth0'

    def test_dnat_parses_ports_and_defaults_hairpin_on(self):
        r = rule(**WEB)
        assert (r.protocol, r.port, r.to_port, r.family, r.hairpin) == ('tcp', (8080, 8080), 80, 4, True)
        assert r.target_ports(r.endpoints[0]) == (80, 80)
        ranged = rule(kind='dnat', protocol='udp', port='5000-5010', to_address='fd45::3')
        assert ranged.port == (5000, 5010) and ranged.target_ports(ranged.endpoints[0]) == (5000, 5010) and ranged.family == 6

    def test_namespace_comes_from_the_item_or_the_default(self):
        assert m.parse_rule('', dict(MASQ), default_namespace='host1').namespace == 'host1'
        assert m.parse_rule('', dict(MASQ, namespace='other'), default_namespace='host1').namespace == 'other'
        rejected(dict(MASQ, namespace='a/b'), 'namespace', 'single path component')

    @pytest.mark.parametrize('item, field, reason', [
        (dict(kind='nat'), 'kind', 'must be one of'),
        (dict(WEB, port=0), 'port', 'from 1 to 65535'),
        (dict(WEB, port=65536), 'port', 'from 1 to 65535'),
        (dict(WEB, port='90-80'), 'port', 'must not exceed'),
        (dict(WEB, port='8080-8090'), 'to_port', 'range'),
        (dict(WEB, to_port=0), 'to_port', 'from 1 to 65535'),
        (dict(WEB, protocol='icmp'), 'protocol', 'must be one of'),
        (dict(WEB, protocol=None), 'protocol', 'needs protocol'),
        (dict(WEB, port=None), 'port', 'needs port'),
        (dict(WEB, to_address=None), 'to_address', 'needs to_address'),
        (dict(WEB, to_address='127.0.0.1'), 'to_address', 'loopback'),
        (dict(WEB, destination='192.168.1.0/24'), 'destination', 'not a valid IPv4 or IPv6 address'),
        (dict(WEB, to_address='fd45::3'), 'to_address', 'mixes IPv4 and IPv6'),
        (dict(WEB, forward='all'), 'forward', 'must be one of'),
        (dict(MASQ, source=None), 'source', 'needs source'),
        (dict(MASQ, out_interface=None), 'out_interface', 'needs out_interface'),
        (dict(MASQ, source='192.168.45.1/24'), 'source', 'host bits'),
        (dict(MASQ, out_interface='x' * 16), 'out_interface', 'at most 15 bytes'),
        (dict(MASQ, to_port=80), 'to_port', 'only to kind dnat'),
        (dict(MASQ, hairpin=True), 'hairpin', 'only to kind dnat'),
        (dict(MASQ, to_source='10.0.0.1'), 'to_source', 'only to kinds snat and dnat'),
        (dict(WEB, random_fully=True), 'random_fully', 'only to kinds masquerade and snat'),
        (dict(MASQ, forward='both'), 'in_interface', 'both must be set'),
        (dict(MASQ, destination='fd00:1::/64'), 'source', 'mixes IPv4 and IPv6'),
        (dict(kind='snat', source='10.0.0.0/8'), 'to_source', 'needs to_source'),
        (dict(kind='snat', to_source='10.0.0.1'), 'source', 'at least one of'),
        (dict(MASQ, state='gone'), 'state', 'must be one of'),
    ])
    def test_rejects_with_field_and_reason(self, item, field, reason):
        rejected(item, field, reason, prefix='rules[3].')

    def test_absent_rules_need_only_their_identity(self):
        r = rule(kind='dnat', protocol='tcp', port=8080, state='absent')
        assert r.family is None and r.to_address is None
        assert r.rule_ids() == ['dnat,p=tcp,d=local-ipv4,port=8080', 'dnat,p=tcp,d=local-ipv6,port=8080']
        snat = rule(kind='snat', out_interface='eth1', state='absent')
        assert snat.rule_ids() == ['snat,ipv4,o=eth1', 'snat,ipv6,o=eth1']

    def test_forward_both_needs_both_interfaces_only_when_present(self):
        assert rule(**dict(MASQ, forward='both', in_interface='veth1')).forward == 'both'
        assert rule(**dict(MASQ, forward='both', state='absent')).state == 'absent'


class TestParseRules:
    def test_collects_every_error_with_its_list_index(self):
        items = [('rules[0].', dict(WEB, port=0)), ('rules[1].', MASQ), ('rules[2].', dict(kind='snat', source='10.0.0.0/8'))]
        with pytest.raises(m.ValidationErrors) as info:
            m.parse_rules(items)
        assert [e.field for e in info.value.errors] == ['rules[0].port', 'rules[2].to_source']
        assert 'rules[0].port=0' in str(info.value) and 'rules[2].to_source=None' in str(info.value)
        assert info.value.field == 'rules[0].port'

    def test_rejects_the_same_rule_twice_in_one_namespace(self):
        items = [('rules[0].', WEB), ('rules[1].', dict(WEB, to_address='192.168.45.4'))]
        with pytest.raises(m.ValidationErrors) as info:
            m.parse_rules(items)
        assert 'the same rule as rules[0]' in str(info.value)
        other_ns = [('rules[0].', WEB), ('rules[1].', dict(WEB, namespace='other'))]
        assert len(m.parse_rules(other_ns)) == 2

    def test_rejects_overlapping_published_ports(self):
        items = [('rules[0].', dict(WEB, to_port=None, port='8000-8100')), ('rules[1].', WEB)]
        with pytest.raises(m.ValidationErrors) as info:
            m.parse_rules(items)
        assert info.value.field == 'rules[1].port' and 'overlaps rules[0].port=8000-8100' in str(info.value)

    def test_every_overlap_is_named_once_in_the_order_of_the_rules(self):
        def dnat(port, **extra):
            return dict(WEB, to_port=None, port=port, **extra)
        items = [('rules[0].', dnat('9000-9010')),
                 ('rules[1].', dnat('8000-8100')),
                 ('rules[2].', dnat('8050')),                       # inside 1
                 ('rules[3].', dnat('8100-9000')),                  # touches 0 and 1
                 ('rules[4].', dnat('8050', protocol='udp')),       # other protocol: no overlap
                 ('rules[5].', dnat('8050', namespace='other')),    # other namespace: no overlap
                 ('rules[6].', dnat('7000-7999'))]                  # next to 1, not on it
        with pytest.raises(m.ValidationErrors) as info:
            m.parse_rules(items)
        assert [str(e) for e in info.value.errors] == [
            str(m.ValidationError('rules[2].port', '8050', 'overlaps rules[1].port=8000-8100')),
            str(m.ValidationError('rules[3].port', '8100-9000', 'overlaps rules[0].port=9000-9010')),
            str(m.ValidationError('rules[3].port', '8100-9000', 'overlaps rules[1].port=8000-8100')),
        ]


# --- ids -------------------------------------------------------------------------------------

class TestRuleIds:
    def test_ids_name_what_selects_the_traffic(self):
        assert rule(**MASQ).rule_ids() == ['masq,s=192.168.45.0/24,o=eth0']
        assert rule(**WEB).rule_ids() == ['dnat,p=tcp,d=192.168.1.32,port=8080']
        snat = rule(kind='snat', destination='172.26.0.3/32', out_interface='eth1', to_source='10.20.0.2')
        assert snat.rule_ids() == ['snat,ipv4,d=172.26.0.3/32,o=eth1']

    def test_the_target_and_companions_are_not_part_of_the_id(self):
        item = dict(WEB)
        item.update(to_address='192.168.45.9', to_port=81, forward='none', hairpin=False, in_interface='eth0')
        changed = rule(**item)
        assert changed.rule_ids() == rule(**WEB).rule_ids()
        assert rule(**dict(MASQ, random_fully=True)).rule_ids() == rule(**MASQ).rule_ids()

    def test_dnat_ids_parse_back(self):
        assert m.parse_dnat_id('dnat,p=tcp,d=192.168.1.32,port=8080') == m.DnatKey(
            4, 'tcp', ipaddress.ip_address('192.168.1.32'), (8080, 8080))
        assert m.parse_dnat_id('dnat,p=udp,d=local-ipv6,port=5000-5010') == m.DnatKey(6, 'udp', None, (5000, 5010))
        assert m.parse_dnat_id('masq,s=10.0.0.0/8,o=eth0') is None
        assert m.parse_dnat_id('dnat,p=tcp,d=nonsense,port=1') is None

    def test_longest_tags_fit_nft_comments(self):
        v6 = 'fd12:3456:789a:bcde:f012:3456:789a:bcde'
        masq = rule(kind='masquerade', source=v6 + '/128', destination=v6 + '/128', out_interface='x' * 15)
        assert masq.rule_ids()[0].startswith('masq,s=fd12:')
        snat = rule(kind='snat', source=v6 + '/128', destination=v6 + '/128', out_interface='x' * 15,
                    to_source='fd45::1')
        [long_id] = snat.rule_ids()
        assert long_id.startswith('snat,h=') and long_id == rule(**dict(
            kind='snat', source=v6 + '/128', destination=v6 + '/128', out_interface='x' * 15,
            to_source='fd45::2')).rule_ids()[0], 'still stable and still ignoring the target'
        dnat = rule(kind='dnat', protocol='sctp', port='65534-65535', destination=v6, to_address='fd45::3')
        assert m.parse_dnat_id(dnat.rule_ids()[0]).ports == (65534, 65535)
        for r in (masq, snat, dnat):
            assert len(m.make_tag(r.rule_ids()[0], 'text')) <= m.MAX_TAG_LENGTH


# --- lines and rendering -----------------------------------------------------------------------------

def rendered_iptables(item):
    return [(e.family, e.table, e.chain, e.text.split(' -m comment')[0] + e.text.split('"')[-1])
            for e in ipt.iptables_entries([rule(**item)])]


class TestLines:
    def test_masquerade_scoped(self):
        assert rendered_iptables(MASQ) == [
            (4, 'nat', 'LNT-POSTROUTING', '-s 192.168.45.0/24 -o eth0 -j MASQUERADE'),
            (4, 'filter', 'LNT-FORWARD', '-s 192.168.45.0/24 -o eth0 -j ACCEPT'),
            (4, 'filter', 'LNT-FORWARD', '-d 192.168.45.0/24 -i eth0 -m conntrack --ctstate RELATED,ESTABLISHED '
                                         '-j ACCEPT'),
        ]

    def test_forward_both_is_the_articles_two_accepts_and_none_writes_nothing(self):
        both = rendered_iptables(dict(MASQ, in_interface='veth1', forward='both'))
        assert both[1:] == [(4, 'filter', 'LNT-FORWARD', '-i veth1 -o eth0 -j ACCEPT'),
                            (4, 'filter', 'LNT-FORWARD', '-i eth0 -o veth1 -j ACCEPT')]
        assert [line[1] for line in rendered_iptables(dict(MASQ, forward='none'))] == ['nat']

    def test_snat(self):
        lines = rendered_iptables(dict(kind='snat', destination='172.26.0.3/32', out_interface='eth1',
                                       to_source='10.20.0.2'))
        assert lines[0] == (4, 'nat', 'LNT-POSTROUTING', '-d 172.26.0.3/32 -o eth1 -j SNAT --to-source 10.20.0.2')

    def test_random_fully_on_the_source_nat_line_only(self):
        masq = rendered_iptables(dict(MASQ, random_fully=True))
        assert masq[0] == (4, 'nat', 'LNT-POSTROUTING', '-s 192.168.45.0/24 -o eth0 -j MASQUERADE --random-fully')
        assert masq[1:] == rendered_iptables(MASQ)[1:]  # the FORWARD companions are the same
        snat = rendered_iptables(dict(kind='snat', source='10.0.0.0/8', to_source='10.20.0.2', random_fully=True))
        assert snat[0][3] == '-s 10.0.0.0/8 -j SNAT --to-source 10.20.0.2 --random-fully'
        nft_lines = [e.text.split(' comment ')[0] for e in nft.nft_entries([
            rule(**dict(MASQ, random_fully=True)),
            rule(kind='snat', source='fd00:1::/64', to_source='fd00:2::1', random_fully=True)])]
        assert nft_lines[0] == 'ip saddr 192.168.45.0/24 oifname "eth0" masquerade fully-random'
        assert 'ip6 saddr fd00:1::/64 snat ip6 to fd00:2::1 fully-random' in nft_lines
        # A rendering of its own: the tag's digest differs, so a change replaces the line in place.
        [plain] = [e for e in ipt.iptables_entries([rule(**MASQ)]) if e.table == 'nat']
        [fully] = [e for e in ipt.iptables_entries([rule(**dict(MASQ, random_fully=True))]) if e.table == 'nat']
        assert plain.rule_id == fully.rule_id and plain.text != fully.text

    def test_dnat_with_hairpin_and_host_access(self):
        assert rendered_iptables(WEB) == [
            (4, 'nat', 'LNT-PREROUTING', '-d 192.168.1.32/32 -p tcp -m tcp --dport 8080 '
                                         '-j DNAT --to-destination 192.168.45.3:80'),
            (4, 'nat', 'LNT-POSTROUTING', '-s 192.168.45.3/32 -d 192.168.45.3/32 -p tcp -m tcp --dport 80 '
                                          '-m conntrack --ctstate DNAT -j MASQUERADE'),
            (4, 'nat', 'LNT-OUTPUT', '-d 192.168.1.32/32 -p tcp -m tcp --dport 8080 '
                                     '-j DNAT --to-destination 192.168.45.3:80'),
            (4, 'filter', 'LNT-FORWARD', '-d 192.168.45.3/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT '
                                         '--ctorigdst 192.168.1.32 --ctorigdstport 8080 -j ACCEPT'),
            (4, 'filter', 'LNT-FORWARD', '-s 192.168.45.3/32 -p tcp -m tcp --sport 80 -m conntrack '
                                         '--ctstate RELATED,ESTABLISHED -j ACCEPT'),
        ]

    def test_dnat_on_every_local_address_with_in_interface(self):
        lines = rendered_iptables(dict(WEB, destination=None, in_interface='eth0'))
        assert lines[0][3] == ('-i eth0 -p tcp -m tcp --dport 8080 -m addrtype --dst-type LOCAL '
                               '-j DNAT --to-destination 192.168.45.3:80')
        # the target reaching itself arrives on the inner interface: translated too
        assert lines[1][3] == ('-s 192.168.45.3/32 -p tcp -m tcp --dport 8080 -m addrtype --dst-type LOCAL '
                               '-j DNAT --to-destination 192.168.45.3:80')
        assert lines[3][2] == 'LNT-OUTPUT' and lines[3][3].startswith('! -d 127.0.0.0/8 ')
        assert len([line for line in lines if line[1] == 'filter']) == 3

    def test_dnat_without_hairpin_and_with_port_range(self):
        lines = rendered_iptables(dict(kind='dnat', protocol='udp', port='5000-5010', to_address='fd45::3',
                                       hairpin=False, forward='none'))
        assert lines == [(6, 'nat', 'LNT-PREROUTING', '-p udp -m udp --dport 5000:5010 -m addrtype --dst-type LOCAL '
                                                      '-j DNAT --to-destination fd45::3')]

    def test_nft_expressions(self):
        exprs = line_exprs([rule(**WEB), rule(**MASQ)])
        assert exprs == [
            ('prerouting', 'ip daddr 192.168.1.32 tcp dport 8080 dnat ip to 192.168.45.3:80'),
            ('postrouting', 'ip saddr 192.168.45.3 ip daddr 192.168.45.3 tcp dport 80 ct status dnat masquerade'),
            ('output', 'ip daddr 192.168.1.32 tcp dport 8080 dnat ip to 192.168.45.3:80'),
            ('forward', 'ip daddr 192.168.45.3 tcp dport 80 ct status dnat ct original ip daddr 192.168.1.32 '
                        'ct original proto-dst 8080 accept'),
            ('forward', 'ip saddr 192.168.45.3 tcp sport 80 ct state related,established accept'),
            ('postrouting', 'ip saddr 192.168.45.0/24 oifname "eth0" masquerade'),
            ('forward', 'ip saddr 192.168.45.0/24 oifname "eth0" accept'),
            ('forward', 'ip daddr 192.168.45.0/24 iifname "eth0" ct state related,established accept'),
        ]

    def test_nft_marks_the_family_when_no_address_does(self):
        exprs = line_exprs([rule(kind='dnat', protocol='tcp', port=443, to_address='fd45::3',
                                 in_interface='eth0', out_interface='veth1', forward='both')])
        assert exprs[0] == ('prerouting', 'meta nfproto ipv6 fib daddr type local iifname "eth0" tcp dport 443 '
                                          'dnat ip6 to fd45::3')
        assert ('forward', 'meta nfproto ipv6 iifname "eth0" oifname "veth1" accept') in exprs
        output = [expr for chain, expr in exprs if chain == 'output'][0]
        assert output.startswith('ip6 daddr != ::1/128 fib daddr type local tcp dport 443')

    def test_nft_ipv6_target_port_is_bracketed(self):
        exprs = line_exprs([rule(kind='dnat', protocol='sctp', port=99, destination='fd12::1',
                                 to_address='fd45::3', to_port=80, hairpin=False, forward='none')])
        assert exprs[0][1] == 'ip6 daddr fd12::1 sctp dport 99 dnat ip6 to [fd45::3]:80'

    def test_absent_rules_render_nothing(self):
        assert ipt.iptables_entries([rule(**dict(WEB, state='absent'))]) == []
        assert nft.nft_entries([rule(**dict(WEB, state='absent'))]) == []


# --- tags and planning ----------------------------------------------------------------------------

class TestTags:
    def test_tag_carries_id_and_a_digest_of_the_rendering(self):
        tag = m.make_tag('masq,s=10.0.0.0/8,o=eth0', 'LNT-POSTROUTING -s 10.0.0.0/8')
        rid, digest = m.parse_tag(tag)
        assert rid == 'masq,s=10.0.0.0/8,o=eth0' and len(digest) == 8
        assert m.make_tag(rid, 'other rendering') != tag
        assert m.make_tag(rid, 'LNT-POSTROUTING -s 10.0.0.0/8') == tag

    @pytest.mark.parametrize('comment', [None, '', 'docker', 'lnt:jump', 'lnt:noDigest', 'kube:x y'])
    def test_other_comments_are_not_ours(self, comment):
        assert m.parse_tag(comment) is None

    def test_every_entry_of_a_rule_carries_its_id(self):
        entries = ipt.iptables_entries([rule(**WEB)])
        assert set(e.rule_id for e in entries) == {'dnat,p=tcp,d=192.168.1.32,port=8080'}
        assert len(set(e.tag for e in entries)) == len(entries)
        assert all(('"%s"' % e.tag) in e.text for e in entries)


def entry(tag, chain='LNT-POSTROUTING', text='x'):
    return m.Entry(4, 'nat', chain, tag, text)


class TestPlanEntries:
    def test_keeps_matching_removes_stale_adds_missing(self):
        current = [entry('lnt:a 1'), entry('lnt:a 2'), entry('lnt:b 1')]
        desired = [entry('lnt:a 1'), entry('lnt:a 3')]
        keep, remove, add = m.plan_entries(current, desired, {'a'})
        assert [e.tag for e in keep] == ['lnt:a 1', 'lnt:b 1']
        assert [e.tag for e in remove] == ['lnt:a 2']
        assert [e.tag for e in add] == ['lnt:a 3']

    def test_duplicates_of_our_lines_are_removed(self):
        keep, remove, add = m.plan_entries([entry('lnt:a 1'), entry('lnt:a 1')], [entry('lnt:a 1')], {'a'})
        assert (len(keep), len(remove), add) == (1, 1, [])

    def test_same_tag_in_another_chain_is_another_line(self):
        keep, remove, add = m.plan_entries([entry('lnt:a 1', chain='LNT-OUTPUT')], [entry('lnt:a 1')], {'a'})
        assert keep == [] and len(remove) == 1 and len(add) == 1

    def test_managed_ids_add_everything_found_when_purging(self):
        rules = [m.parse_rule('', dict(MASQ), 'ns1'), m.parse_rule('', dict(WEB), 'ns2')]
        current = [entry('lnt:other 1'), entry(None)]
        assert m.managed_ids(rules, current, False, 'ns1') == {'masq,s=192.168.45.0/24,o=eth0'}
        assert m.managed_ids(rules, current, True, 'ns1') == {'masq,s=192.168.45.0/24,o=eth0', 'other', None}


# --- conntrack cleanup --------------------------------------------------------------------------------

WEB_ID = 'dnat,p=tcp,d=192.168.1.32,port=8080'
DNS_ID = 'dnat,p=udp,d=local-ipv4,port=53'


def prerouting(rid, text):
    return m.Entry(4, 'nat', 'LNT-PREROUTING', 'lnt:%s 0' % rid, text, role='prerouting')


class TestTargets:
    @pytest.mark.parametrize('text, address, ports', [
        ('-d 1.2.3.4/32 -p tcp -j DNAT --to-destination 192.168.45.3:80', '192.168.45.3', (80, 80)),
        ('-p udp -j DNAT --to-destination 192.168.45.3', '192.168.45.3', None),
        ('-j DNAT --to-destination [fd45::3]:8080-8090', 'fd45::3', (8080, 8090)),
        ('-j DNAT --to-destination fd45::3', 'fd45::3', None),
        ('ip daddr 1.2.3.4 tcp dport 8080 dnat ip to 192.168.45.3:80 comment "x"', '192.168.45.3', (80, 80)),
        ('tcp dport 8080 dnat to 192.168.45.3:80', '192.168.45.3', (80, 80)),
        ('udp dport 53 dnat ip6 to [fd45::3]:53', 'fd45::3', (53, 53)),
    ])
    def test_targets_of_listed_dnat_lines(self, text, address, ports):
        assert ct.dnat_target(text) == m.Target(ipaddress.ip_address(address), ports)

    def test_lines_without_dnat_have_no_target(self):
        assert ct.dnat_target('-s 10.0.0.0/8 -j MASQUERADE') is None


class TestConntrackCleanups:
    def test_retargeted_tcp_rule_cleans_the_old_target_only(self):
        new = m.parse_rule('', dict(WEB, to_address='192.168.45.9'))
        removed = [prerouting(WEB_ID, '-j DNAT --to-destination 192.168.45.3:80')]
        cleanups = ct.conntrack_cleanups([new], removed, [prerouting(WEB_ID, 'new')], None)
        assert cleanups == [ct.Cleanup(4, 'tcp', ipaddress.ip_address('192.168.1.32'), (8080, 8080),
                                       m.Target(ipaddress.ip_address('192.168.45.3'), (80, 80)), None)]

    def test_removed_rule_cleans_its_target(self):
        removed = [prerouting(DNS_ID, '-j DNAT --to-destination 192.168.45.3')]
        cleanups = ct.conntrack_cleanups([], removed, [], None)
        assert [(c.protocol, c.destination, c.ports, c.stale_target.address) for c in cleanups] == [
            ('udp', None, (53, 53), ipaddress.ip_address('192.168.45.3'))]

    def test_newly_published_udp_port_cleans_entries_not_going_to_the_target(self):
        new = m.parse_rule('', dict(kind='dnat', protocol='udp', port=53, to_address='192.168.45.3'))
        cleanups = ct.conntrack_cleanups([new], [], [prerouting(DNS_ID, 'x')], None)
        assert cleanups == [ct.Cleanup(4, 'udp', None, (53, 53), None,
                                       (m.Target(ipaddress.ip_address('192.168.45.3'), None),))]

    def test_nothing_for_unchanged_targets_new_tcp_or_other_namespaces(self):
        same = m.parse_rule('', dict(WEB, forward='none'))
        removed = [prerouting(WEB_ID, '-j DNAT --to-destination 192.168.45.3:80')]
        assert ct.conntrack_cleanups([same], removed, [prerouting(WEB_ID, 'y')], None) == []
        assert ct.conntrack_cleanups([m.parse_rule('', WEB)], [], [prerouting(WEB_ID, 'y')], None) == []
        udp = m.parse_rule('', dict(kind='dnat', protocol='udp', port=53, to_address='192.168.45.3'), 'ns1')
        assert ct.conntrack_cleanups([udp], [], [prerouting(DNS_ID, 'x')], 'ns2') == []
        # a UDP rule whose only change is a forward line is not newly published
        kept = [prerouting(DNS_ID, '-j DNAT --to-destination 192.168.45.3')]
        assert ct.conntrack_cleanups([udp], [], [], 'ns1', kept=kept) == []


def conntrack_entry(protocol, dst, dport, reply_src, reply_sport):
    return {'protocol': protocol, 'original': {'src': '192.168.1.15', 'dst': dst, 'sport': 40000, 'dport': dport},
            'reply': {'src': reply_src, 'dst': '192.168.1.15', 'sport': reply_sport, 'dport': 40000}}


class TestStaleEntries:
    entries = [
        conntrack_entry('udp', '192.168.1.32', 53, '192.168.45.3', 53),   # DNAT'ed to the old target
        conntrack_entry('udp', '192.168.1.32', 53, '192.168.1.32', 53),   # before the port was published
        conntrack_entry('udp', '8.8.8.8', 53, '8.8.8.8', 53),             # passing through, not ours
        conntrack_entry('udp', '192.168.1.32', 54, '192.168.45.3', 54),   # another port
        conntrack_entry('tcp', '192.168.1.32', 53, '192.168.45.3', 53),   # another protocol
        conntrack_entry('udp', '192.168.1.32', 53, '192.168.45.4', 53),   # already the new target
    ]
    local = {ipaddress.ip_address('192.168.1.32')}

    def test_stale_target(self):
        cleanup = ct.Cleanup(4, 'udp', None, (53, 53), m.Target(ipaddress.ip_address('192.168.45.3'), (53, 53)), None)
        assert ct.stale_entries(cleanup, ct.parse_flows(self.entries), self.local) == [self.entries[0]]

    def test_keep_target(self):
        cleanup = ct.Cleanup(4, 'udp', None, (53, 53), None, (m.Target(ipaddress.ip_address('192.168.45.4'), None),))
        assert ct.stale_entries(cleanup, ct.parse_flows(self.entries), self.local) == self.entries[:2]

    def test_published_address_narrows_it(self):
        cleanup = ct.Cleanup(4, 'udp', ipaddress.ip_address('192.168.1.33'), (53, 53), None,
                             (m.Target(ipaddress.ip_address('192.168.45.4'), None),))
        assert ct.stale_entries(cleanup, ct.parse_flows(self.entries), self.local) == []


# --- isolate ---------------------------------------------------------------------------------

ISOLATE = dict(kind='isolate', destination='192.168.45.0/24', out_interface='veth1')


class TestIsolate:
    def test_isolate_is_identified_by_destination_and_interface_only(self):
        r = rule(**dict(ISOLATE, allow_from=['192.168.46.0/24']))
        assert (r.kind, r.family, r.forward) == ('isolate', 4, 'none')
        assert r.rule_ids() == ['isolate,d=192.168.45.0/24,o=veth1']
        assert r.rule_ids() == rule(**ISOLATE).rule_ids()  # allow_from changes the rule in place

    def test_isolate_renders_its_accepts_then_a_drop_on_both_backends(self):
        r = rule(**dict(ISOLATE, allow_from=['192.168.46.0/24']))
        ipt_lines = [(e.chain, e.text.split(' -m comment')[0], e.text.rsplit(' ', 2)[-2:]) for e in ipt.iptables_entries([r])]
        assert ipt_lines == [('LNT-FORWARD', '-s 192.168.46.0/24 -d 192.168.45.0/24 -o veth1', ['-j', 'ACCEPT']),
                             ('LNT-FORWARD', '-d 192.168.45.0/24 -o veth1 -m conntrack --ctstate RELATED,ESTABLISHED',
                              ['-j', 'ACCEPT']),
                             ('LNT-FORWARD', '-d 192.168.45.0/24 -o veth1', ['-j', 'DROP'])]
        nft_lines = [e.text.split(' comment')[0] for e in nft.nft_entries([r])]
        assert nft_lines == ['ip saddr 192.168.46.0/24 ip daddr 192.168.45.0/24 oifname "veth1" accept',
                             'ip daddr 192.168.45.0/24 oifname "veth1" ct state related,established accept',
                             'ip daddr 192.168.45.0/24 oifname "veth1" drop']

    def test_drops_come_after_every_accept_of_the_call(self):
        """The isolation listed first must not hide the published port of a later DNAT."""
        rules = [rule(**ISOLATE), rule(**dict(MASQ, in_interface='veth1')),
                 rule(kind='dnat', protocol='tcp', port=8080, to_address='192.168.45.3', out_interface='veth1')]
        forward = [e.text for e in ipt.iptables_entries(rules, roles=('forward',))]
        assert [text.endswith('-j DROP') for text in forward] == [False] * (len(forward) - 1) + [True]
        nft_forward = [e.text for e in nft.nft_entries(rules) if e.chain == 'forward']
        assert ' drop comment ' in nft_forward[-1] and all(' drop ' not in text for text in nft_forward[:-1])

    @pytest.mark.parametrize('extra, field, reason', [
        (dict(destination=None), 'destination', 'isolate needs destination'),
        (dict(out_interface=None), 'out_interface', 'isolate needs out_interface'),
        (dict(to_source='192.168.1.32'), 'to_source', 'does not apply to kind isolate'),
        (dict(protocol='tcp'), 'protocol', 'does not apply to kind isolate'),
        (dict(allow_from=['fd00::/64']), 'allow_from', 'mixes IPv4 and IPv6'),
        (dict(allow_from=['nonsense']), 'allow_from[0]', 'is not a valid CIDR network'),
    ])
    def test_bad_isolate_options_are_rejected(self, extra, field, reason):
        item = dict(ISOLATE)
        item.update(extra)
        rejected(dict((k, v) for k, v in item.items() if v is not None), field, reason)

    def test_allow_from_belongs_to_isolate_only(self):
        rejected(dict(MASQ, allow_from=['10.0.0.0/8']), 'allow_from', 'applies only to kind isolate')

    @pytest.mark.parametrize('target', ['255.255.255.255', '224.0.0.1', '0.0.0.0', '::'])
    def test_a_dnat_target_must_be_unicast(self, target):
        rejected(dict(WEB, to_address=target), 'to_address', 'must be a unicast address')
