# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad input, across every module and the netns_nat role (issue 6).

Each case must fail before anything touches the kernel: the call fails, its message names
the field and the value, and a snapshot of every namespace involved (links, addresses,
routes, forwarding sysctls, iptables/ip6tables/nft rulesets, and the list of namespaces
this run made) is identical before and after. A missing iptables/nft binary and a managed
host without pyroute2 are bad environments rather than bad values: they must fail the
same clean way, with a message saying what to install.

Module cases run the module directly (tests.support.harness.run_module); the role's cases
run in ONE ansible-playbook call in which every inventory host is one case (each host a
name for the same namespace, with its own netns_nat_namespaces)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support import harness
from tests.support import role_lab

# --- module cases ----------------------------------------------------------------------------
# {V}: an existing namespace with a veth v0 (10.61.0.1/24) to {P} (p0, 10.61.0.2/24), a route
# and a foreign iptables rule; {M}: a namespace name that does not exist; {U}: an unused name
# that a buggy module might create.
MODULE_CASES = [
    # id, module, args, field named in the message, value named in the message
    ('netns-name-with-slash', 'netns', {'name': 'a/b'}, 'name', 'a/b'),
    ('netns-name-dotdot', 'netns', {'name': '..'}, 'name', '..'),
    ('netns-name-too-long', 'netns', {'name': 'n' * 65}, 'name', 'n' * 65),
    ('netns-duplicate-names-in-list', 'netns', {'namespaces': [{'name': '{U}'}, {'name': '{U}'}]},
     'namespaces[1].name', '{U}'),
    ('veth-name-16-bytes', 'veth', {'namespace': '{V}', 'name': 'x' * 16, 'peer': 'y0', 'peer_namespace': '{P}'},
     'name', 'x' * 16),
    ('veth-name-with-colon', 'veth', {'namespace': '{V}', 'name': 'eth0:1', 'peer': 'y0', 'peer_namespace': '{P}'},
     'name', 'eth0:1'),
    ('veth-peer-namespace-dotdot-path', 'veth',
     {'namespace': '{V}', 'name': 'a1', 'peer': 'b1', 'peer_namespace': '../{P}'}, 'peer_namespace', '../{P}'),
    ('veth-address-without-prefix', 'veth',
     {'namespace': '{V}', 'name': 'a1', 'peer': 'b1', 'peer_namespace': '{P}', 'addresses': ['10.62.0.1']},
     'addresses[0]', '10.62.0.1'),
    ('veth-address-invalid-cidr', 'veth',
     {'namespace': '{V}', 'name': 'a1', 'peer': 'b1', 'peer_namespace': '{P}', 'addresses': ['10.62.0.256/24']},
     'addresses[0]', '10.62.0.256/24'),
    ('veth-duplicate-names-in-list', 'veth',
     {'namespace': '{V}', 'pairs': [{'name': 'a1', 'peer': 'b1', 'peer_namespace': '{P}'},
                                    {'name': 'a1', 'peer': 'b2', 'peer_namespace': '{P}'}]},
     'pairs[1].name', 'a1'),
    ('veth-peer-namespace-missing', 'veth', {'namespace': '{V}', 'name': 'a1', 'peer': 'b1', 'peer_namespace': '{M}'},
     'peer_namespace', '{M}'),
    ('veth-mtu-70000', 'veth',
     {'namespace': '{V}', 'name': 'a1', 'peer': 'b1', 'peer_namespace': '{P}', 'mtu': 70000}, 'mtu', '70000'),
    ('route-gateway-outside-every-connected-subnet', 'netns_route',
     {'namespace': '{V}', 'dest': '10.63.0.0/24', 'gateway': '10.99.99.1'}, 'gateway', '10.99.99.1'),
    ('route-dest-invalid-cidr', 'netns_route',
     {'namespace': '{V}', 'dest': '10.63.0.0/33', 'gateway': '10.61.0.2'}, 'dest', '10.63.0.0/33'),
    ('route-gateway-not-an-address', 'netns_route',
     {'namespace': '{V}', 'dest': '10.63.0.0/24', 'gateway': 'gw.example'}, 'gateway', 'gw.example'),
    ('route-device-with-space', 'netns_route',
     {'namespace': '{V}', 'dest': '10.63.0.0/24', 'device': 'v0 x'}, 'device', 'v0 x'),
    ('route-namespace-missing', 'netns_route', {'namespace': '{M}', 'dest': '10.63.0.0/24', 'gateway': '10.61.0.2'},
     'namespace', '{M}'),
    ('route-duplicate-in-list', 'netns_route',
     {'routes': [{'namespace': '{V}', 'dest': '10.63.0.0/24', 'gateway': '10.61.0.2'},
                 {'namespace': '{V}', 'dest': '10.63.0.0/24', 'gateway': '10.61.0.2'}]},
     'routes[1]', '10.63.0.0/24'),
    ('sysctl-namespace-missing', 'sysctl_forward', {'namespace': '{M}', 'ipv4': True}, 'namespace', '{M}'),
    ('sysctl-interface-name-with-slash', 'sysctl_forward',
     {'namespace': '{V}', 'interfaces': [{'name': 'v0/x', 'ipv4': True}]}, 'interfaces[0].name', 'v0/x'),
    ('nat-port-0', 'nat_rule',
     {'namespace': '{V}', 'kind': 'dnat', 'protocol': 'tcp', 'port': 0, 'to_address': '10.61.0.2'}, 'port', '0'),
    ('nat-port-65536', 'nat_rule',
     {'namespace': '{V}', 'kind': 'dnat', 'protocol': 'tcp', 'port': 65536, 'to_address': '10.61.0.2'},
     'port', '65536'),
    ('nat-port-range-reversed', 'nat_rule',
     {'namespace': '{V}', 'kind': 'dnat', 'protocol': 'udp', 'port': '9000-8000', 'to_address': '10.61.0.2'},
     'port', '9000-8000'),
    ('nat-to-port-0', 'nat_rule',
     {'namespace': '{V}', 'kind': 'dnat', 'protocol': 'tcp', 'port': 8080, 'to_address': '10.61.0.2', 'to_port': 0},
     'to_port', '0'),
    ('nat-unknown-protocol', 'nat_rule',
     {'namespace': '{V}', 'kind': 'dnat', 'protocol': 'icmp', 'port': 8080, 'to_address': '10.61.0.2'},
     'protocol', 'icmp'),
    ('nat-to-address-invalid', 'nat_rule',
     {'namespace': '{V}', 'kind': 'dnat', 'protocol': 'tcp', 'port': 8080, 'to_address': '10.61.0.999'},
     'to_address', '10.61.0.999'),
    ('nat-source-invalid-cidr', 'nat_rule',
     {'namespace': '{V}', 'kind': 'masquerade', 'source': '10.61.0.0/40', 'out_interface': 'v0'},
     'source', '10.61.0.0/40'),
    ('nat-out-interface-16-bytes', 'nat_rule',
     {'namespace': '{V}', 'kind': 'masquerade', 'source': '10.61.0.0/24', 'out_interface': 'o' * 16},
     'out_interface', 'o' * 16),
    ('nat-same-published-port-twice-in-list', 'nat_rule',
     {'namespace': '{V}', 'rules': [
         {'kind': 'dnat', 'protocol': 'tcp', 'port': 8080, 'to_address': '10.61.0.2', 'to_port': 80},
         {'kind': 'dnat', 'protocol': 'tcp', 'port': 8080, 'to_address': '10.61.0.3', 'to_port': 80}]},
     'rules[1]', '8080'),
    ('nat-namespace-missing', 'nat_rule',
     {'namespace': '{M}', 'kind': 'masquerade', 'source': '10.61.0.0/24', 'out_interface': 'v0'}, 'namespace', '{M}'),
    ('conntrack-namespace-missing', 'conntrack_info', {'namespace': '{M}'}, 'namespace', '{M}'),
    ('conntrack-src-invalid', 'conntrack_info', {'namespace': '{V}', 'src': '10.61.0.300'}, 'src', '10.61.0.300'),
    ('conntrack-dport-65536', 'conntrack_info', {'namespace': '{V}', 'dport': 65536}, 'dport', '65536'),
    ('probe-port-65536', 'netns_probe',
     {'namespace': '{V}', 'target': '10.61.0.2', 'protocol': 'tcp', 'port': 65536}, 'port', '65536'),
    ('probe-target-is-a-network', 'netns_probe', {'namespace': '{V}', 'target': '10.61.0.0/24'},
     'target', '10.61.0.0/24'),
    ('probe-namespace-missing', 'netns_probe', {'namespace': '{M}', 'target': '10.61.0.2'}, 'namespace', '{M}'),
]


def route_and_foreign_rule(v, dummy_p):
    harness.sh(['ip', '-n', v, 'route', 'add', '10.64.0.0/16', 'via', '10.61.0.2'])
    harness.nsexec(v, ['iptables', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.61.0.0/24', '-j', 'MASQUERADE'])


@pytest.fixture(scope='module')
def victim():
    """{V} and {P} joined by a veth, with addresses, a route and a foreign rule in {V}."""
    with role_lab.veth_joined_namespaces(('iv', 'ip'), setup=route_and_foreign_rule) as names:
        yield names


def substitute(value, names):
    if isinstance(value, str):
        for key, name in names.items():
            value = value.replace('{%s}' % key, name)
        return value
    if isinstance(value, list):
        return [substitute(item, names) for item in value]
    if isinstance(value, dict):
        return dict((key, substitute(item, names)) for key, item in value.items())
    return value


def assert_rejected(result, field, value):
    assert result.get('failed') and result['_rc'] != 0, result
    msg = result['msg']
    assert field in msg, 'field %r not named in: %s' % (field, msg)
    assert value in msg or repr(value) in msg, 'value %r not named in: %s' % (value, msg)
    assert result.get('changed') is not True, result


@pytest.mark.parametrize('case', MODULE_CASES, ids=[case[0] for case in MODULE_CASES])
def test_module_rejects_bad_input_before_touching_the_kernel(victim, case):
    dummy, module, args, field, value = case
    names = dict(victim, M=harness.unique_name('im'), U=harness.unique_name('iu'))
    watched = [names['V'], names['P'], names['M'], names['U']]
    before = harness.snapshot_own(watched)
    result = harness.run_module(module, substitute(args, names))
    after = harness.snapshot_own(watched)
    assert_rejected(result, substitute(field, names), substitute(value, names))
    assert after == before
    assert names['M'] not in harness.list_netns() and names['U'] not in harness.list_netns()


def test_nat_rule_still_allows_dnat_to_any_address(victim):
    """Unlike the role, the module must publish a port towards an address outside every
    subnet of the namespace (the NodePort case: the target sits behind another host)."""
    v = victim['V']
    rule = {'namespace': v, 'kind': 'dnat', 'protocol': 'tcp', 'port': 30080, 'to_address': '172.26.0.3',
            'to_port': 8080}
    before = harness.snapshot_own([v])
    added = harness.run_module('nat_rule', rule)
    try:
        assert not added.get('failed'), added
        assert added['changed'] and any('172.26.0.3' in line for line in added['rules_added'])
        rules = harness.rulesets(v)
        listed = rules['nft'] if added['backend'] == 'nftables' else rules['iptables-save']
        assert any('172.26.0.3' in line and '8080' in line for line in listed), listed
    finally:
        removed = harness.run_module('nat_rule', dict(rule, state='absent'))
    assert not removed.get('failed'), removed
    assert harness.snapshot_own([v]) == before


# --- missing tools ----------------------------------------------------------------------------

HIDDEN_TOOLS = {
    # what to hide -> the binaries the iptables/nft commands resolve to on Debian 12
    'iptables': ['xtables-nft-multi', 'xtables-legacy-multi'],
    'nft': ['nft'],
}


def hiding_interpreter(directory, hide):
    """An interpreter for run_module that runs the module in a private mount namespace in
    which the given tools are covered by /dev/null (not executable, so get_bin_path and
    exec both miss them); nothing outside that mount namespace changes."""
    targets = []
    for tool in hide:
        for binary in HIDDEN_TOOLS[tool]:
            path = shutil.which(binary) or os.path.join('/usr/sbin', binary)
            if os.path.exists(path):
                targets.append(os.path.realpath(path))
    script = os.path.join(str(directory), 'python-without-%s' % '-'.join(hide))
    mounts = ''.join('mount --bind /dev/null %s && ' % target for target in targets)
    with open(script, 'w') as handle:
        handle.write('#!/bin/sh\nexec unshare --mount --propagation slave -- /bin/sh -c \'%sexec "$0" "$@"\' %s "$@"\n'
                     % (mounts, harness.MODULE_PYTHON or sys.executable))
    os.chmod(script, 0o755)
    return script


MISSING_TOOL_CASES = [
    # id, tools hidden, backend asked for, what the message must say
    ('no-iptables-no-nft-auto', ['iptables', 'nft'], 'auto', 'neither nft nor iptables-restore'),
    ('no-nft-backend-nftables', ['nft'], 'nftables', 'nft is not installed'),
    ('no-iptables-backend-iptables', ['iptables'], 'iptables', 'not installed'),
]


@pytest.mark.parametrize('case', MISSING_TOOL_CASES, ids=[case[0] for case in MISSING_TOOL_CASES])
def test_missing_firewall_binary_fails_cleanly(victim, tmp_path, case):
    dummy, hide, backend, expected = case
    python = hiding_interpreter(tmp_path, hide)
    # The stand-in really hides the tools (else this test would prove nothing).
    probe = subprocess.run([python, '-c', 'import shutil; print(shutil.which("iptables-save", path="/usr/sbin"),'
                                          ' shutil.which("nft", path="/usr/sbin"))'],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.split() == [('None' if 'iptables' in hide else '/usr/sbin/iptables-save'),
                                    ('None' if 'nft' in hide else '/usr/sbin/nft')], probe.stdout
    v = victim['V']
    before = harness.snapshot_own([v])
    result = harness.run_module('nat_rule', {'namespace': v, 'backend': backend, 'kind': 'masquerade',
                                             'source': '10.65.0.0/24', 'out_interface': 'v0'}, python=python)
    assert harness.snapshot_own([v]) == before
    assert result.get('failed') and result['_rc'] != 0, result
    assert 'backend' in result['msg'] and backend in result['msg'] and expected in result['msg'], result['msg']


# --- pyroute2 missing on the managed host -----------------------------------------------------

def interpreter_without_pyroute2(directory):
    """/usr/bin/python3 without site-packages (-S: no dist-packages, where Debian's
    python3-pyroute2 lives), with only ansible importable: a managed host that lacks pyroute2."""
    import ansible
    only = os.path.join(str(directory), 'only-ansible')
    os.makedirs(only, exist_ok=True)
    link = os.path.join(only, 'ansible')
    if not os.path.lexists(link):
        os.symlink(os.path.dirname(ansible.__file__), link)
    script = os.path.join(str(directory), 'python-without-pyroute2')
    python = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable
    with open(script, 'w') as handle:
        handle.write('#!/bin/sh\nPYTHONPATH="$PYTHONPATH:%s" exec %s -S "$@"\n' % (only, python))
    os.chmod(script, 0o755)
    return script


# The modules that reach the conntrack table (through pyroute2): they fail with the hint.
PYROUTE2_CASES = [
    ('nat_rule', {'namespace': '{V}', 'kind': 'masquerade', 'source': '10.65.0.0/24', 'out_interface': 'v0'}),
    ('conntrack_info', {'namespace': '{V}'}),
]
# The ones with their own netlink codec or none at all: they work without pyroute2.
NO_PYROUTE2_CASES = [
    ('netns', {'name': '{U}'}),
    ('veth', {'namespace': '{V}', 'name': 'a1', 'peer': 'b1', 'peer_namespace': '{P}'}),
    ('netns_route', {'namespace': '{V}', 'dest': '10.63.0.0/24', 'gateway': '10.61.0.2'}),
    ('sysctl_forward', {'namespace': '{V}', 'ipv4': True}),
    ('netns_probe', {'namespace': '{V}', 'target': '10.61.0.2', 'count': 1}),
]


def assert_pyroute2_missing(python):
    check = subprocess.run([python, '-c', 'import ansible.module_utils.basic\ntry:\n import pyroute2\n'
                                          'except ImportError:\n print("missing")'],
                           capture_output=True, text=True, env=dict(harness.ENV), check=False)
    assert check.stdout.strip() == 'missing', (check.stdout, check.stderr)


@pytest.mark.parametrize('case', PYROUTE2_CASES, ids=[case[0] for case in PYROUTE2_CASES])
def test_missing_pyroute2_fails_with_the_install_hint(victim, tmp_path, case):
    module, args = case
    python = interpreter_without_pyroute2(tmp_path)
    assert_pyroute2_missing(python)
    names = dict(victim, U=harness.unique_name('iu'))
    watched = [names['V'], names['P'], names['U']]
    before = harness.snapshot_own(watched)
    result = harness.run_module(module, substitute(args, names), python=python)
    assert harness.snapshot_own(watched) == before
    assert result.get('failed') and result['_rc'] != 0, result
    assert 'pyroute2 is required on the managed host' in result['msg'], result['msg']
    assert 'apt-get install python3-pyroute2' in result['msg'] and 'pip install pyroute2' in result['msg']


@pytest.mark.parametrize('case', NO_PYROUTE2_CASES, ids=[case[0] for case in NO_PYROUTE2_CASES])
def test_modules_that_need_no_pyroute2_work_without_it(victim, tmp_path, case):
    module, args = case
    python = interpreter_without_pyroute2(tmp_path)
    assert_pyroute2_missing(python)
    names = dict(victim, U=harness.unique_name('iu'))
    try:
        result = harness.run_module(module, substitute(args, names), python=python)
        assert not result.get('failed') and result['_rc'] == 0, result
        if module == 'netns_probe':
            assert result['reachable'], result
        else:
            assert result['changed'], result
    finally:
        harness.delete_netns(names['U'])


# --- the role ---------------------------------------------------------------------------------

def ns_entry(name, host_if, inner_if, subnet, **extra):
    """One netns_nat_namespaces item on 10.70.<subnet>.0/24."""
    entry = {'name': name, 'host_interface': host_if, 'host_address': '10.70.%d.1/24' % subnet,
             'inner_interface': inner_if, 'inner_address': '10.70.%d.2/24' % subnet}
    entry.update(extra)
    return entry


def role_cases(good):
    """id -> (netns_nat_namespaces, field named in the message, value named in it). ``good``
    supplies unused valid namespace names; a case that wrongly passed validation would
    create them, which the snapshot would show."""
    a, b = good[0], good[1]
    pf = {'protocol': 'tcp', 'published_port': 8080, 'target_port': 80}
    return {
        'role-name-with-slash': ([ns_entry('x/y', 'r1', 'i1', 1)], 'netns_nat_namespaces[0].name', 'x/y'),
        'role-name-dotdot': ([ns_entry('..', 'r1', 'i1', 1)], 'netns_nat_namespaces[0].name', '..'),
        'role-name-with-semicolon': ([ns_entry('a;b', 'r1', 'i1', 1)], 'netns_nat_namespaces[0].name', 'a;b'),
        'role-host-interface-16-bytes': ([ns_entry(a, 'h' * 16, 'i1', 1)], 'netns_nat_namespaces[0].host_interface',
                                         'h' * 16),
        'role-inner-interface-with-space': ([ns_entry(a, 'r1', 'i 1', 1)], 'netns_nat_namespaces[0].inner_interface',
                                            'i 1'),
        'role-egress-interface-command-substitution': (
            [ns_entry(a, 'r1', 'i1', 1, egress_interface='$(reboot)')], 'netns_nat_namespaces[0].egress_interface',
            '$(reboot)'),
        'role-host-address-invalid-cidr': ([ns_entry(a, 'r1', 'i1', 1, host_address='10.70.1.300/24')],
                                           'netns_nat_namespaces[0].host_address', '10.70.1.300/24'),
        'role-host-address-prefix-33': ([ns_entry(a, 'r1', 'i1', 1, host_address='10.70.1.1/33')],
                                        'netns_nat_namespaces[0].host_address', '10.70.1.1/33'),
        'role-inner-address-other-subnet': ([ns_entry(a, 'r1', 'i1', 1, inner_address='10.70.9.2/24')],
                                            'netns_nat_namespaces[0].inner_address', '10.70.9.2/24'),
        'role-gateway-outside-subnet': ([ns_entry(a, 'r1', 'i1', 1, gateway='10.71.0.1')],
                                        'netns_nat_namespaces[0].gateway', '10.71.0.1'),
        'role-published-port-0': ([ns_entry(a, 'r1', 'i1', 1, port_forwards=[dict(pf, published_port=0)])],
                                  'netns_nat_namespaces[0].port_forwards[0].published_port', '0'),
        'role-published-port-65536': ([ns_entry(a, 'r1', 'i1', 1, port_forwards=[dict(pf, published_port=65536)])],
                                      'netns_nat_namespaces[0].port_forwards[0].published_port', '65536'),
        'role-target-port-0': ([ns_entry(a, 'r1', 'i1', 1, port_forwards=[dict(pf, target_port=0)])],
                               'netns_nat_namespaces[0].port_forwards[0].target_port', '0'),
        'role-unknown-protocol': ([ns_entry(a, 'r1', 'i1', 1, port_forwards=[dict(pf, protocol='icmp')])],
                                  'protocol', 'icmp'),
        'role-forward-target-outside-namespace-subnet': (
            [ns_entry(a, 'r1', 'i1', 1, port_forwards=[dict(pf, target_address='172.26.0.3')])],
            'netns_nat_namespaces[0].port_forwards[0].target_address', '172.26.0.3'),
        'role-two-namespaces-same-subnet': ([ns_entry(a, 'r1', 'i1', 1), ns_entry(b, 'r2', 'i2', 1)],
                                            'netns_nat_namespaces[1]', '10.70.1.0/24'),
        'role-two-forwards-same-published-port': (
            [ns_entry(a, 'r1', 'i1', 1, port_forwards=[pf]), ns_entry(b, 'r2', 'i2', 2, port_forwards=[pf])],
            'netns_nat_namespaces[1].port_forwards[0].published_port', '8080'),
        'role-duplicate-namespace-names': ([ns_entry(a, 'r1', 'i1', 1), ns_entry(a, 'r2', 'i2', 2)],
                                           'netns_nat_namespaces[1].name', a),
        'role-duplicate-host-interfaces': ([ns_entry(a, 'r1', 'i1', 1), ns_entry(b, 'r1', 'i2', 2)],
                                           'netns_nat_namespaces[1].host_interface', 'r1'),
        'role-snat-without-address': ([ns_entry(a, 'r1', 'i1', 1, source_nat='snat')],
                                      'netns_nat_namespaces[0].snat_address', '""'),
    }


ROLE_CASE_IDS = sorted(role_cases(['a', 'b']))


@pytest.fixture(scope='module')
def role_bad_input(tmp_path_factory):
    """Every role case in one ansible-playbook run: one inventory host per case, all of
    them the same namespace; snapshots of it and of the names the cases use."""
    workdir = tmp_path_factory.mktemp('role-input')
    host = harness.unique_name('rih')
    good = [harness.unique_name('rig'), harness.unique_name('rig')]
    harness.sh(['ip', 'netns', 'add', host])
    try:
        harness.sh(['ip', '-n', host, 'link', 'set', 'lo', 'up'])
        harness.nsexec(host, ['iptables', '-w', '-A', 'FORWARD', '-s', '10.72.0.0/16', '-j', 'DROP'])
        cases = role_cases(good)
        hosts = dict((case_id, {'ansible_netns_name': host, 'netns_nat_namespaces': namespaces})
                     for case_id, (namespaces, dummy, dummy2) in cases.items())
        inventory = role_lab.write_inventory(workdir / 'inventory.json', hosts)
        watched = [host] + good
        before = harness.snapshot_own(watched)
        run = role_lab.run_playbook(inventory, workdir)
        after = harness.snapshot_own(watched)
        yield {'run': run, 'cases': cases, 'before': before, 'after': after, 'good': good}
    finally:
        harness.delete_netns(host)


@pytest.mark.controller_only
@pytest.mark.parametrize('case_id', ROLE_CASE_IDS)
def test_role_rejects_bad_input_before_touching_the_kernel(role_bad_input, case_id):
    run = role_bad_input['run']
    dummy, field, value = role_bad_input['cases'][case_id]
    failure = run.failure(case_id)
    assert failure is not None, 'case %s did not fail:\n%s' % (case_id, run.output)
    # It failed in one of the two validation steps, before any task that changes something.
    assert failure['_task'].startswith(('Validating arguments against arg spec',
                                        'Stop before any change')), failure
    assert run.recap(case_id)['changed'] == 0
    msg = failure.get('msg', '')
    assert field in msg, 'field %r not named in: %s' % (field, msg)
    assert value in msg or json.dumps(value) in msg, 'value %r not named in: %s' % (value, msg)
    # The whole run (every case) changed nothing and created none of the names.
    assert role_bad_input['after'] == role_bad_input['before']
    assert not set(role_bad_input['good']) & set(harness.list_netns())
