# SPDX-License-Identifier: GPL-3.0-or-later
"""nft backend: lines that differ only in per-flow values become elements of one set or map
per shape (issue 14: the first packet's path must not grow with the number of published
ports). What is collapsed and what stays a rule, the elements' ownership, and the plans."""
import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import nat_conntrack as ct
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_model as m
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_nftables as nft

TABLE = 'inet linuxnet_netns'


def rules(*items):
    return m.parse_rules([('rules[%d].' % index, item) for index, item in enumerate(items)])


def forward(port, target, out='veth1'):
    return dict(kind='dnat', protocol='tcp', port=port, to_address=target, to_port=80, in_interface='eth0',
                out_interface=out)


def applied(entries):
    """The table as nft lists it after a fresh apply of ``entries`` (handles numbered in order)."""
    [tx] = nft.plan_table(nft.NftTable(), [], [], entries)
    table = nft.NftTable(exists=True, policies=dict((chain[0], 'accept') for chain in nft.CHAINS))
    handle = 10
    for line in tx.lines:
        words = line.split()
        if line.startswith('add set ') or line.startswith('add map '):
            table.sets.append(words[4])
            if words[1] == 'map':
                table.maps.add(words[4])
        elif line.startswith('insert rule '):
            name = line.rsplit('lnt-set ', 1)[1].rstrip('"')
            table.container_rules[name] = [(words[4], handle)]
            table.container_order.insert(0, name)
            handle += 1
    for entry in entries:
        if entry.unordered:
            listed = m.Entry(entry.family, entry.table, entry.chain, entry.tag, entry.text, role=entry.role)
            listed.unordered, listed.slot = True, entry.slot
            table.entries.append(listed)
        else:
            table.entries.append(m.Entry(entry.family, entry.table, entry.chain, entry.tag, entry.text,
                                         handle=handle, role=entry.role))
            handle += 1
    return table


def plan(table, desired, ids):
    keep, remove, add = m.in_desired_order(desired, *m.plan_entries(table.entries, desired, ids), managed_ids=ids)
    return nft.plan_table(table, keep, remove, add)


class TestWhatCollapses:
    def test_a_port_forward_is_elements_and_its_namespace_masquerade_stays_rules(self):
        entries = nft.nft_entries(rules(forward(8080, '192.168.45.3'),
                                        dict(kind='masquerade', source='192.168.45.0/24', out_interface='eth0')))
        elements = [(e.role, e.text.split(' comment ')[0], e.text.split('" ')[-1] if ' : ' in e.text else '')
                    for e in entries if e.unordered]
        assert elements == [
            ('prerouting', '8080', ': 192.168.45.3 . 80'),
            ('prerouting', '192.168.45.3 . 8080', ': 192.168.45.3 . 80'),  # the target reaching itself
            ('postrouting', '192.168.45.3 . 192.168.45.3 . 80', ''),
            ('output', '8080', ': 192.168.45.3 . 80'),
            ('forward', '192.168.45.3 . 80 . 8080', ''),
            ('forward', '192.168.45.3 . 80', ''),
            ('forward', '192.168.45.3 . 192.168.45.3 . 80 . 8080', '')]
        assert [e.chain for e in entries if not e.unordered] == ['postrouting', 'forward', 'forward']
        [published] = [e.container for e in entries if e.unordered and e.text.startswith('8080 ') and e.role == 'prerouting']
        assert published.kind == 'map' and published.type_text == 'inet_service : ipv4_addr . inet_service'
        assert published.rule_text == ('meta nfproto ipv4 fib daddr type local iifname "eth0" meta l4proto tcp '
                                       'dnat ip to tcp dport map @%s' % published.name)

    def test_a_thousand_port_forwards_need_the_same_sets_as_one(self):
        one = nft.containers_of(nft.nft_entries(rules(forward(8000, '192.168.45.3'))))
        many = nft.containers_of(nft.nft_entries(rules(*[forward(8000 + k, '192.168.45.%d' % (k % 200 + 2))
                                                         for k in range(1000)])))
        assert sorted(many) == sorted(one) and len(one) == 7

    @pytest.mark.parametrize('item', [
        dict(kind='dnat', protocol='tcp', port='8000-8010', to_address='192.168.45.3'),  # a port range
        dict(kind='dnat', protocol='tcp', port=30080, hairpin=False, forward='none',  # a pick among endpoints
             endpoints=[{'address': '10.77.0.2'}, {'address': '10.77.0.3'}]),
    ])
    def test_what_needs_its_place_in_the_chain_stays_a_rule(self, item):
        prerouting = [e for e in nft.nft_entries(rules(item)) if e.role == 'prerouting']
        assert prerouting and not any(e.unordered for e in prerouting)
        assert all(e.chain == 'prerouting' for e in prerouting)

    def test_the_last_endpoint_of_a_pick_is_a_rule_after_the_picks_not_a_map_on_top(self):
        item = dict(kind='dnat', protocol='tcp', port=30080, hairpin=False, forward='none', balance='round_robin',
                    endpoints=[{'address': '10.77.0.2'}, {'address': '10.77.0.3'}])
        prerouting = [e.text.split(' comment ')[0] for e in nft.nft_entries(rules(item)) if e.role == 'prerouting']
        assert prerouting[-1] == 'meta nfproto ipv4 fib daddr type local tcp dport 30080 dnat ip to 10.77.0.3'

    def test_two_forwards_to_one_endpoint_share_its_reply_accept_owned_by_the_first(self):
        entries = nft.nft_entries(rules(forward(8080, '192.168.45.3'), forward(8081, '192.168.45.3')))
        replies = [e for e in entries if e.unordered and e.text.startswith('192.168.45.3 . 80 comment')]
        assert len(replies) == 1 and replies[0].rule_id == 'dnat,p=tcp,d=local-ipv4,port=8080'

    def test_ipv6_keys_and_targets(self):
        entries = nft.nft_entries(rules(dict(kind='dnat', protocol='udp', port=53, destination='fd12::1',
                                             to_address='fd45::3', hairpin=False, forward='none')))
        [element] = [e for e in entries if e.role == 'prerouting']
        assert element.text.startswith('fd12::1 . 53 comment "lnt:') and element.text.endswith('" : fd45::3')
        assert element.container.type_text == 'ipv6_addr . inet_service : ipv6_addr'
        assert ct.dnat_target(element.text) == m.Target(element.container and m.ipaddress.ip_address('fd45::3'), None)


class TestPlans:
    IDS = {'dnat,p=tcp,d=local-ipv4,port=8080', 'dnat,p=tcp,d=local-ipv4,port=8081'}

    def test_a_fresh_table_creates_the_sets_before_their_rules_and_the_rules_before_the_elements(self):
        [tx] = nft.plan_table(nft.NftTable(), [], [], nft.nft_entries(rules(forward(8080, '192.168.45.3'))))
        kinds = [' '.join(line.split()[:2]) for line in tx.lines]
        assert kinds.index('insert rule') > max(i for i, k in enumerate(kinds) if k in ('add set', 'add map'))
        assert kinds.index('add element') > max(i for i, k in enumerate(kinds) if k == 'insert rule')

    def test_applied_needs_nothing(self):
        desired = nft.nft_entries(rules(forward(8080, '192.168.45.3'), forward(8081, '192.168.45.4')))
        assert plan(applied(desired), nft.nft_entries(rules(forward(8080, '192.168.45.3'),
                                                            forward(8081, '192.168.45.4'))), self.IDS) == []

    def test_a_new_target_replaces_only_its_elements(self):
        table = applied(nft.nft_entries(rules(forward(8080, '192.168.45.3'), forward(8081, '192.168.45.4'))))
        [tx] = plan(table, nft.nft_entries(rules(forward(8080, '192.168.45.3'), forward(8081, '192.168.45.5'))),
                    self.IDS)
        assert all(line.split()[:2] in (['delete', 'element'], ['add', 'element']) for line in tx.lines)
        assert any(line.startswith('delete element %s' % TABLE) and '{ 8081 }' in line for line in tx.lines)
        assert not any('8080' in line.split('{')[1].split('comment')[0] for line in tx.lines
                       if 'element' in line and '192.168.45.3' not in line)

    def test_the_shared_element_changes_owner_when_its_first_rule_goes(self):
        table = applied(nft.nft_entries(rules(forward(8080, '192.168.45.3'), forward(8081, '192.168.45.3'))))
        [tx] = plan(table, nft.nft_entries(rules(forward(8081, '192.168.45.3'))), self.IDS)
        reply = [line for line in tx.lines if '{ 192.168.45.3 . 80 comment' in line or line.endswith('{ 192.168.45.3 . 80 }')]
        assert [line.split()[0] for line in reply] == ['delete', 'add'], 'deleted, then added under the new owner'
        assert 'port=8081' in reply[1]

    def test_the_last_element_gone_deletes_the_rule_then_the_set(self):
        table = applied(nft.nft_entries(rules(forward(8080, '192.168.45.3'))))
        [tx] = plan(table, [], {'dnat,p=tcp,d=local-ipv4,port=8080'})
        assert tx.lines == ['delete table %s' % TABLE]
        table.entries.append(m.Entry('inet', 'linuxnet_netns', 'forward', 'lnt:masq,s=10.0.0.0/8 0', 'accept',
                                     handle=99, role='forward'))
        [tx] = plan(table, [], {'dnat,p=tcp,d=local-ipv4,port=8080'})
        deletes = [line for line in tx.lines if line.startswith('delete rule') or line.startswith('delete set')
                   or line.startswith('delete map')]
        assert len(deletes) == 14 and not any(line.startswith('delete element') for line in tx.lines)
        for name in table.container_rules:
            rule_line = [i for i, line in enumerate(tx.lines) if line.startswith('delete rule')
                         and line.endswith('handle %d' % table.container_rules[name][0][1])]
            set_line = [i for i, line in enumerate(tx.lines) if line.endswith(' %s' % name)]
            assert rule_line[0] < set_line[0]

    def test_rules_of_sets_out_of_order_are_rewritten_in_name_order(self):
        table = applied(nft.nft_entries(rules(forward(8080, '192.168.45.3'))))
        forward_sets = [name for name in table.container_order if name.startswith('lnt_forward_')]
        assert forward_sets == sorted(forward_sets)
        table.container_order.reverse()  # as a history of partial edits could leave them
        [tx] = plan(table, nft.nft_entries(rules(forward(8080, '192.168.45.3'))), self.IDS)
        inserted = [line.rsplit('lnt-set ', 1)[1].rstrip('"') for line in tx.lines
                    if line.startswith('insert rule %s forward ' % TABLE)]
        # the chains with one set (output, postrouting) are in order whatever the history
        assert len(inserted) == 3 and sum(1 for line in tx.lines if line.startswith('delete rule')) == 3 + 2
        # each goes on top: the last inserted is listed first
        assert list(reversed(inserted)) == sorted(inserted)

    def test_an_element_another_rule_holds_is_not_added_again(self):
        table = applied(nft.nft_entries(rules(forward(8080, '192.168.45.3'))))
        # a call that names only the second forward (no purge): its reply accept is already there
        desired = nft.nft_entries(rules(forward(8081, '192.168.45.3')))
        [tx] = plan(table, desired, {'dnat,p=tcp,d=local-ipv4,port=8081'})
        assert not any(line.startswith('add element') and '{ 192.168.45.3 . 80 comment' in line for line in tx.lines)
        assert not any(line.startswith('delete') for line in tx.lines)

    def test_a_listing_of_elements_parses_back_to_the_same_slots_and_tags(self):
        desired = nft.nft_entries(rules(forward(8080, '192.168.45.3'), forward(8081, '192.168.45.4')))
        name = [e.chain for e in desired if e.unordered and e.role == 'prerouting'][0]
        mine = [e for e in desired if e.chain == name]
        listing = ('table inet linuxnet_netns {\n\tmap %s {\n\t\ttype inet_service : ipv4_addr . inet_service\n'
                   '\t\telements = { %s,\n\t\t\t     %s }\n\t}\n}\n' % (name, mine[0].text, mine[1].text))
        table = nft.parse_listing(listing)
        assert [(e.tag, e.slot) for e in table.entries] == [(e.tag, e.slot) for e in mine]
        assert table.maps == {name}
        assert [ct.dnat_target(e.text) for e in table.entries] == [
            m.Target(m.ipaddress.ip_address(address), (80, 80)) for address in ('192.168.45.3', '192.168.45.4')]
