# SPDX-License-Identifier: GPL-3.0-or-later
"""veth module without root: input validation, argument handling, the diff and the plan
computed from hand-made namespace state, and the link/address helpers it uses."""
import ipaddress
import json
import struct

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.linuxnet.netns.plugins.doc_fragments.netns import ModuleDocFragment
from ansible_collections.linuxnet.netns.plugins.module_utils import links
from ansible_collections.linuxnet.netns.plugins.module_utils.links import Link, LinkState
from ansible_collections.linuxnet.netns.plugins.module_utils import veth_call as veth
from ansible_collections.linuxnet.netns.plugins.modules import veth as veth_module


def ip(text):
    return ipaddress.ip_interface(text)


def params(**overrides):
    base = dict(pairs=None, name=None, peer=None, namespace=None, peer_namespace=None, addresses=None,
                peer_addresses=None, mtu=None, up=True, state='present', purge_addresses=False, recreate=False)
    base.update(overrides)
    return base


def one_spec(**overrides):
    specs, errors = veth.validate_pairs(params(**overrides))
    assert errors == []
    assert len(specs) == 1
    return specs[0]


def errors_of(**overrides):
    specs, errors = veth.validate_pairs(params(**overrides))
    return dict((e.field, e) for e in errors)


# --- validation --------------------------------------------------------------------

def test_valid_single_pair_defaults():
    spec = one_spec(name='veth1', peer='veth2', peer_namespace='myspace', addresses=['192.168.45.2/24'])
    assert (spec.name, spec.peer, spec.namespace, spec.peer_namespace) == ('veth1', 'veth2', None, 'myspace')
    assert spec.addresses == {ip('192.168.45.2/24')}
    assert spec.peer_addresses is None  # unset: not managed
    assert spec.up is True and spec.purge is False and spec.recreate is False and spec.mtu is None


def test_peer_namespace_defaults_to_namespace():
    spec = one_spec(name='a', peer='b', namespace='ns1')
    assert spec.peer_namespace == 'ns1'


def test_top_level_options_are_defaults_for_list_items():
    specs, errors = veth.validate_pairs(params(
        namespace='host1', mtu=1400, up=False, purge_addresses=True,
        pairs=[dict(name='a1', peer='b1', peer_namespace='t1'),
               dict(name='a2', peer='b2', namespace='other', mtu=9000, up=True, purge_addresses=False)]))
    assert errors == []
    first, second = specs
    assert (first.namespace, first.peer_namespace, first.mtu, first.up, first.purge) == ('host1', 't1', 1400, False, True)
    assert (second.namespace, second.peer_namespace, second.mtu, second.up, second.purge) == ('other', 'other', 9000, True, False)
    assert (first.field, second.field) == ('pairs[0].', 'pairs[1].')


@pytest.mark.parametrize('overrides, field, fragment', [
    (dict(name='a-very-long-name0', peer='b'), 'name', 'at most 15 bytes'),
    (dict(name='a', peer='b', peer_namespace='bad/name'), 'peer_namespace', 'single path component'),
    (dict(name='a', peer='b', namespace='..'), 'namespace', 'single path component'),
    (dict(name='a', peer='b', addresses=['10.0.0.300/24']), 'addresses[0]', 'not a valid'),
    (dict(name='a', peer='b', addresses=['10.0.0.1']), 'addresses[0]', 'prefix length'),
    (dict(name='a', peer='b', peer_addresses=['10.0.0.1/24', 'fe80::1/64']), 'peer_addresses[1]', 'link-local'),
    (dict(name='a', peer='b', addresses=['10.0.0.1/24', '10.0.0.1/16']), 'addresses[1]', 'already listed'),
    (dict(name='a', peer='b', mtu=67), 'mtu', 'from 68 to 65535'),
    (dict(name='a', peer='b', mtu=65536), 'mtu', 'from 68 to 65535'),
    (dict(name='a', peer='b', mtu=1000, peer_addresses=['fd42::2/64']), 'mtu', 'at least 1280'),
    (dict(name='a'), 'peer', 'required when state is present'),
    (dict(name='a', peer='a'), 'peer', 'different names'),
    (dict(name='bad name', peer='b'), 'name', 'may contain only'),
])
def test_invalid_input_names_the_field(overrides, field, fragment):
    errors = errors_of(**overrides)
    assert field in errors, errors
    assert fragment in str(errors[field])


def test_absent_needs_no_peer():
    spec = one_spec(name='a', state='absent')
    assert spec.state == 'absent' and spec.peer is None


def test_every_error_of_a_list_is_reported_with_its_index():
    errors = errors_of(pairs=[dict(name='x' * 16, peer='b'), dict(name='c', peer='d', addresses=['nonsense'])])
    assert set(errors) == {'pairs[0].name', 'pairs[1].addresses[0]'}


def test_an_interface_named_twice_is_rejected():
    errors = errors_of(namespace='h', pairs=[dict(name='a', peer='b', peer_namespace='t'),
                                             dict(name='c', peer='b', peer_namespace='t')])
    assert 'pairs[1].peer' in errors
    assert 'b@t is already named by pairs[0].peer' in str(errors['pairs[1].peer'])


def test_same_name_in_two_namespaces_is_fine():
    specs, errors = veth.validate_pairs(params(pairs=[dict(name='eth0', peer='h1', namespace='t1', peer_namespace='h'),
                                                      dict(name='eth0', peer='h2', namespace='t2', peer_namespace='h')]))
    assert errors == [] and len(specs) == 2


# --- argument handling (AnsibleModule) ------------------------------------------------

def run_main(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            veth_module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_pairs_and_name_are_mutually_exclusive(capsys):
    rc, result = run_main({'name': 'a', 'peer': 'b', 'pairs': [{'name': 'c', 'peer': 'd'}]}, capsys)
    assert rc == 1 and result['failed']
    assert 'mutually exclusive' in result['msg'] and 'pairs' in result['msg']


def test_name_or_pairs_is_required(capsys):
    rc, result = run_main({'peer': 'b'}, capsys)
    assert rc == 1 and 'one of the following is required' in result['msg']


def test_validation_failure_reports_field_value_and_all_errors(capsys):
    rc, result = run_main({'pairs': [{'name': 'ok', 'peer': 'ok2', 'addresses': ['1.2.3.4/33']},
                                     {'name': 'x' * 20, 'peer': 'y'}]}, capsys)
    assert rc == 1
    assert result['field'] == 'pairs[0].addresses[0]' and result['value'] == '1.2.3.4/33'
    assert result['msg'].startswith('invalid input: pairs[0].addresses[0]=')
    assert len(result['errors']) == 2 and 'pairs[1].name' in result['errors'][1]


def test_unknown_item_option_is_rejected(capsys):
    rc, result = run_main({'pairs': [{'name': 'a', 'peer': 'b', 'adresses': ['10.0.0.1/24']}]}, capsys)
    assert rc == 1 and 'adresses' in result['msg']


# --- documentation matches the argument spec ------------------------------------------

def documented_options(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = dict(doc['options'])
    for fragment in doc.get('extends_documentation_fragment', []):
        if fragment == 'linuxnet.netns.netns':
            options.update(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options'])
    return options


def compare_spec(spec, documented, path=''):
    problems = []
    if set(spec) != set(documented):
        problems.append('%s options differ: spec=%s doc=%s' % (path, sorted(spec), sorted(documented)))
    for name in set(spec) & set(documented):
        s, d = spec[name], documented[name]
        for key in ('type', 'elements', 'default', 'choices', 'required'):
            if s.get(key, False if key == 'required' else None) != d.get(key, False if key == 'required' else None):
                problems.append('%s%s.%s: spec=%r doc=%r' % (path, name, key, s.get(key), d.get(key)))
        if 'options' in s or 'suboptions' in d:
            problems += compare_spec(s.get('options', {}), d.get('suboptions', {}), path + name + '.')
    return problems


def test_documentation_matches_argument_spec():
    assert compare_spec(veth.argument_spec(), documented_options(veth_module)) == []


# --- pure helpers ------------------------------------------------------------------

def test_address_changes_compares_sets_and_keeps_unlisted_without_purge():
    current = {ip('10.0.0.1/24'), ip('10.9.9.9/32'), ip('fe80::1/64')}
    assert links.address_changes(current, {ip('10.0.0.1/24'), ip('fd42::1/64')}) == ([], [ip('fd42::1/64')])


def test_address_changes_purge_never_touches_link_local():
    current = {ip('10.0.0.1/24'), ip('10.9.9.9/32'), ip('fe80::1/64')}
    remove, add = links.address_changes(current, {ip('10.0.0.1/24')}, purge=True)
    assert remove == [ip('10.9.9.9/32')] and add == []


def test_address_changes_replaces_a_different_prefix_length():
    remove, add = links.address_changes({ip('fd42::1/56')}, {ip('fd42::1/64')})
    assert remove == [ip('fd42::1/56')] and add == [ip('fd42::1/64')]


def test_address_changes_unmanaged_list_changes_nothing():
    assert links.address_changes({ip('10.0.0.1/24')}, None, purge=True) == ([], [])


def test_commands_use_nodad_for_ipv6_only():
    assert links.address_add_command('ns1', 'veth2', ip('fd42::2/64')) == 'ip -n ns1 addr add fd42::2/64 dev veth2 nodad'
    assert links.address_add_command(None, 'veth1', ip('10.0.0.1/24')) == 'ip addr add 10.0.0.1/24 dev veth1'


def nla(kind, payload):
    """One netlink attribute, built by hand (independently of links.py)."""
    padded = payload + b'\0' * ((4 - len(payload) % 4) % 4)
    return struct.pack('=HH', 4 + len(payload), kind) + padded


def test_parse_link_reads_name_kind_peer_and_state():
    body = (struct.pack('=BxHiII', 0, 1, 5, 0x1003, 0)
            + nla(3, b'veth1\0') + nla(4, struct.pack('=I', 1400)) + nla(5, struct.pack('=I', 7))
            + nla(7, b'\xff' * 13)  # an attribute we do not read, with padding
            + nla(18 | 0x8000, nla(1, b'veth\0') + nla(2, b'')) + nla(37, struct.pack('=i', 3)))
    link = links.parse_link(body)
    assert (link.name, link.index, link.kind, link.up, link.mtu, link.peer_index, link.peer_netnsid) == \
        ('veth1', 5, 'veth', True, 1400, 7, 3)
    lo = links.parse_link(struct.pack('=BxHiII', 0, 772, 1, 0x8, 0) + nla(3, b'lo\0') + nla(4, struct.pack('=I', 65536)))
    assert (lo.name, lo.kind, lo.up, lo.peer_index) == ('lo', None, False, None) and not lo.is_veth


def test_parse_address_own_and_connected():
    # point to point: IFA_LOCAL is ours, IFA_ADDRESS the far end (its subnet is the connected one)
    body = struct.pack('=BBBBI', 2, 32, 0x80, 0, 4) + nla(1, bytes([10, 0, 0, 2])) + nla(2, bytes([10, 0, 0, 1]))
    assert links.parse_address(body) == (4, ip('10.0.0.1/32'), ip('10.0.0.2/32'))
    body = struct.pack('=BBBBI', 2, 24, 0x80, 0, 4) + nla(2, bytes([10, 0, 0, 1])) + nla(1, bytes([10, 0, 0, 1]))
    assert links.parse_address(body) == (4, ip('10.0.0.1/24'), ip('10.0.0.1/24'))
    v6 = ipaddress.ip_address('fd42::1').packed
    v6_body = struct.pack('=BBBBI', 10, 64, 0, 0, 9) + nla(1, v6)
    assert links.parse_address(v6_body) == (9, ip('fd42::1/64'), ip('fd42::1/64'))
    assert links.parse_address(struct.pack('=BBBBI', 7, 0, 0, 0, 9) + nla(1, b'\x01\x02')) is None
    assert links.parse_address(struct.pack('=BBBBI', 2, 24, 0, 0, 9)) is None


def test_read_addresses_skips_ipv6_link_local_only():
    def message(family, prefixlen, packed):
        return links.RTM_NEWADDR, struct.pack('=BBBBI', family, prefixlen, 0, 0, 3) + nla(1, packed)

    class Dumps:
        def dump(self, kind, payload):
            return [message(10, 64, ipaddress.ip_address(text).packed) for text in ('fe80::1', 'febf:ffff::1', 'fec0::1')] + [
                message(2, 16, bytes([169, 254, 0, 1]))]

    # fec0::1 lies just outside fe80::/10; IPv4 link-local addresses are configured ones
    assert links.read_addresses(Dumps()) == {3: {ip('fec0::1/64'), ip('169.254.0.1/16')}}


def test_iter_messages_splits_a_datagram():
    first = struct.pack('=IHHII', 16 + 4, 16, 2, 7, 0) + b'abcd'
    second = struct.pack('=IHHII', 16 + 3, 3, 2, 7, 0) + b'xyz\0'
    assert list(links.iter_messages(first + second)) == [(16, 2, 7, b'abcd'), (3, 2, 7, b'xyz')]


def test_veth_paired_checks_indexes_and_namespace():
    a = Link('v1', 5, 'veth', peer_index=9, peer_netnsid=2)
    b = Link('v2', 9, 'veth', peer_index=5, peer_netnsid=0)
    assert veth.veth_paired(a, b, same_namespace=False, expected_netnsid=2)
    # Same indexes, but the peer lives in the namespace with id 2, not in the one with id 4.
    assert not veth.veth_paired(a, b, same_namespace=False, expected_netnsid=4)
    assert not veth.veth_paired(a, b, same_namespace=False, expected_netnsid=None)
    assert not veth.veth_paired(a, Link('v2', 9, 'veth', peer_index=6), False, 2)
    assert not veth.veth_paired(a, Link('v2', 9, 'bridge'), False, 2)
    local_a = Link('v1', 5, 'veth', peer_index=6)
    local_b = Link('v2', 6, 'veth', peer_index=5)
    assert veth.veth_paired(local_a, local_b, same_namespace=True, expected_netnsid=None)
    assert not veth.veth_paired(a, b, same_namespace=True, expected_netnsid=None)


# --- plans from fake state -----------------------------------------------------------

def state_with(*entries):
    """LinkState from (Link, [addresses]) tuples."""
    return LinkState([entry[0] for entry in entries],
                     dict((link.index, set(ip(a) for a in addrs)) for link, addrs in entries))


EMPTY = LinkState()


def article_spec(**overrides):
    values = dict(name='veth1', peer='veth2', namespace='host', peer_namespace='myspace',
                  addresses=['192.168.45.2/24'], peer_addresses=['192.168.45.3/24', 'fd42::3/64'])
    values.update(overrides)
    return one_spec(**values)


def existing_pair(addresses=('192.168.45.2/24',), peer_addresses=('192.168.45.3/24', 'fd42::3/64'),
                  mtu=1500, peer_up=True):
    host = state_with((Link('veth1', 10, 'veth', up=True, mtu=mtu, peer_index=2, peer_netnsid=7), list(addresses)))
    inner = state_with((Link('lo', 1, None, up=True, mtu=65536), []),
                       (Link('veth2', 2, 'veth', up=peer_up, mtu=mtu, peer_index=10, peer_netnsid=0),
                        list(peer_addresses) + ['fe80::1/64']))
    return host, inner


def test_plan_create_lists_commands_and_after_line():
    plan = veth.plan_pair(article_spec(mtu=1400), 'host', 'myspace', EMPTY, EMPTY, None)
    assert plan.create and plan.conflict is None and plan.before is None
    assert plan.commands == [
        'ip -n host link add veth1 up mtu 1400 type veth peer name veth2 mtu 1400 netns myspace',
        'ip -n host addr add 192.168.45.2/24 dev veth1',
        'ip -n myspace link set veth2 up',
        'ip -n myspace addr add 192.168.45.3/24 dev veth2',
        'ip -n myspace addr add fd42::3/64 dev veth2 nodad',
    ]
    assert veth.pair_line(plan.after) == ('veth1@host <-> veth2@myspace mtu=1400 up addresses=[192.168.45.2/24] '
                                          'peer_addresses=[192.168.45.3/24, fd42::3/64]')


def test_plan_create_from_own_namespace_mirrors_when_only_the_peer_is_local():
    plan = veth.plan_pair(veth.PairSpec('', 'eth0', 'tap1', 'tenant', None), 'tenant', None, EMPTY, EMPTY, None)
    assert plan.commands == ['ip link add tap1 up type veth peer name eth0 netns tenant',
                             'ip -n tenant link set eth0 up']
    assert veth.creator_of(plan) == (None, 'tap1', 'eth0', 'tenant')


def test_plan_create_down_pair_in_one_namespace_is_one_command():
    plan = veth.plan_pair(one_spec(name='a', peer='b', namespace='lab', up=False), 'lab', 'lab', EMPTY, EMPTY, None)
    assert plan.commands == ['ip -n lab link add a type veth peer name b']
    assert plan.ends == []
    assert veth.pair_line(plan.after) == 'a@lab <-> b@lab mtu=1500 down addresses=[] peer_addresses=[]'


def test_plan_in_sync_changes_nothing_and_ignores_link_local():
    host, inner = existing_pair()
    plan = veth.plan_pair(article_spec(purge_addresses=True), 'host', 'myspace', host, inner, 7)
    assert plan.commands == [] and plan.conflict is None and not plan.create
    before, after = plan.lines()
    assert before == after == ('veth1@host <-> veth2@myspace mtu=1500 up addresses=[192.168.45.2/24] '
                               'peer_addresses=[192.168.45.3/24, fd42::3/64]')


def test_plan_repairs_drift_on_both_ends():
    host, inner = existing_pair(peer_addresses=('192.168.45.3/24', '10.99.0.1/8'), mtu=1500, peer_up=False)
    plan = veth.plan_pair(article_spec(mtu=1400, purge_addresses=True), 'host', 'myspace', host, inner, 7)
    assert plan.commands == [
        'ip -n host link set veth1 mtu 1400',
        'ip -n myspace link set veth2 mtu 1400',
        'ip -n myspace link set veth2 up',
        'ip -n myspace addr del 10.99.0.1/8 dev veth2',
        'ip -n myspace addr add fd42::3/64 dev veth2 nodad',
    ]
    before, after = plan.lines()
    assert before == ('veth1@host <-> veth2@myspace mtu=1500 up/down addresses=[192.168.45.2/24] '
                      'peer_addresses=[10.99.0.1/8, 192.168.45.3/24]')
    assert after == ('veth1@host <-> veth2@myspace mtu=1400 up addresses=[192.168.45.2/24] '
                     'peer_addresses=[192.168.45.3/24, fd42::3/64]')


def test_plan_without_purge_keeps_unlisted_addresses():
    host, inner = existing_pair(addresses=('192.168.45.2/24', '10.5.5.5/32'))
    plan = veth.plan_pair(article_spec(), 'host', 'myspace', host, inner, 7)
    assert plan.commands == []
    assert '10.5.5.5/32' in plan.lines()[1]


def test_plan_wrong_peer_namespace_is_a_conflict():
    host, inner = existing_pair()
    located = []

    def locate(key, link):
        located.append((key, link.name))
        return 'veth2', 'elsewhere'
    # veth1's peer lives in the namespace with id 7; myspace has id 3 here.
    plan = veth.plan_pair(article_spec(), 'host', 'myspace', host, inner, 3, locate)
    assert plan.conflict == 'veth1@host exists but its peer is veth2@elsewhere, not veth2@myspace'
    assert plan.commands == [] and located == [('host', 'veth1')]
    assert plan.before['peer_namespace'] == 'elsewhere'


def test_plan_wrong_peer_with_recreate_deletes_both_names_then_creates():
    host, inner = existing_pair()
    spec = article_spec(peer='veth9', recreate=True)
    inner_with_veth9 = state_with((Link('veth9', 4, 'bridge'), []))
    plan = veth.plan_pair(spec, 'host', 'myspace', host, inner_with_veth9, 7, lambda key, link: ('veth2', 'myspace'))
    assert plan.conflict is None and plan.create
    assert [(item[0], item[2].name) for item in plan.delete] == [('host', 'veth1'), ('myspace', 'veth9')]
    assert plan.commands[:3] == ['ip -n host link del veth1', 'ip -n myspace link del veth9',
                                 'ip -n host link add veth1 up type veth peer name veth9 netns myspace']


def test_plan_name_taken_by_a_bridge_is_a_conflict():
    host = state_with((Link('veth1', 3, 'bridge'), ['10.0.0.1/24']))
    plan = veth.plan_pair(article_spec(), 'host', 'myspace', host, EMPTY, None)
    assert plan.conflict == 'veth1@host exists and is a bridge, not a veth'
    assert veth.pair_line(plan.before) == 'veth1@host (bridge, not a veth)'


def test_plan_peer_name_taken_is_a_conflict():
    inner = state_with((Link('veth2', 3, None), []))
    plan = veth.plan_pair(article_spec(), 'host', 'myspace', EMPTY, inner, None)
    assert plan.conflict == ('veth1@host does not exist but the peer name veth2@myspace is taken by a '
                             'device without a link kind')


def test_plan_absent_deletes_the_first_end_and_shows_the_pair():
    host, inner = existing_pair()
    plan = veth.plan_pair(one_spec(name='veth1', peer='veth2', namespace='host', peer_namespace='myspace',
                                   state='absent'), 'host', 'myspace', host, inner, 7)
    assert plan.commands == ['ip -n host link del veth1']
    assert plan.lines() == ('veth1@host <-> veth2@myspace mtu=1500 up addresses=[192.168.45.2/24] '
                            'peer_addresses=[192.168.45.3/24, fd42::3/64]', None)


def test_plan_absent_of_missing_pair_changes_nothing():
    plan = veth.plan_pair(one_spec(name='veth1', state='absent'), None, None, EMPTY, EMPTY, None)
    assert plan.commands == [] and plan.lines() == (None, None)


def test_plan_absent_refuses_to_delete_a_non_veth():
    host = state_with((Link('veth1', 3, 'bridge'), []))
    plan = veth.plan_pair(one_spec(name='veth1', namespace='host', state='absent'), 'host', 'host', host, host, None)
    assert plan.conflict == 'veth1@host is a bridge, not a veth; refusing to delete it'
    assert plan.commands == []


def test_same_namespace_pair_is_shown_whole_from_one_state():
    ns = state_with((Link('a', 4, 'veth', up=True, mtu=1500, peer_index=5), ['10.0.0.1/30']),
                    (Link('b', 5, 'veth', up=False, mtu=1500, peer_index=4), ['10.0.0.2/30']))
    view = veth.link_view(ns.link('a'), 'lab', ns)
    assert veth.pair_line(view) == 'a@lab <-> b@lab mtu=1500 up/down addresses=[10.0.0.1/30] peer_addresses=[10.0.0.2/30]'


def test_report_of_plans_is_changed_only_when_commands_exist():
    host, inner = existing_pair()
    unchanged = veth.plan_pair(article_spec(), 'host', 'myspace', host, inner, 7)
    created = veth.plan_pair(article_spec(name='veth3', peer='veth4'), 'host', 'myspace', host, inner, 7)
    assert not veth.build_report([unchanged]).changed
    report = veth.build_report([unchanged, created])
    assert report.changed and report.commands == created.commands
    assert veth.pair_result(created)['changed'] and not veth.pair_result(unchanged)['changed']
