# SPDX-License-Identifier: GPL-3.0-or-later
"""No name or value can inject a command (issue 6, security).

Every field that names a namespace or an interface, in every module and in the role, is
given names carrying shell metacharacters. Each must be rejected by validation: the call
fails naming the field (with its list index) and the value, nothing in the namespaces
changes, and the payload that would create a file if a shell ever ran it did not.
(tests/unit/test_no_shell.py proves statically that no code path builds a shell string.)

List-capable modules get all payloads as items of one call (they report every invalid
item), so each payload is still a case of its own without one module run per payload."""
import ast
import json
import os

import pytest

from tests.support import harness
from tests.support import role_lab

SENTINEL = '/tmp/lnt-pwned-%d' % os.getpid()
PAYLOADS = [
    ('semicolon', 'a;b'),
    ('command-substitution', '$(x)'),
    ('backticks', '`x`'),
    ('space', 'a b'),
    ('single-quote', "a'b"),
    ('double-quote', 'a"b'),
    ('pipe', 'a|b'),
    ('live-command', '$(touch %s)' % SENTINEL),
]


def batch(list_key, item, **top):
    """args for one call with every payload as item i of ``list_key``; ``item(i, payload)``."""
    def build(names):
        args = dict((key, value.format(**names) if isinstance(value, str) else value) for key, value in top.items())
        args[list_key] = [item(i, payload, names) for i, (dummy, payload) in enumerate(PAYLOADS)]
        return args
    return build


# id -> (module, args builder, field of item i)
BATCHED = {
    'netns.name': ('netns', batch('namespaces', lambda i, p, n: {'name': p}), 'namespaces[%d].name'),
    'veth.name': ('veth', batch('pairs', lambda i, p, n: {'name': p, 'peer': 'b%d' % i, 'peer_namespace': n['P']},
                                namespace='{V}'), 'pairs[%d].name'),
    'veth.peer': ('veth', batch('pairs', lambda i, p, n: {'name': 'a%d' % i, 'peer': p, 'peer_namespace': n['P']},
                                namespace='{V}'), 'pairs[%d].peer'),
    'veth.peer_namespace': ('veth', batch('pairs', lambda i, p, n: {
        'name': 'a%d' % i, 'peer': 'b%d' % i, 'peer_namespace': p}, namespace='{V}'), 'pairs[%d].peer_namespace'),
    'netns_route.device': ('netns_route', batch('routes', lambda i, p, n: {
        'namespace': n['V'], 'dest': '10.63.%d.0/24' % i, 'device': p}), 'routes[%d].device'),
    'netns_route.namespace': ('netns_route', batch('routes', lambda i, p, n: {
        'namespace': p, 'dest': '10.63.%d.0/24' % i, 'gateway': '10.61.0.2'}), 'routes[%d].namespace'),
    # One settings item per payload: within one item the module reports the first bad interface only.
    'sysctl_forward.interfaces.name': ('sysctl_forward', batch('settings', lambda i, p, n: {
        'namespace': n['V'], 'interfaces': [{'name': p, 'ipv4': True}]}), 'settings[%d].interfaces[0].name'),
    'sysctl_forward.namespace': ('sysctl_forward', batch('settings', lambda i, p, n: {'namespace': p, 'ipv4': True}),
                                 'settings[%d].namespace'),
    'nat_rule.out_interface': ('nat_rule', batch('rules', lambda i, p, n: {
        'kind': 'masquerade', 'source': '10.66.%d.0/24' % i, 'out_interface': p}, namespace='{V}'),
        'rules[%d].out_interface'),
    'nat_rule.in_interface': ('nat_rule', batch('rules', lambda i, p, n: {'kind': 'dnat', 'protocol': 'tcp',
                                                                          'port': 8000 + i, 'in_interface': p,
                                                                          'to_address': '10.61.0.2'},
                                                namespace='{V}'), 'rules[%d].in_interface'),
    'nat_rule.namespace': ('nat_rule', batch('rules', lambda i, p, n: {'namespace': p, 'kind': 'masquerade',
                                                                       'source': '10.66.%d.0/24' % i,
                                                                       'out_interface': 'v0'}),
                           'rules[%d].namespace'),
}

# Modules without a list form: one call per payload.
SINGLE = {
    'conntrack_info.namespace': ('conntrack_info', lambda p, n: {'namespace': p}, 'namespace'),
    'netns_probe.listener.namespace': ('netns_probe', lambda p, n: {'namespace': n['V'], 'target': '10.61.0.2',
                                                                    'protocol': 'tcp', 'port': 80,
                                                                    'listener': {'namespace': p, 'port': 80}},
                                       'listener'),
}


@pytest.fixture(scope='module')
def victim():
    try:
        with role_lab.veth_joined_namespaces(('jv', 'jp')) as names:
            yield names
    finally:
        if os.path.exists(SENTINEL):
            os.unlink(SENTINEL)


@pytest.fixture(scope='module')
def batched_results(victim):
    """field id -> (result, snapshot before, snapshot after), each batch run once on first use."""
    cache = {}

    def get(field_id):
        if field_id not in cache:
            module, build, dummy = BATCHED[field_id]
            watched = [victim['V'], victim['P']]
            before = harness.snapshot_own(watched)
            result = harness.run_module(module, build(victim))
            cache[field_id] = (result, before, harness.snapshot_own(watched))
        return cache[field_id]
    return get


def named(text, payload):
    return payload in text or repr(payload) in text


@pytest.mark.parametrize('payload_index', range(len(PAYLOADS)), ids=[p[0] for p in PAYLOADS])
@pytest.mark.parametrize('field_id', sorted(BATCHED))
def test_list_item_with_shell_metacharacters_is_rejected(batched_results, field_id, payload_index):
    result, before, after = batched_results(field_id)
    payload = PAYLOADS[payload_index][1]
    field = BATCHED[field_id][2] % payload_index
    assert result.get('failed') and result['_rc'] != 0, result
    reported = [line for line in result.get('errors') or [result['msg']] if line.startswith(field + '=')
                or ' %s=' % field in line]
    assert reported, '%s not reported in %s' % (field, result.get('errors') or result['msg'])
    assert any(named(line, payload) for line in reported), reported
    assert after == before
    assert not os.path.exists(SENTINEL)


@pytest.mark.parametrize('payload_index', range(len(PAYLOADS)), ids=[p[0] for p in PAYLOADS])
@pytest.mark.parametrize('field_id', sorted(SINGLE))
def test_option_with_shell_metacharacters_is_rejected(victim, field_id, payload_index):
    module, build, field = SINGLE[field_id]
    payload = PAYLOADS[payload_index][1]
    watched = [victim['V'], victim['P']]
    before = harness.snapshot_own(watched)
    result = harness.run_module(module, build(payload, victim))
    assert harness.snapshot_own(watched) == before
    assert result.get('failed') and result['_rc'] != 0, result
    assert field in result['msg'] and named(result['msg'], payload), result['msg']
    assert not os.path.exists(SENTINEL)


# --- the role: one ansible-playbook run, one inventory host per (field, payload) -------------

ROLE_FIELDS = ['name', 'host_interface', 'inner_interface', 'egress_interface']


def role_case_id(field, payload_name):
    return 'role-%s-%s' % (field.replace('_', '-'), payload_name)


@pytest.fixture(scope='module')
def role_injection(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('role-injection')
    host = harness.unique_name('jrh')
    good = harness.unique_name('jrg')
    harness.sh(['ip', 'netns', 'add', host])
    try:
        hosts = {}
        for field in ROLE_FIELDS:
            for payload_name, payload in PAYLOADS:
                entry = {'name': good, 'host_interface': 'r1', 'host_address': '10.73.0.1/24',
                         'inner_interface': 'i1', 'inner_address': '10.73.0.2/24'}
                entry[field] = payload
                hosts[role_case_id(field, payload_name)] = {'ansible_netns_name': host,
                                                            'netns_nat_namespaces': [entry]}
        inventory = role_lab.write_inventory(workdir / 'inventory.json', hosts)
        watched = [host, good]
        before = harness.snapshot_own(watched)
        run = role_lab.run_playbook(inventory, workdir)
        yield {'run': run, 'before': before, 'after': harness.snapshot_own(watched), 'good': good}
    finally:
        harness.delete_netns(host)
        if os.path.exists(SENTINEL):
            os.unlink(SENTINEL)


@pytest.mark.controller_only
@pytest.mark.parametrize('payload_index', range(len(PAYLOADS)), ids=[p[0] for p in PAYLOADS])
@pytest.mark.parametrize('field', ROLE_FIELDS)
def test_role_variable_with_shell_metacharacters_is_rejected(role_injection, field, payload_index):
    payload_name, payload = PAYLOADS[payload_index]
    run = role_injection['run']
    case = role_case_id(field, payload_name)
    failure = run.failure(case)
    assert failure is not None, 'case %s did not fail:\n%s' % (case, run.output)
    assert failure['_task'].startswith('Stop before any change'), failure
    assert run.recap(case)['changed'] == 0
    # The message lists the errors; each reads FIELD=VALUE (the value JSON-quoted): reason.
    msg = failure['msg']
    errors = ast.literal_eval(msg[msg.index('['):])
    assert any(error.startswith('netns_nat_namespaces[0].%s=%s: ' % (field, json.dumps(payload)))
               for error in errors), errors
    assert role_injection['after'] == role_injection['before']
    assert role_injection['good'] not in harness.list_netns()
    assert not os.path.exists(SENTINEL)
