# SPDX-License-Identifier: GPL-3.0-or-later
"""netns_topology against the real kernel, real iptables/nft: one call builds the reference
topology (two inner namespaces behind a host namespace, veth pairs, default routes, IPv4
forwarding with its record, masquerade + DNAT) with both backends, idempotence, check mode
on a clean host, diff mode, report=full/changed, state=absent in the role's order, rollback
of the earlier parts when a later part fails, and bad input of a part.

Every namespace is made here (``netns`` fixture) or reserved here and made by the module;
the "host" is a namespace too, so nothing touches the root namespace."""
import json
import os
import re

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils.topology import ORDER
from tests.support import harness

# Carries this run's prefix, so a namespace created by mistake would show in snapshot_own.
MISSING_NS = harness.PREFIX + 'missing'

UPLINK = '10.62.0.1'        # the host namespace's eth0
WAN = '10.62.0.2'           # the outside namespace at the other end of eth0
INNER_NET = '10.61.0.0/16'  # every inner subnet
PRESENT_ORDER = list(ORDER['present'])
ROLE_ABSENT_ORDER = ['nat_rule', 'veth', 'netns', 'sysctl_forward']  # roles/netns_nat/tasks/absent.yml


def wait_settled(ns, names, timeout=10.0):
    """Carrier and IPv6 link-local addresses arrive asynchronously after `link set up`;
    wait for them, so that a snapshot taken before a call equals one taken after."""
    def settled():
        links, addresses = harness.links(ns), harness.addresses(ns)
        return all('LOWER_UP' in links[name]['flags'] and any(a.startswith('fe80:') for a in addresses[name])
                   for name in names)
    assert harness.wait_for(settled, timeout), \
        'links %s in %s did not come up: %r' % (names, ns, harness.addresses(ns))


class Topology(object):
    """A host namespace with an uplink (eth0, 10.62.0.1/24) to an outside namespace
    (10.62.0.2, no route to the inner subnets), and the options of netns_topology that put
    two inner namespaces behind the host: pair vhN <-> eth0 on 10.61.N.0/24, default
    route via the host end, IPv4 forwarding in the host, masquerade to eth0 and a DNAT of
    10.62.0.1:8080 to inner1:80."""

    def __init__(self, netns, tmp_path, backend):
        self.host = netns('th')
        self.wan = netns('tw')
        self.inner = [netns('ti', create=False), netns('ti', create=False)]
        self.record_dir = str(tmp_path / 'state')  # does not exist yet: sysctl_forward makes it
        self.backend = backend
        harness.sh(['ip', '-n', self.host, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0',
                    'netns', self.wan])
        harness.sh(['ip', '-n', self.host, 'addr', 'add', UPLINK + '/24', 'dev', 'eth0'])
        harness.sh(['ip', '-n', self.wan, 'addr', 'add', WAN + '/24', 'dev', 'eth0'])
        harness.sh(['ip', '-n', self.host, 'link', 'set', 'eth0', 'up'])
        harness.sh(['ip', '-n', self.wan, 'link', 'set', 'eth0', 'up'])
        wait_settled(self.host, ['eth0'])

    def host_end(self, index):
        return 'vh%d' % (index + 1)

    def host_address(self, index):
        return '10.61.%d.1' % (index + 1)

    def inner_address(self, index):
        return '10.61.%d.2' % (index + 1)

    def rules(self):
        return [dict(kind='masquerade', source=INNER_NET, out_interface='eth0'),
                dict(kind='dnat', protocol='tcp', port=8080, destination=UPLINK,
                     to_address=self.inner_address(0), to_port=80)]

    def present(self, **extra):
        args = dict(
            netns=dict(namespaces=[dict(name=name) for name in self.inner]),
            veth=dict(namespace=self.host, pairs=[
                dict(name=self.host_end(i), peer='eth0', peer_namespace=name,
                     addresses=[self.host_address(i) + '/24'], peer_addresses=[self.inner_address(i) + '/24'])
                for i, name in enumerate(self.inner)]),
            netns_route=dict(routes=[dict(namespace=name, dest='default', gateway=self.host_address(i))
                                     for i, name in enumerate(self.inner)]),
            sysctl_forward=dict(namespace=self.host, ipv4=True, record_dir=self.record_dir),
            nat_rule=dict(namespace=self.host, backend=self.backend, rules=self.rules()),
        )
        args.update(extra)
        return args

    def absent(self):
        """The parts the role's state=absent passes (no netns_route: the routes go with the
        pairs, and a second run would find no namespace to read them in)."""
        return dict(
            state='absent',
            nat_rule=dict(namespace=self.host, backend=self.backend, rules=self.rules()),
            veth=dict(namespace=self.host, pairs=[dict(name=self.host_end(i)) for i in range(len(self.inner))]),
            netns=dict(namespaces=[dict(name=name) for name in self.inner]),
            sysctl_forward=dict(namespace=self.host, restore=True, record_dir=self.record_dir),
        )

    def snapshot(self):
        return harness.snapshot_own([self.host] + self.inner)

    def record(self):
        return harness.forwarding_record(self.host, self.record_dir)


@pytest.fixture
def topo(netns, tmp_path):
    return Topology(netns, tmp_path, 'iptables')


def topology(args, check=False, diff=False):
    return harness.run_module('netns_topology', args, check=check, diff=diff)


def assert_ok(result, changed):
    assert result['_rc'] == 0 and not result.get('failed'), result.get('msg')
    assert result['changed'] is changed, result


def assert_failed(result, part):
    assert result['_rc'] != 0 and result.get('failed') is True, result
    assert result['failed_part'] == part, result
    assert result['msg'].startswith(part + ': '), result['msg']


def ip_forward(ns):
    """net.ipv4.ip_forward read inside ns with sysctl(8), not with our code."""
    return int(harness.nsexec(ns, ['sysctl', '-n', 'net.ipv4.ip_forward']).strip())


def global_addresses(ns, ifname):
    return [a for a in harness.addresses(ns).get(ifname, []) if not a.startswith('fe80:')]


def peer_namespace_of(ns, ifname):
    """The namespace the peer of veth ``ifname`` lives in, as iproute2 sees it."""
    info = json.loads(harness.sh(['ip', '-n', ns, '-j', '-d', 'link', 'show', 'dev', ifname]))[0]
    assert info['linkinfo']['info_kind'] == 'veth', info
    ids = json.loads(harness.sh(['ip', '-n', ns, '-j', 'netns', 'list-id']) or '[]')
    return dict((entry['nsid'], entry.get('name')) for entry in ids)[info['link_netnsid']]


def default_routes(ns):
    return [line.strip() for line in harness.sh(['ip', '-n', ns, 'route', 'show', 'default']).splitlines()
            if line.strip()]


def probe(**args):
    result = harness.run_module('netns_probe', args)
    assert result['_rc'] == 0, result
    return result


# --- the reference topology -------------------------------------------------------------------

def test_reference_topology_builds_once_then_is_unchanged(netns, tmp_path, backend):
    topo = Topology(netns, tmp_path, backend)
    args = topo.present()

    first = topology(args)
    assert_ok(first, True)
    assert first['parts'] == PRESENT_ORDER
    assert first['changed_parts'] == PRESENT_ORDER
    # The call's commands are the parts' commands, in the order the parts ran.
    assert first['commands'] == [c for part in PRESENT_ORDER for c in first[part]['commands']]
    assert first['netns']['created'] == topo.inner
    assert [p['name'] for p in first['veth']['pairs']] == ['vh1', 'vh2'] and first['veth']['unchanged'] == 0
    assert [r['action'] for r in first['netns_route']['routes']] == ['added', 'added']
    assert first['sysctl_forward']['before'] == {topo.host: {'net.ipv4.ip_forward': 0}}
    assert first['sysctl_forward']['after'] == {topo.host: {'net.ipv4.ip_forward': 1}}
    assert first['nat_rule']['backend'] == backend and first['nat_rule']['rules_added']
    assert 'pending_namespaces' not in first and 'diff' not in first

    # The kernel holds what was asked for, read with iproute2, sysctl(8), iptables-save and nft.
    assert set(topo.inner) <= set(harness.list_netns())
    for i, name in enumerate(topo.inner):
        assert peer_namespace_of(topo.host, topo.host_end(i)) == name
        assert global_addresses(topo.host, topo.host_end(i)) == [topo.host_address(i) + '/24']
        assert global_addresses(name, 'eth0') == [topo.inner_address(i) + '/24']
        assert 'UP' in harness.links(name)['eth0']['flags'] and 'UP' in harness.links(name)['lo']['flags']
        assert default_routes(name) == ['default via %s dev eth0 proto static' % topo.host_address(i)]
        assert ip_forward(name) == 0  # forwarding was turned on in the host namespace only
    assert ip_forward(topo.host) == 1
    with open(topo.record()) as handle:
        assert json.load(handle)['before'] == harness.recorded_off(topo.host)
    rules = harness.rulesets(topo.host)
    if backend == 'iptables':
        saved = rules['iptables-save']
        assert any('-s 10.61.0.0/16' in line and '-o eth0' in line and '-j MASQUERADE' in line for line in saved)
        assert any('--dport 8080' in line and '--to-destination 10.61.1.2:80' in line
                   and line.startswith('-A LNT-PREROUTING') for line in saved), saved
        assert not any('linuxnet_netns' in line for line in rules['nft'])
    else:
        ruleset = '\n'.join(rules['nft'])
        assert 'table inet linuxnet_netns' in ruleset
        assert 'ip saddr 10.61.0.0/16 oifname "eth0" masquerade' in ruleset
        # the published port is an element of our DNAT map, looked up by one rule
        assert re.search(r'\b8080 comment "lnt:dnat,[^"]*" : 10\.61\.1\.2 \. 80\b', ruleset), ruleset
        assert re.search(r'dnat ip to ip daddr \. tcp dport map @lnt_prerouting_[0-9a-f]{12} comment "lnt-set ', ruleset), ruleset
        assert not any('LNT-' in line for line in rules['iptables-save'])

    # And it works: inner1 reaches the outside through the masquerade (the outside sees the
    # host's uplink address), and the outside reaches inner1:80 through the DNAT of 8080.
    out = probe(namespace=topo.inner[0], target=WAN, protocol='tcp', port=9000,
                listener=dict(namespace=topo.wan))
    assert out['reachable'] is True and out['observed_peer']['address'] == UPLINK, out
    published = probe(namespace=topo.wan, target=UPLINK, protocol='tcp', port=8080,
                      listener=dict(namespace=topo.inner[0], port=80))
    assert published['reachable'] is True and published['observed_peer']['address'] == WAN, published

    built = topo.snapshot()
    again = topology(args)
    assert_ok(again, False)
    assert again['parts'] == PRESENT_ORDER and again['changed_parts'] == [] and again['commands'] == []
    assert again['nat_rule']['rules_added'] == [] and again['nat_rule']['rules_removed'] == []
    assert topo.snapshot() == built


def test_check_mode_on_a_clean_host_changes_nothing_and_leaves_out_pending(topo):
    args = topo.present()
    # One rule lives in an inner namespace: it cannot be previewed either.
    args['nat_rule']['rules'].append(dict(kind='masquerade', namespace=topo.inner[1], source='10.70.0.0/24',
                                          out_interface='eth0'))
    before = topo.snapshot()

    preview = topology(args, check=True)
    assert_ok(preview, True)
    assert topo.snapshot() == before
    assert not os.path.exists(topo.record_dir)
    assert preview['pending_namespaces'] == sorted(topo.inner)
    assert preview['left_out'] == {'veth': 2, 'netns_route': 2, 'nat_rule': 1}
    # veth and netns_route had nothing left to compare; the rest ran in check mode. What a
    # real run would add in the pending namespaces is still shown, as lines and in the diff.
    assert preview['parts'] == ['netns', 'sysctl_forward', 'nat_rule']
    assert preview['changed_parts'] == PRESENT_ORDER
    assert len(preview['veth']['pending']) == 2 and len(preview['netns_route']['pending']) == 2
    for index, name in enumerate(topo.inner):
        assert any('name=%s' % topo.host_end(index) in line and 'peer_namespace=%s' % name in line
                   for line in preview['veth']['pending']), preview['veth']['pending']
        assert any('namespace=%s' % name in line and 'dest=default' in line
                   for line in preview['netns_route']['pending']), preview['netns_route']['pending']
    assert any('kind=masquerade' in line for line in preview['nat_rule']['pending'])
    assert preview['netns']['created'] == topo.inner
    assert preview['sysctl_forward']['after'] == {topo.host: {'net.ipv4.ip_forward': 1}}
    assert preview['nat_rule']['rules_added']
    assert [entry['namespace'] for entry in preview['nat_rule']['namespaces']] == [topo.host]

    # The real run does all of it, the rule in the inner namespace included ...
    result = topology(args)
    assert_ok(result, True)
    assert result['changed_parts'] == PRESENT_ORDER
    assert any('-s 10.70.0.0/24' in line and 'MASQUERADE' in line
               for line in harness.rulesets(topo.inner[1])['iptables-save'])
    # ... and a preview now has nothing pending and nothing to change.
    built = topo.snapshot()
    settled = topology(args, check=True)
    assert_ok(settled, False)
    assert settled['pending_namespaces'] == [] and settled['left_out'] == {}
    assert settled['parts'] == PRESENT_ORDER and settled['changed_parts'] == []
    assert topo.snapshot() == built


def test_diff_mode_returns_the_parts_diffs_in_order(topo):
    args = topo.present()
    result = topology(args, diff=True)
    assert_ok(result, True)
    diffs = result['diff']
    assert isinstance(diffs, list)
    record = topo.record()
    assert [d['before_header'] for d in diffs] == [
        'network namespaces (before)', 'veth pairs (before)', 'routes (before)',
        'forwarding sysctls (before)', record, 'nat rules (before)']
    netns_diff, veth_diff, route_diff, sysctl_diff, record_diff, nat_diff = diffs
    assert netns_diff['before'] == '' and netns_diff['after'] == ''.join(
        'netns %s lo=up\n' % name for name in sorted(topo.inner))
    assert veth_diff['before'] == ''
    assert veth_diff['after'] == ''.join(
        'vh%d@%s <-> eth0@%s mtu=1500 up addresses=[10.61.%d.1/24] peer_addresses=[10.61.%d.2/24]\n'
        % (i + 1, topo.host, name, i + 1, i + 1) for i, name in enumerate(topo.inner))
    # one line per namespace, in the order of the namespace names (not of their creation:
    # a name made after ...ti99 is ...ti100, which sorts first)
    assert route_diff['before'] == '' and route_diff['after'].splitlines() == sorted(
        '%s: default via 10.61.%d.1 dev eth0 proto static metric 0' % (name, i + 1)
        for i, name in enumerate(topo.inner))
    assert sysctl_diff['before'] == '%s: net.ipv4.ip_forward = 0\n' % topo.host
    assert sysctl_diff['after'] == '%s: net.ipv4.ip_forward = 1\n' % topo.host
    assert record_diff['before'] == '' and json.loads(record_diff['after'])['before'] == harness.recorded_off(topo.host)
    with open(record) as handle:
        assert handle.read() == record_diff['after']
    assert nat_diff['before'] == ''
    assert sorted(nat_diff['after'].splitlines()) == sorted(result['nat_rule']['rules_added'])
    # The parts' results keep no diff of their own: it is in the list.
    assert all('diff' not in result[part] for part in PRESENT_ORDER)

    again = topology(args, diff=True)
    assert_ok(again, False)
    assert [d['before_header'] for d in again['diff']] == [d['before_header'] for d in diffs if d is not record_diff]
    assert all(d['before'] == d['after'] for d in again['diff'])
    assert again['diff'][0]['after'] == netns_diff['after'] and again['diff'][1]['after'] == veth_diff['after']


def test_report_full_lists_every_object_changed_only_what_moved(topo):
    args = topo.present()
    assert_ok(topology(args), True)

    full = topology(dict(args, report='full'))
    assert_ok(full, False)
    assert [(p['name'], p['changed']) for p in full['veth']['pairs']] == [('vh1', False), ('vh2', False)]
    assert [(n['name'], n['changed']) for n in full['netns']['namespaces']] == [(n, False) for n in topo.inner]
    assert [(r['namespace'], r['action']) for r in full['netns_route']['routes']] == [
        (n, 'unchanged') for n in topo.inner]
    assert all('unchanged' not in full[part] for part in ('netns', 'veth', 'netns_route'))

    changed = topology(args)
    assert_ok(changed, False)
    assert changed['veth']['pairs'] == [] and changed['veth']['unchanged'] == 2
    assert changed['netns']['namespaces'] == [] and changed['netns']['unchanged'] == 2
    assert changed['netns_route']['routes'] == [] and changed['netns_route']['unchanged'] == 2

    # Drift in one pair only: report=changed lists that pair, and counts the other.
    harness.sh(['ip', '-n', topo.inner[1], 'addr', 'del', '10.61.2.2/24', 'dev', 'eth0'])
    repaired = topology(args)
    assert_ok(repaired, True)
    assert repaired['changed_parts'] == ['veth', 'netns_route']  # the route went with the address
    assert [p['name'] for p in repaired['veth']['pairs']] == ['vh2'] and repaired['veth']['unchanged'] == 1
    assert [r['namespace'] for r in repaired['netns_route']['routes']] == [topo.inner[1]]
    assert repaired['netns_route']['unchanged'] == 1
    assert global_addresses(topo.inner[1], 'eth0') == ['10.61.2.2/24']
    assert default_routes(topo.inner[1]) == ['default via 10.61.2.1 dev eth0 proto static']


# --- state=absent -----------------------------------------------------------------------------

def test_absent_in_role_order_removes_everything_and_restores_forwarding(netns, tmp_path, backend):
    topo = Topology(netns, tmp_path, backend)
    clean = topo.snapshot()
    assert ip_forward(topo.host) == 0
    assert_ok(topology(topo.present()), True)
    assert ip_forward(topo.host) == 1 and os.path.exists(topo.record())
    record = topo.record()

    removed = topology(topo.absent())
    assert_ok(removed, True)
    assert removed['parts'] == ROLE_ABSENT_ORDER and removed['changed_parts'] == ROLE_ABSENT_ORDER
    assert removed['netns']['removed'] == topo.inner
    assert removed['nat_rule']['rules_removed'] and removed['nat_rule']['rules_added'] == []
    assert not set(topo.inner) & set(harness.list_netns())
    assert ip_forward(topo.host) == 0
    assert not os.path.exists(record)
    # Links, addresses, routes, sysctls and every ruleset of the host are as before the build.
    assert topo.snapshot() == clean

    again = topology(topo.absent())
    assert_ok(again, False)
    assert again['parts'] == ROLE_ABSENT_ORDER and again['changed_parts'] == [] and again['commands'] == []
    assert topo.snapshot() == clean


# --- failures ---------------------------------------------------------------------------------

@pytest.mark.parametrize('bad_rule, fragment', [
    # passes nat_rule's argument spec; fails when nat_rule opens the namespace, before any write
    (dict(kind='masquerade', namespace=MISSING_NS, source=INNER_NET, out_interface='eth0'),
     'does not exist'),
    # passes nat_rule's argument spec; fails nat_rule's own validation
    (dict(kind='masquerade', source=INNER_NET, out_interface='bad name'), 'rules[2].out_interface'),
], ids=['missing-namespace', 'bad-interface-name'])
def test_failing_nat_rule_part_undoes_the_earlier_parts(topo, bad_rule, fragment):
    args = topo.present()
    args['nat_rule']['rules'].append(bad_rule)
    before = topo.snapshot()

    result = topology(args)
    assert_failed(result, 'nat_rule')
    assert fragment in result['msg']
    # The earlier parts did create things (their results say so) ...
    assert result['netns']['created'] == topo.inner
    assert [p['changed'] for p in result['veth']['pairs']] == [True, True]
    assert [r['action'] for r in result['netns_route']['routes']] == ['added', 'added']
    assert result['sysctl_forward']['changed'] is True
    # ... and all of it is gone again.
    assert not set(topo.inner) & set(harness.list_netns())
    assert ip_forward(topo.host) == 0
    assert not os.path.exists(topo.record_dir)
    assert topo.snapshot() == before


def test_failing_nat_rule_part_removes_a_route_added_in_an_existing_namespace(topo):
    args = topo.present(netns_route=dict(routes=[dict(namespace=topo.host, dest='10.99.0.0/24', gateway=WAN)]))
    args['nat_rule']['rules'].append(dict(kind='masquerade', source=INNER_NET, out_interface='bad name'))
    before = topo.snapshot()

    result = topology(args)
    assert_failed(result, 'nat_rule')
    assert result['netns_route']['routes'][0]['action'] == 'added'
    assert '10.99.0.0/24' not in ' '.join(harness.routes(topo.host))
    assert topo.snapshot() == before
    assert 'incomplete' not in result['msg'], result['msg']


def test_bad_input_of_a_part_fails_naming_it_and_changes_nothing(topo):
    args = topo.present()
    args['veth']['pairs'][1]['colour'] = 'red'
    before = topo.snapshot()

    result = topology(args)
    assert_failed(result, 'veth')
    assert result['msg'].startswith('veth: invalid input: ')
    assert 'pairs.colour' in result['msg']
    assert result['part_result']['errors'] and 'changed' not in result['part_result']
    # Every part's options are checked before the first part runs: netns never ran.
    assert 'removed' not in result['msg']
    assert 'netns' not in result and 'veth' not in result and 'nat_rule' not in result
    assert not set(topo.inner) & set(harness.list_netns())
    assert topo.snapshot() == before


def test_bad_input_of_a_part_fails_in_check_mode_too(topo):
    args = topo.present()
    args['sysctl_forward'] = dict(restore=True)  # restore without record_dir: required_if of the part
    before = topo.snapshot()
    result = topology(args, check=True)
    assert_failed(result, 'sysctl_forward')
    assert 'record_dir' in result['msg']
    assert topo.snapshot() == before


def conflicting_host_link(topo):
    """vh1 already exists in the host, as a veth whose peer is not the one asked for."""
    harness.sh(['ip', '-n', topo.host, 'link', 'add', 'vh1', 'type', 'veth', 'peer', 'name', 'zz1'])


def test_veth_conflict_fails_the_call_and_undoes_the_netns_part(topo):
    conflicting_host_link(topo)
    before = topo.snapshot()
    result = topology(topo.present())
    assert_failed(result, 'veth')
    assert 'vh1@%s exists but its peer is zz1@%s' % (topo.host, topo.host) in result['msg']
    assert not set(topo.inner) & set(harness.list_netns())
    assert topo.snapshot() == before


def test_veth_conflict_keeps_the_message_and_fields_of_the_veth_module(topo):
    conflicting_host_link(topo)
    result = topology(topo.present())
    assert_failed(result, 'veth')
    assert 'PartFailure' not in result['msg'], result['msg']
    assert 'exception' not in result['part_result']
    assert result['part_result']['conflicts'] == [
        'pairs[0].name: vh1@%s exists but its peer is zz1@%s, not eth0@%s' % (topo.host, topo.host, topo.inner[0])]


# --- run inside the host, as the role does through the connection plugin --------------------

def test_parts_after_routes_in_other_namespaces_still_act_on_the_modules_own_namespace(topo):
    """The module runs inside the host namespace and the host-side parts name no namespace
    (the role's way). netns_route writes into the inner namespaces; the parts after it must
    still change the module's own namespace: forwarding and rules in the host, none inside."""
    args = topo.present()
    for part in ('veth', 'sysctl_forward', 'nat_rule'):
        del args[part]['namespace']
    result = harness.run_module('netns_topology', args, netns=topo.host)
    assert_ok(result, True)
    assert result['changed_parts'] == PRESENT_ORDER
    assert [default_routes(name) for name in topo.inner] == [
        ['default via %s dev eth0 proto static' % topo.host_address(i)] for i in range(len(topo.inner))]
    assert ip_forward(topo.host) == 1
    assert [ip_forward(name) for name in topo.inner] == [0, 0]
    host_rules = harness.rulesets(topo.host)['iptables-save']
    assert any('MASQUERADE' in line for line in host_rules), host_rules
    for name in topo.inner:
        assert not [line for line in harness.rulesets(name)['iptables-save'] if 'lnt:' in line], name
    again = harness.run_module('netns_topology', args, netns=topo.host)
    assert_ok(again, False)
