# SPDX-License-Identifier: GPL-3.0-or-later
"""The ownership record's convergence (module_utils/ownership.py) on a faked host: which
objects a run removes, refuses, repairs and records. The kernel reads are replaced by a
small dictionary; tests/integration/test_change_matrix_*.py and test_ownership_role.py
prove the same on real namespaces."""
import json

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import ownership
from ansible_collections.linuxnet.netns.plugins.module_utils.nat_model import Entry, in_desired_order


class FakeHost(object):
    """Namespaces (name -> key) and host links (name -> ifindex) that exist now."""

    def __init__(self, monkeypatch, namespaces=None, links=None):
        self.namespaces = dict(namespaces or {})
        self.links = dict(links or {})
        monkeypatch.setattr(ownership, 'namespace_exists', lambda name: name in self.namespaces)
        monkeypatch.setattr(ownership, 'namespace_key', lambda name: self.namespaces[name] if name else 'cookie:1')
        monkeypatch.setattr(ownership, 'link_index', self.links.get)


def record(namespaces=None, pairs=None, routes=None, backends=('iptables',)):
    data = ownership.empty_record()
    data.update(namespaces=namespaces or {}, pairs=pairs or {}, routes=routes or [], backends=list(backends))
    return data


def parts(names, backend='auto'):
    return {
        'netns': {'namespaces': [{'name': name} for name in names]},
        'veth': {'pairs': [{'name': 'h-' + name, 'peer': 'eth0', 'peer_namespace': name,
                            'addresses': ['10.0.0.1/24'], 'peer_addresses': ['10.0.0.2/24']} for name in names]},
        'netns_route': {'routes': [{'namespace': name, 'dest': 'default', 'gateway': '10.0.0.1'} for name in names]},
        'sysctl_forward': {'ipv4': True, 'record_dir': '/run/x'},
        'nat_rule': {'rules': [], 'backend': backend, 'purge': True},
    }


def owned(*names, **keys):
    return dict((name, {'key': keys.get(name, 'cookie:%s' % name), 'adopted': False}) for name in names)


def test_a_namespace_that_left_the_list_is_removed_with_nothing_else(monkeypatch):
    FakeHost(monkeypatch, namespaces={'a': 'cookie:a', 'b': 'cookie:b'}, links={'h-a': 5, 'h-b': 6})
    rec = record(owned('a', 'b'), pairs={'h-a': {'namespace': 'a', 'ifindex': 5}, 'h-b': {'namespace': 'b', 'ifindex': 6}},
                 routes=[{'namespace': 'a', 'dest': 'default'}, {'namespace': 'b', 'dest': 'default'}])
    conv = ownership.Convergence(rec, 'present', [])
    result = conv.converge(parts(['a']))
    assert result['netns']['namespaces'] == [{'name': 'b', 'state': 'absent'}, {'name': 'a'}]
    # b's pair and route go with its namespace; a's pair is ours: addresses purged, drift repaired
    assert result['veth']['pairs'] == [dict(parts(['a'])['veth']['pairs'][0], purge_addresses=True, recreate=True)]
    assert result['netns_route']['routes'] == parts(['a'])['netns_route']['routes']
    assert result['nat_rule']['purge'] is True and not conv.last_gone


def test_an_existing_namespace_not_in_the_record_is_refused_unless_adopted(monkeypatch):
    FakeHost(monkeypatch, namespaces={'theirs': 'cookie:9'})
    with pytest.raises(ownership.OwnershipError) as failure:
        ownership.Convergence(record(), 'present', []).converge(parts(['theirs']))
    assert 'namespace theirs already exists and was not created by linuxnet.netns' in str(failure.value)
    conv = ownership.Convergence(record(), 'present', ['theirs'])
    result = conv.converge(parts(['theirs']))
    # adopted: its new pair is ours (addresses purged) but links in it are never recreated
    assert result['veth']['pairs'][0]['purge_addresses'] is True and 'recreate' not in result['veth']['pairs'][0]


def test_a_namespace_of_the_same_name_but_another_key_is_not_ours(monkeypatch):
    """The record names cookie:old; the namespace now called a is another one (recreated by hand)."""
    FakeHost(monkeypatch, namespaces={'a': 'cookie:new', 'b': 'cookie:b'})
    rec = record(owned('a', 'b', a='cookie:old'))
    result = ownership.Convergence(rec, 'present', []).converge(parts(['b']))
    assert {'name': 'a', 'state': 'absent'} not in result['netns']['namespaces']
    with pytest.raises(ownership.OwnershipError):
        ownership.Convergence(rec, 'present', []).converge(parts(['a', 'b']))


def test_a_foreign_host_link_with_the_pair_name_is_refused(monkeypatch):
    FakeHost(monkeypatch, links={'h-a': 3})
    with pytest.raises(ownership.OwnershipError) as failure:
        ownership.Convergence(record(), 'present', []).converge(parts(['a']))
    assert 'interface h-a already exists on the host' in str(failure.value)
    # the same name with the ifindex the record holds is ours
    FakeHost(monkeypatch, namespaces={'a': 'cookie:a'}, links={'h-a': 3})
    rec = record(owned('a'), pairs={'h-a': {'namespace': 'a', 'ifindex': 3}})
    assert ownership.Convergence(rec, 'present', []).converge(parts(['a']))['veth']['pairs'][0]['recreate'] is True


def test_a_renamed_host_interface_removes_the_old_pair_first(monkeypatch):
    FakeHost(monkeypatch, namespaces={'a': 'cookie:a'}, links={'old': 4})
    rec = record(owned('a'), pairs={'old': {'namespace': 'a', 'ifindex': 4}})
    result = ownership.Convergence(rec, 'present', []).converge(parts(['a']))
    assert result['veth']['pairs'][0] == {'name': 'old', 'state': 'absent'}
    assert result['veth']['pairs'][1]['name'] == 'h-a'


def test_a_route_that_left_the_list_is_removed_from_a_namespace_that_stays(monkeypatch):
    FakeHost(monkeypatch, namespaces={'a': 'cookie:a'})
    rec = record(owned('a'), routes=[{'namespace': 'a', 'dest': 'default'}, {'namespace': 'a', 'dest': '10.9.0.0/16'}])
    result = ownership.Convergence(rec, 'present', []).converge(parts(['a']))
    assert result['netns_route']['routes'][0] == {'namespace': 'a', 'dest': '10.9.0.0/16', 'family': 'ipv4',
                                                  'state': 'absent'}


def test_an_explicit_backend_switch_empties_the_recorded_backend(monkeypatch):
    FakeHost(monkeypatch, namespaces={'a': 'cookie:a'})
    conv = ownership.Convergence(record(owned('a'), backends=['iptables']), 'present', [])
    conv.converge(parts(['a'], backend='nftables'))
    assert conv.cleanup_backends == ['iptables']
    conv = ownership.Convergence(record(owned('a'), backends=['iptables']), 'present', [])
    conv.converge(parts(['a'], backend='auto'))  # auto stays with the backend that holds our rules
    assert conv.cleanup_backends == []


def test_absent_removes_what_the_record_holds_whatever_the_list_says(monkeypatch):
    FakeHost(monkeypatch, namespaces={'a': 'cookie:a', 'kept': 'cookie:k', 'stranger': 'cookie:s'},
             links={'h-a': 5, 'h-kept': 7})
    rec = record(dict(owned('a'), kept={'key': 'cookie:k', 'adopted': True}),
                 pairs={'h-a': {'namespace': 'a', 'ifindex': 5}, 'h-kept': {'namespace': 'kept', 'ifindex': 7}},
                 routes=[{'namespace': 'kept', 'dest': 'default'}], backends=['nftables', 'iptables'])
    conv = ownership.Convergence(rec, 'absent', [])
    result = conv.converge(parts(['stranger']))
    assert conv.last_gone
    # the adopted namespace stays; the pair and route the role added to it go; the stranger is untouched
    assert result['netns']['namespaces'] == [{'name': 'a', 'state': 'absent'}]
    assert result['veth']['pairs'] == [{'name': 'h-kept', 'state': 'absent'}]
    assert result['netns_route']['routes'] == [{'namespace': 'kept', 'dest': 'default', 'family': 'ipv4',
                                                'state': 'absent'}]
    assert result['sysctl_forward'] == {'restore': True, 'record_dir': '/run/x'}
    assert result['nat_rule'] == {'backend': 'nftables', 'rules': [], 'purge': True}
    assert conv.cleanup_backends == ['iptables']


def test_the_next_record_keeps_adoption_and_keys(monkeypatch):
    host = FakeHost(monkeypatch, namespaces={'theirs': 'cookie:t'})
    conv = ownership.Convergence(record(backends=[]), 'present', ['theirs'])
    given = parts(['theirs', 'new'])
    conv.converge(given)
    host.namespaces['new'] = 'cookie:n'
    host.links.update({'h-theirs': 11, 'h-new': 12})
    nxt = conv.next_record('nftables', {'tables': [], 'policies': {'4': 'ACCEPT'}})
    assert nxt['namespaces'] == {'theirs': {'key': 'cookie:t', 'adopted': True},
                                 'new': {'key': 'cookie:n', 'adopted': False}}
    assert nxt['pairs']['h-new'] == {'namespace': 'new', 'ifindex': 12, 'adopted': False}
    assert nxt['backends'] == ['nftables'] and nxt['firewall_before']['policies'] == {'4': 'ACCEPT'}
    assert nxt['routes'] == [{'namespace': 'theirs', 'dest': 'default', 'family': 'ipv4'},
                             {'namespace': 'new', 'dest': 'default', 'family': 'ipv4'}]


def test_a_file_that_is_not_a_record_of_ours_is_refused(tmp_path):
    path = tmp_path / 'owned.json'
    path.write_text(json.dumps({'something': 'else'}))
    with pytest.raises(ValueError):
        ownership.read_record(str(path))
    assert ownership.read_record(str(tmp_path / 'missing.json')) == ownership.empty_record()
    ownership.write_record(str(tmp_path / 'sub' / 'owned.json'), record(owned('a')))
    assert ownership.read_record(str(tmp_path / 'sub' / 'owned.json'))['namespaces'] == owned('a')


class FakeRunner(object):
    def __init__(self, outputs):
        self.outputs = outputs
        self.ran = []

    def which(self, name):
        return '/usr/sbin/' + name

    def run(self, argv, data=None, check=True):
        self.ran.append(argv)
        return self.outputs.get(' '.join(argv), (1, '', 'No such file or directory'))


def test_the_firewall_is_put_back_as_it_was_found():
    nft_table = json.dumps({'nftables': [{'metainfo': {}}, {'table': {'family': 'ip6', 'name': 'filter'}},
                                         {'chain': {'name': 'FORWARD', 'policy': 'drop'}}]})
    runner = FakeRunner({
        'iptables-save -t filter': (0, '*filter\n:FORWARD DROP [0:0]\nCOMMIT\n', ''),
        'ip6tables-save -t filter': (0, '*filter\n:FORWARD DROP [0:0]\nCOMMIT\n', ''),
        'iptables -w 10 -P FORWARD ACCEPT': (0, '', ''),
        'nft -j list table ip6 filter': (0, nft_table, ''),
        'nft delete table ip6 filter': (0, '', ''),
    })
    before = {'tables': ['ip filter'], 'policies': {'4': 'ACCEPT', '6': 'ACCEPT'}}
    commands = ownership.restore_firewall(runner, before)
    # ip filter existed: its policy goes back; ip6 filter did not: it goes (it holds no rule)
    assert commands == [['iptables', '-w', '10', '-P', 'FORWARD', 'ACCEPT'],
                        ['ip6tables', '-w', '10', '-P', 'FORWARD', 'ACCEPT'],
                        ['nft', 'delete', 'table', 'ip6', 'filter']]
    assert ['nft', 'delete', 'table', 'ip', 'filter'] not in runner.ran


def test_a_table_with_rules_is_never_deleted():
    with_rule = json.dumps({'nftables': [{'table': {}}, {'rule': {'expr': []}}]})
    runner = FakeRunner({'nft -j list table ip nat': (0, with_rule, '')})
    assert ownership.drop_table_if_empty(runner, 'ip', 'nat') == []
    assert ['nft', 'delete', 'table', 'ip', 'nat'] not in runner.ran


def entry(chain, tag):
    return Entry(4, 'nat', chain, 'lnt:%s 0' % tag, '-j X')


def test_an_added_rule_goes_in_front_of_the_kept_rule_that_follows_it():
    a, b, c = entry('P', 'a'), entry('P', 'b'), entry('P', 'c')
    ids = set([a.rule_id, b.rule_id, c.rule_id])
    # b kept, a new: appending a after b would give b, a instead of a, b
    keep, remove, add = in_desired_order([a, b], [b], [c], [a], ids)
    assert (keep, remove, add) == ([b], [c], [a]) and a.before is b
    # appending at the end is already the desired order
    a2, b2 = entry('P', 'a'), entry('P', 'b')
    assert in_desired_order([a2, b2], [a2], [], [b2], ids) == ([a2], [], [b2]) and b2.before is None


def test_kept_rules_out_of_the_desired_order_are_rewritten():
    a, b = entry('P', 'a'), entry('P', 'b')
    ids = set([a.rule_id, b.rule_id])
    keep, remove, add = in_desired_order([a, b], [b, a], [], [], ids)
    assert keep == [] and remove == [b, a] and add == [a, b]


def test_an_adopted_pair_keeps_its_own_addresses_and_loses_the_ones_the_role_added(monkeypatch):
    host = FakeHost(monkeypatch, namespaces={'theirs': 'cookie:t'}, links={'h-theirs': 8})
    before = {(None, 'h-theirs'): set(['192.0.2.9/24']), ('theirs', 'eth0'): set()}
    conv = ownership.Convergence(record(), 'present', ['theirs'], read_addresses=lambda ns, name: before[(ns, name)])
    given = parts(['theirs'])
    result = conv.converge(given)
    assert 'purge_addresses' not in result['veth']['pairs'][0]  # the admin's own address stays
    nxt = conv.next_record('iptables', None)
    assert nxt['pairs']['h-theirs']['added'] == {'host': ['10.0.0.1/24'], 'peer': ['10.0.0.2/24']}
    # the pair leaves the list: only the addresses the role added go, the pair itself stays
    conv = ownership.Convergence(nxt, 'present', [], read_addresses=lambda ns, name: set())
    result = conv.converge(parts([]))
    assert 'veth' not in result
    assert conv.address_removals == [(None, 'h-theirs', '10.0.0.1/24'), ('theirs', 'eth0', '10.0.0.2/24')]
    assert host.links['h-theirs'] == 8


def test_a_stuck_xtables_lock_fails_with_a_reason_and_a_bound():
    from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import CommandFailed, XTABLES_WAIT
    failure = CommandFailed(['iptables-legacy-restore', '--noflush', '-w', str(XTABLES_WAIT)], 4, '',
                            'Another app is currently holding the xtables lock. Stopped waiting after 10s.\n')
    assert 'held the xtables lock' in str(failure) and '(10 s)' in str(failure)
    assert 'nothing was changed' in str(failure)


def host_checked(monkeypatch, host, rules, links=None, check_mode=False):
    FakeHost(monkeypatch, links=dict({'eth0': 2}, **(links or {})))
    given = parts(['a'])
    given['nat_rule']['rules'] = rules
    conv = ownership.Convergence(record(), 'present', [], host_addresses=lambda: host, check_mode=check_mode)
    return conv, given


def test_an_inner_subnet_on_a_network_the_host_is_on_is_refused(monkeypatch):
    conv, given = host_checked(monkeypatch, {'eth0': {'10.0.0.7/28'}, 'lo': {'127.0.0.1/8'}}, [])
    with pytest.raises(ownership.OwnershipError) as failure:
        conv.converge(given)
    assert "the inner subnet 10.0.0.0/24 of h-a overlaps 10.0.0.0/28 of the host's interface eth0" in str(failure.value)
    conv, given = host_checked(monkeypatch, {'eth0': {'192.168.1.32/24'}}, [])
    conv.converge(given)  # another network: fine


def test_the_egress_interface_must_exist_and_check_mode_only_warns(monkeypatch):
    masq = [{'kind': 'masquerade', 'source': '10.0.0.0/24', 'out_interface': 'up9'}]
    conv, given = host_checked(monkeypatch, {'eth0': {'192.168.1.32/24'}}, masq)
    with pytest.raises(ownership.OwnershipError) as failure:
        conv.converge(given)
    assert 'the egress interface up9 (out_interface of the masquerade rule for 10.0.0.0/24) does not exist' \
        in str(failure.value)
    conv, given = host_checked(monkeypatch, {'eth0': {'192.168.1.32/24'}}, masq, check_mode=True)
    conv.converge(given)
    assert conv.warnings and 'check mode goes on' in conv.warnings[0]


def test_a_snat_address_must_be_one_of_the_hosts(monkeypatch):
    snat = [{'kind': 'snat', 'source': '10.0.0.0/24', 'out_interface': 'eth0', 'to_source': '192.168.1.99'}]
    conv, given = host_checked(monkeypatch, {'eth0': {'192.168.1.32/24'}}, snat)
    with pytest.raises(ownership.OwnershipError) as failure:
        conv.converge(given)
    assert 'snat_address 192.168.1.99 (to_source of the snat rule for 10.0.0.0/24) is not an address of the host' \
        in str(failure.value)
    snat[0]['to_source'] = '192.168.1.32'
    conv, given = host_checked(monkeypatch, {'eth0': {'192.168.1.32/24'}}, snat)
    conv.converge(given)


def test_check_mode_lists_the_policies_it_would_put_back_and_runs_nothing():
    runner = FakeRunner({'iptables-save -t filter': (0, '*filter\n:FORWARD DROP [0:0]\nCOMMIT\n', ''),
                         'ip6tables-save -t filter': (0, '*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n', '')})
    before = {'tables': [], 'chains': [], 'policies': {'4': 'ACCEPT', '6': 'ACCEPT'}}
    assert ownership.restore_firewall(runner, before, check_mode=True) == [
        ['iptables', '-w', '10', '-P', 'FORWARD', 'ACCEPT']]
    assert all(argv[0].endswith('-save') for argv in runner.ran)  # only reads
