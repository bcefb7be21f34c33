# SPDX-License-Identifier: GPL-3.0-or-later
"""plugins/module_utils/topology.py and kind.py without root: the parts' options (state
default, check mode's leaving out of pending namespaces), a part's validation by its own
argument spec and its call through the kind API, the run of the parts in order with one
shared context and rollback (fake parts), the merged result (changed_parts, commands, diffs,
report=changed trimming), and the state lock that several parts of one call take once."""
import fcntl
import os
import time
import types
from collections import OrderedDict

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import kind
from ansible_collections.linuxnet.netns.plugins.module_utils import topology
from ansible_collections.linuxnet.netns.plugins.module_utils.common import COMMAND_ENVIRON, KindError, failure
from ansible_collections.linuxnet.netns.plugins.module_utils.kind import CallContext
from ansible_collections.linuxnet.netns.plugins.module_utils.topology import (
    ORDER, PARTS, Topology, check_options, describe_pending, part_params, run_part, without_pending)


@pytest.fixture(autouse=True)
def own_state_lock(private_state_lock):
    """Every test here with a state lock of its own (tests/unit/conftest.py)."""


def kind_api(run, **extra):
    """A stand-in <kind>_call API whose whole call is ``run(params, context)`` (done in plan)."""
    return types.SimpleNamespace(validate=lambda params: params, read=lambda spec, context: None,
                                 plan=run, apply=lambda plan, context: None,
                                 result=lambda plan, context: plan, **extra)


def recorded(run):
    """``run`` as a stand-in's plan: (spec, current, context) -> result."""
    return lambda spec, current, context: run(spec, context)


class Failed(Exception):
    """What our stand-in for AnsibleModule.fail_json raises (the real one exits)."""

    def __init__(self, kwargs):
        super(Failed, self).__init__(kwargs.get('msg'))
        self.kwargs = kwargs


class FakeModule(object):
    """The AnsibleModule surface that Topology and CallContext use."""

    def __init__(self, check_mode=False, diff=False, **params):
        self.params = dict(state='present', report='changed')
        self.params.update(dict((part, None) for part in ORDER['present']))
        self.params.update(params)
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []
        self.commands_run = []

    def fail_json(self, **kwargs):
        raise Failed(kwargs)

    def exit_json(self, **kwargs):  # pragma: no cover - Topology returns its result instead
        raise AssertionError('exit_json called on the parent: %r' % kwargs)

    def warn(self, warning):
        self.warnings.append(warning)

    def run_command(self, argv, **kwargs):
        self.commands_run.append(argv)
        return 0, 'out', ''

    def get_bin_path(self, name, required=False):
        return '/usr/sbin/' + name

    def atomic_move(self, src, dest):
        self.commands_run.append(('move', src, dest))


# --- the parts' table and order ------------------------------------------------------------

def test_order_builds_outside_in_and_removes_inside_out():
    assert ORDER['present'] == ('netns', 'veth', 'netns_route', 'sysctl_forward', 'nat_rule')
    assert ORDER['absent'] == ('nat_rule', 'netns_route', 'veth', 'netns', 'sysctl_forward')
    assert sorted(ORDER['present']) == sorted(ORDER['absent']) == sorted(PARTS)


def test_each_part_runs_its_own_modules_code():
    for part, (code, list_key, takes_state) in PARTS.items():
        assert code.__name__.endswith('.%s_call' % part)
        assert list_key in code.argument_spec()
        assert ('state' in code.argument_spec()) is takes_state
        assert isinstance(code.ARGUMENT_RULES, dict)
        for step in ('validate', 'read', 'plan', 'apply', 'result'):
            assert callable(getattr(code, step)), (part, step)


# --- part_params -----------------------------------------------------------------------------

@pytest.mark.parametrize('part', ['netns', 'veth', 'netns_route', 'nat_rule'])
@pytest.mark.parametrize('state', ['present', 'absent'])
def test_top_level_state_is_the_default_of_parts_with_a_state(part, state):
    given = {PARTS[part][1]: [{'name': 'x'}]}
    params = part_params(part, given, state)
    assert params == {PARTS[part][1]: [{'name': 'x'}], 'state': state}
    assert 'state' not in given  # the caller's dict is not modified


@pytest.mark.parametrize('part', ['netns', 'veth', 'netns_route', 'nat_rule'])
def test_a_parts_own_state_wins_over_the_top_level_one(part):
    assert part_params(part, {'state': 'absent'}, 'present')['state'] == 'absent'
    assert part_params(part, {'state': 'present'}, 'absent')['state'] == 'present'
    # An explicit None (an option left unset by Ansible) takes the default.
    assert part_params(part, {'state': None}, 'absent')['state'] == 'absent'


@pytest.mark.parametrize('state', ['present', 'absent'])
def test_sysctl_forward_has_no_state_and_is_passed_as_given(state):
    given = {'ipv4': True, 'record_dir': '/run/x'}
    assert part_params('sysctl_forward', given, state) == {'ipv4': True, 'record_dir': '/run/x'}
    restore = {'restore': True, 'record_dir': '/run/x'}
    assert part_params('sysctl_forward', restore, state) == restore


# --- without_pending ---------------------------------------------------------------------------

def counted_without_pending(part, params, pending):
    """without_pending with the number of objects left out instead of the objects."""
    reduced, left_out = without_pending(part, params, pending)
    return reduced, len(left_out)


def test_left_out_objects_are_described_as_what_a_real_run_would_add():
    veth = {'pairs': [{'name': 'v1', 'peer': 'p1', 'peer_namespace': 'new', 'addresses': ['10.1.0.1/24']}],
            'purge_addresses': True}
    reduced, left_out = without_pending('veth', veth, {'new'})
    assert reduced is None and left_out == veth['pairs']
    assert describe_pending('veth', left_out[0], veth) == (
        '+ veth addresses=10.1.0.1/24 name=v1 peer=p1 peer_namespace=new purge_addresses=True')
    route = {'namespace': 'new', 'dest': 'default', 'gateway': '10.1.0.1', 'state': 'present'}
    assert describe_pending('netns_route', route, {}) == '+ netns_route dest=default gateway=10.1.0.1 namespace=new'


def test_list_items_in_pending_namespaces_are_left_out():
    params = {'pairs': [
        {'name': 'v1', 'peer': 'p1', 'peer_namespace': 'new1'},
        {'name': 'v2', 'peer': 'p2', 'namespace': 'old', 'peer_namespace': 'old2'},
        {'name': 'v3', 'peer': 'p3', 'namespace': 'new2'},  # its peer_namespace defaults to it
    ], 'state': 'present'}
    reduced, left_out = counted_without_pending('veth', params, {'new1', 'new2'})
    assert left_out == 2
    assert reduced == {'pairs': [params['pairs'][1]], 'state': 'present'}
    assert len(params['pairs']) == 3  # the given options are not modified


def test_items_use_the_top_level_namespaces_as_defaults():
    # All of these pairs live in the top-level (pending) namespace.
    veth = {'namespace': 'new', 'pairs': [{'name': 'a', 'peer': 'b'},
                                          {'name': 'c', 'peer': 'd', 'peer_namespace': 'old'}]}
    assert counted_without_pending('veth', veth, {'new'}) == (None, 2)
    # The top-level peer_namespace is a default too; an item's own namespace wins.
    veth = {'peer_namespace': 'new', 'pairs': [{'name': 'a', 'peer': 'b'},
                                               {'name': 'c', 'peer': 'd', 'peer_namespace': 'old'}]}
    reduced, left_out = counted_without_pending('veth', veth, {'new'})
    assert left_out == 1 and reduced['pairs'] == [{'name': 'c', 'peer': 'd', 'peer_namespace': 'old'}]
    # netns_route and nat_rule items without namespace take the top-level one.
    routes = {'namespace': 'new', 'routes': [{'dest': 'default', 'gateway': '10.1.0.1'},
                                             {'dest': '10.9.0.0/24', 'namespace': 'old', 'gateway': '10.2.0.1'}]}
    reduced, left_out = counted_without_pending('netns_route', routes, {'new'})
    assert left_out == 1 and [r['dest'] for r in reduced['routes']] == ['10.9.0.0/24']
    assert reduced['namespace'] == 'new'  # the top-level option itself stays for the kept items
    rules = {'namespace': 'old', 'rules': [{'kind': 'masquerade'}, {'kind': 'dnat', 'namespace': 'new'}]}
    reduced, left_out = counted_without_pending('nat_rule', rules, {'new'})
    assert left_out == 1 and reduced['rules'] == [{'kind': 'masquerade'}]


def test_nothing_left_to_preview_is_none_with_the_count():
    routes = {'routes': [{'namespace': 'n1', 'dest': 'default'}, {'namespace': 'n2', 'dest': 'default'}]}
    assert counted_without_pending('netns_route', routes, {'n1', 'n2'}) == (None, 2)
    settings = {'settings': [{'namespace': 'n1', 'ipv4': True}]}
    assert counted_without_pending('sysctl_forward', settings, {'n1'}) == (None, 1)


def test_nothing_pending_keeps_everything():
    params = {'pairs': [{'name': 'v1', 'peer': 'p1', 'namespace': 'a', 'peer_namespace': 'b'}]}
    reduced, left_out = counted_without_pending('veth', params, {'c'})
    assert left_out == 0 and reduced == params
    # An empty list is not "nothing left": there was nothing to leave out.
    assert counted_without_pending('veth', {'pairs': []}, {'c'}) == ({'pairs': []}, 0)


@pytest.mark.parametrize('part, params', [
    ('veth', {'name': 'v1', 'peer': 'p1', 'peer_namespace': 'new', 'pairs': None}),
    ('veth', {'name': 'v1', 'peer': 'p1', 'namespace': 'new'}),
    ('netns_route', {'dest': 'default', 'namespace': 'new', 'routes': None}),
    ('sysctl_forward', {'namespace': 'new', 'ipv4': True}),
    ('sysctl_forward', {'namespace': 'new', 'restore': True, 'record_dir': '/run/x'}),
    ('nat_rule', {'kind': 'masquerade', 'namespace': 'new', 'rules': None}),
])
def test_single_form_in_a_pending_namespace_is_left_out_as_one(part, params):
    assert counted_without_pending(part, params, {'new'}) == (None, 1)


@pytest.mark.parametrize('part, params', [
    ('veth', {'name': 'v1', 'peer': 'p1', 'namespace': 'old', 'peer_namespace': 'old2'}),
    ('netns_route', {'dest': 'default', 'namespace': 'old'}),
    ('sysctl_forward', {'ipv4': True}),  # own namespace
    ('nat_rule', {'kind': 'masquerade', 'namespace': None}),
])
def test_single_form_elsewhere_is_kept_as_is(part, params):
    reduced, left_out = counted_without_pending(part, params, {'new'})
    assert reduced is params and left_out == 0


# --- run_part and CallContext --------------------------------------------------------------------

@pytest.fixture
def recording_part(monkeypatch):
    """veth's code with a recording execute: returns the list of (params, context) it got."""
    calls = []
    code = kind_api(recorded(lambda params, context: calls.append((params, context)) or {'changed': False}),
                    argument_spec=PARTS['veth'][0].argument_spec, ARGUMENT_RULES=PARTS['veth'][0].ARGUMENT_RULES)
    monkeypatch.setattr(topology, 'PARTS', dict(PARTS, veth=(code,) + PARTS['veth'][1:]))
    return calls


def test_a_part_is_validated_by_its_own_spec_and_gets_its_defaults(recording_part):
    parent = FakeModule(check_mode=True, diff=True)
    context = CallContext(parent)
    options = check_options('veth', {'pairs': [{'name': 'v1', 'peer': 'v2'}], 'state': 'present'})
    assert run_part(context, 'veth', options) == {'changed': False}
    [(params, given)] = recording_part
    assert params['up'] is True and params['recreate'] is False  # veth's own defaults
    assert params['pairs'][0]['mtu'] is None
    assert given is context and given.check_mode is True and given.diff is True
    assert parent.run_command_environ_update == COMMAND_ENVIRON
    given.warn('careful')
    assert parent.warnings == ['veth: careful']  # the part is named in its warnings
    assert given.module is parent  # commands run through the real module


def test_a_parts_result_and_failure_are_a_return_value_and_a_kind_error():
    context = CallContext(FakeModule(check_mode=True))
    assert kind.execute(topology.PARTS['netns'][0], {'name': None, 'namespaces': [], 'state': 'present',
                                                     'loopback': True}, context)['created'] == []
    with pytest.raises(KindError) as failed:
        kind.execute(topology.PARTS['netns'][0], {'name': 'bad/name', 'namespaces': None, 'state': 'present',
                                                  'loopback': True}, context)
    assert failed.value.msg.startswith("invalid input: name='bad/name'")
    assert failed.value.fields['field'] == 'name' and len(failed.value.fields['errors']) == 1


def test_unknown_option_of_a_part_is_a_kind_error_naming_the_option():
    with pytest.raises(KindError) as failed:
        check_options('veth', {'pairs': [{'name': 'v1', 'peer': 'v2', 'colour': 'red'}]})
    assert failed.value.msg.startswith('invalid input: ')
    assert 'pairs.colour' in failed.value.msg
    assert len(failed.value.fields['errors']) == 1
    with pytest.raises(KindError) as failed:
        check_options('netns', {'name': 'a', 'flavour': 'x'})
    assert 'flavour' in failed.value.msg and 'unsupported parameters of netns' in failed.value.msg


@pytest.mark.parametrize('part, params, fragment', [
    ('netns', {'name': 'a', 'namespaces': [{'name': 'b'}]}, 'mutually exclusive: name|namespaces'),
    ('veth', {'name': 'v1', 'pairs': [{'name': 'v2'}]}, 'mutually exclusive: pairs|name'),
    ('netns_route', {'dest': 'default', 'routes': [{'dest': 'default'}]}, 'mutually exclusive: routes|dest'),
    ('sysctl_forward', {'ipv4': True, 'restore': True, 'record_dir': '/run/x'}, 'mutually exclusive'),
    ('nat_rule', {'kind': 'masquerade', 'rules': [{'kind': 'dnat'}]}, 'mutually exclusive: rules|kind'),
    ('sysctl_forward', {'restore': True}, 'record_dir'),
    ('netns_route', {}, 'one of the following is required: routes, dest'),
])
def test_argument_rules_of_a_part_are_checked(part, params, fragment):
    with pytest.raises(KindError) as failed:
        check_options(part, params)
    assert fragment in failed.value.msg, failed.value.fields


def test_a_parts_bad_input_fails_the_call_with_the_parts_name_first():
    module = FakeModule(netns={'name': 'a', 'namespaces': [{'name': 'b'}]})
    with pytest.raises(Failed) as failed:
        Topology(module).run()
    result = failed.value.kwargs
    assert result['msg'] == 'netns: invalid input: parameters are mutually exclusive: name|namespaces'
    assert result['failed_part'] == 'netns'
    assert result['part_result'] == {'errors': ['parameters are mutually exclusive: name|namespaces']}


# --- Topology.run with fake parts -----------------------------------------------------------

def fake_code(part, log, result=None, fail=None, spec=None, run=None):
    """A stand-in for a <kind>_call module: records its call, registers an undo with the
    shared rollback, then returns ``result`` or raises KindError(**fail) (or runs ``run``)."""
    list_key, takes_state = PARTS[part][1], PARTS[part][2]
    argument_spec = dict(spec or {list_key: dict(type='list', elements='dict'),
                                  'namespace': dict(type='str')})
    if takes_state:
        argument_spec['state'] = dict(type='str', choices=['present', 'absent'], default='present')

    def default_run(params, context):
        log.append(('run', part, dict(params), context.check_mode))
        context.rollback.register('undo ' + part, log.append, ('undo', part))
        if fail is not None:
            raise KindError(**fail)
        return result if result is not None else dict(changed=True, commands=['do ' + part])

    return kind_api(recorded(run or default_run), __name__='fake_%s_call' % part,
                    argument_spec=lambda: dict(argument_spec), ARGUMENT_RULES={})


@pytest.fixture
def fake_parts(monkeypatch):
    """Replace every part's code with a fake; returns (log, install(part, **fake_code kwargs))."""
    log = []
    table = dict((part, (fake_code(part, log),) + PARTS[part][1:]) for part in PARTS)
    monkeypatch.setattr(topology, 'PARTS', table)

    def install(part, **kwargs):
        table[part] = (fake_code(part, log, **kwargs),) + PARTS[part][1:]

    return log, install


def test_parts_run_in_order_and_only_when_given(fake_parts):
    log, dummy_install = fake_parts
    module = FakeModule(nat_rule={'rules': []}, netns={'namespaces': []}, sysctl_forward={'settings': []})
    result = Topology(module).run()
    assert [entry[1] for entry in log] == ['netns', 'sysctl_forward', 'nat_rule']
    assert result['parts'] == ['netns', 'sysctl_forward', 'nat_rule']
    assert result['changed'] is True and result['changed_parts'] == result['parts']
    assert result['commands'] == ['do netns', 'do sysctl_forward', 'do nat_rule']
    assert module.run_command_environ_update == COMMAND_ENVIRON
    # Success keeps what was made: nothing was undone.
    assert not [entry for entry in log if entry[0] == 'undo']


def test_absent_runs_inside_out_with_absent_as_the_parts_default(fake_parts):
    log, dummy_install = fake_parts
    module = FakeModule(state='absent', **dict((part, {}) for part in PARTS))
    result = Topology(module).run()
    assert result['parts'] == list(ORDER['absent'])
    states = dict((entry[1], entry[2].get('state')) for entry in log)
    assert states == {'nat_rule': 'absent', 'netns_route': 'absent', 'veth': 'absent', 'netns': 'absent',
                      'sysctl_forward': None}


def test_a_failing_part_undoes_the_earlier_parts_and_names_itself(fake_parts):
    log, install = fake_parts
    install('nat_rule', fail=dict(msg='rule trouble', field='rules[0]', changed=False))
    module = FakeModule(**dict((part, {}) for part in PARTS))
    with pytest.raises(Failed) as failed:
        Topology(module).run()
    result = failed.value.kwargs
    assert result['msg'] == ('nat_rule: rule trouble; what the earlier parts (netns, veth, netns_route, '
                             'sysctl_forward) had created was removed')
    assert result['failed_part'] == 'nat_rule'
    assert result['part_result'] == {'field': 'rules[0]'}  # msg and changed are not repeated
    # The results of the parts that ran are returned; undone in reverse, the failing part's own too.
    assert [part for part in ORDER['present'][:4] if part in result] == list(ORDER['present'][:4])
    assert [entry[1] for entry in log if entry[0] == 'undo'] == [
        'nat_rule', 'sysctl_forward', 'netns_route', 'veth', 'netns']


def test_bad_options_of_a_later_part_fail_before_any_part_runs(fake_parts):
    log, dummy_install = fake_parts
    module = FakeModule(netns={'namespaces': []}, veth={'pairs': []},
                        nat_rule={'rules': [], 'colour': 'red'})
    with pytest.raises(Failed) as failed:
        Topology(module).run()
    result = failed.value.kwargs
    assert result['failed_part'] == 'nat_rule'
    assert result['msg'].startswith('nat_rule: invalid input: unsupported parameters of nat_rule: ')
    assert 'removed' not in result['msg'] and 'netns' not in result and 'veth' not in result
    assert log == []  # netns and veth never ran, so there was nothing to undo


def test_an_incomplete_rollback_is_reported(fake_parts):
    log, install = fake_parts

    def broken(params, context):
        context.rollback.register('delete thing', lambda: 1 / 0)
        return dict(changed=True)

    table = topology.PARTS
    table['veth'] = (kind_api(recorded(broken), ARGUMENT_RULES={},
                              argument_spec=lambda: {'pairs': dict(type='list'), 'state': dict(type='str')}),) + table['veth'][1:]
    install('netns_route', fail=dict(msg='no route'))
    module = FakeModule(veth={}, netns_route={})
    with pytest.raises(Failed) as failed:
        Topology(module).run()
    msg = failed.value.kwargs['msg']
    assert msg.startswith('netns_route: no route; rollback of the earlier parts incomplete: delete thing: ')
    assert 'division by zero' in msg


def test_check_mode_leaves_out_what_lives_in_namespaces_to_be_created(fake_parts):
    log, install = fake_parts
    install('netns', result=dict(changed=True, created=['new1'], namespaces=[]))
    module = FakeModule(
        check_mode=True,
        netns={'namespaces': [{'name': 'new1'}]},
        veth={'namespace': 'host', 'pairs': [{'name': 'v1', 'peer_namespace': 'new1'},
                                             {'name': 'v2', 'peer_namespace': 'old'}]},
        netns_route={'routes': [{'namespace': 'new1', 'dest': 'default'}]},
        nat_rule={'namespace': 'host', 'rules': [{'kind': 'masquerade'}]},
    )
    result = Topology(module).run()
    ran = dict((entry[1], entry[2]) for entry in log if entry[0] == 'run')
    assert list(ran) == ['netns', 'veth', 'nat_rule']
    assert [pair['name'] for pair in ran['veth']['pairs']] == ['v2']
    assert all(entry[3] is True for entry in log if entry[0] == 'run')  # every part in check mode
    assert result['pending_namespaces'] == ['new1']
    assert result['left_out'] == {'veth': 1, 'netns_route': 1}
    assert result['parts'] == ['netns', 'veth', 'nat_rule']


def test_outside_check_mode_nothing_is_left_out(fake_parts):
    log, install = fake_parts
    install('netns', result=dict(changed=True, created=['new1'], namespaces=[]))
    module = FakeModule(netns={'namespaces': [{'name': 'new1'}]},
                        netns_route={'routes': [{'namespace': 'new1', 'dest': 'default'}]})
    result = Topology(module).run()
    assert result['parts'] == ['netns', 'netns_route']
    assert 'pending_namespaces' not in result and 'left_out' not in result


def test_a_parts_kind_error_is_not_rewrapped_by_its_own_error_handling(fake_parts):
    dummy_log, install = fake_parts

    def run(params, context):
        try:
            raise KindError('conflict', conflicts=['v1'])  # as veth_call.plan does
        except Exception as exc:
            raise failure(exc)

    install('veth', run=run)
    with pytest.raises(Failed) as failed:
        Topology(FakeModule(veth={})).run()
    assert failed.value.kwargs['msg'] == 'veth: conflict'
    assert failed.value.kwargs['part_result'] == {'conflicts': ['v1']}


# --- the merged result ------------------------------------------------------------------------

def topology_with(results, report='changed', check_mode=False, diff=False):
    topo = Topology(FakeModule(report=report, check_mode=check_mode, diff=diff))
    topo.results = OrderedDict(results)
    return topo


def test_changed_parts_keep_the_order_the_parts_ran_in():
    topo = topology_with([
        ('nat_rule', dict(changed=True, commands=['n1', 'n2'])),
        ('netns_route', dict(changed=False, commands=[])),
        ('veth', dict(changed=True, commands=['v1'])),
        ('netns', dict(changed=False, commands=[])),
        ('sysctl_forward', dict(changed=True, commands=['s1'])),
    ])
    result = topo.result()
    assert result['parts'] == ['nat_rule', 'netns_route', 'veth', 'netns', 'sysctl_forward']
    assert result['changed_parts'] == ['nat_rule', 'veth', 'sysctl_forward']
    assert result['changed'] is True
    assert result['commands'] == ['n1', 'n2', 'v1', 's1']
    assert 'diff' not in result and 'pending_namespaces' not in result


def test_nothing_changed_is_unchanged():
    result = topology_with([('netns', dict(changed=False, commands=[])),
                            ('veth', dict(changed=False))]).result()
    assert result['changed'] is False and result['changed_parts'] == [] and result['commands'] == []


def test_diffs_are_merged_into_one_list_in_order():
    netns_diff = {'before': '', 'after': 'netns a lo=up\n'}
    sysctl_diff = {'before': 'x = 0\n', 'after': 'x = 1\n'}
    file_diff = {'before_header': '/run/rec', 'before': '', 'after': '{}\n'}
    nat_diff = {'before': 'r\n', 'after': 'r\n'}
    topo = topology_with([
        ('netns', dict(changed=True, diff=netns_diff)),
        ('veth', dict(changed=False)),  # a part without diff adds none
        ('sysctl_forward', dict(changed=True, diff=[sysctl_diff, file_diff])),  # a list is flattened
        ('nat_rule', dict(changed=False, diff=nat_diff)),
    ], diff=True)
    result = topo.result()
    assert result['diff'] == [netns_diff, sysctl_diff, file_diff, nat_diff]
    assert all('diff' not in result[part] for part in result['parts'])


def test_without_diff_mode_the_parts_diffs_are_dropped():
    result = topology_with([('netns', dict(changed=True, diff={'before': '', 'after': 'x\n'}))]).result()
    assert 'diff' not in result and 'diff' not in result['netns']


def test_check_mode_result_says_what_was_pending_and_left_out():
    topo = topology_with([('netns', dict(changed=True, created=['b', 'a']))], check_mode=True)
    topo.pending = {'b', 'a'}
    topo.left_out = {'veth': 2}
    result = topo.result()
    assert result['pending_namespaces'] == ['a', 'b'] and result['left_out'] == {'veth': 2}


def object_results():
    return [
        ('netns', dict(changed=True, namespaces=[dict(name='a', changed=True), dict(name='b', changed=False)],
                       created=['a'])),
        ('veth', dict(changed=False, pairs=[dict(name='v1', changed=False), dict(name='v2', changed=False)])),
        ('netns_route', dict(changed=True, routes=[dict(dest='default', changed=True)])),
        ('sysctl_forward', dict(changed=True, before={'ns': {}}, after={'ns': {}})),
        ('nat_rule', dict(changed=False, namespaces=[dict(namespace='ns', changed=False)])),
    ]


def test_report_changed_lists_only_changed_objects_and_counts_the_others():
    result = topology_with(object_results(), report='changed').result()
    assert result['netns']['namespaces'] == [dict(name='a', changed=True)] and result['netns']['unchanged'] == 1
    assert result['netns']['created'] == ['a']
    assert result['veth']['pairs'] == [] and result['veth']['unchanged'] == 2
    assert result['netns_route']['routes'] == [dict(dest='default', changed=True)]
    assert result['netns_route']['unchanged'] == 0
    # Only the three per-object lists are trimmed: nat_rule's namespaces stay whole.
    assert result['nat_rule']['namespaces'] == [dict(namespace='ns', changed=False)]
    assert 'unchanged' not in result['nat_rule'] and 'unchanged' not in result['sysctl_forward']


def test_report_full_keeps_every_object():
    result = topology_with(object_results(), report='full').result()
    assert [n['name'] for n in result['netns']['namespaces']] == ['a', 'b']
    assert [p['name'] for p in result['veth']['pairs']] == ['v1', 'v2']
    assert all('unchanged' not in result[part] for part in result['parts'])


def test_trimming_skips_a_result_without_its_list():
    topo = topology_with([], report='changed')
    part_result = dict(changed=False, created=[], removed=[])
    assert topo.trimmed('netns', part_result) == dict(changed=False, created=[], removed=[])


# --- the state lock ---------------------------------------------------------------------------

@pytest.fixture
def lock_path(private_state_lock, monkeypatch):
    """The test's own state lock (its path) with a short timeout."""
    monkeypatch.setattr(kind, 'STATE_LOCK_TIMEOUT', 0.1)
    return private_state_lock


def other_holder_can_lock(path):
    """Whether a new open file description (what another process would have) gets the flock."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_state_lock_taken_by_several_parts_of_one_call_is_taken_once(lock_path):
    path = lock_path
    context = CallContext(FakeModule())
    context.lock()
    fd = context.lock_fd
    assert isinstance(fd, int) and not other_holder_can_lock(path)  # really held

    started = time.monotonic()
    # Were the second part's lock a new descriptor, it would wait for itself and fail.
    context.lock()
    assert time.monotonic() - started < 0.05
    assert context.lock_fd == fd and not other_holder_can_lock(path)


def test_calls_of_one_process_share_its_lock_and_other_processes_wait(lock_path):
    path = lock_path
    first, second = CallContext(FakeModule()), CallContext(FakeModule())
    first.lock()
    started = time.monotonic()
    second.lock()  # a new open of the path would wait for this process's own flock
    assert time.monotonic() - started < 0.05
    assert second.lock_fd == first.lock_fd and not other_holder_can_lock(path)


def test_state_lock_held_elsewhere_still_times_out(lock_path):
    path = lock_path
    other = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)
    context = CallContext(FakeModule())
    try:
        with pytest.raises(KindError) as failed:
            context.lock()
        assert failed.value.msg == ('another linuxnet.netns call held %s for more than 0 s; nothing was changed'
                                    % path)
        assert context.lock_fd is None
    finally:
        os.close(other)
    # Once the other holder is gone, the lock is taken and remembered.
    context.lock()
    assert context.lock_fd is not None and not other_holder_can_lock(path)


def test_state_lock_is_not_taken_in_check_mode(lock_path):
    path = lock_path
    context = CallContext(FakeModule(check_mode=True))
    context.lock()
    assert context.lock_fd is None and not os.path.exists(path)


def test_a_module_exits_with_the_result_or_fails_with_the_kind_error():
    class Module(FakeModule):
        def exit_json(self, **kwargs):
            raise Failed(dict(kwargs, exited=True))

    with pytest.raises(Failed) as done:
        kind.run_module(Module(), kind_api(recorded(lambda params, context: dict(changed=context.check_mode,
                                                                                 state=params['state']))))
    assert done.value.kwargs == {'changed': False, 'state': 'present', 'exited': True}

    def fails(params, context):
        raise KindError('no route', field='routes[0]')

    with pytest.raises(Failed) as failed:  # the process holds the lock since the first call: no wait
        kind.run_module(Module(), kind_api(recorded(fails)))
    assert failed.value.kwargs == {'msg': 'no route', 'field': 'routes[0]'}


class StepLog(object):
    """A <kind>_call API that logs its steps; ``fail_in`` names the step that raises."""

    def __init__(self, fail_in=None):
        self.steps = []
        self.fail_in = fail_in

    def step(self, name, value):
        self.steps.append(name)
        if name == self.fail_in:
            raise KindError('%s failed' % name)
        return value

    def validate(self, params):
        return self.step('validate', dict(params))

    def read(self, spec, context):
        self.steps.append('lock held' if context.lock_fd is not None else 'no lock')
        return self.step('read', types.SimpleNamespace(close=lambda: self.steps.append('close')))

    def plan(self, spec, current, context):
        return self.step('plan', 'the plan')

    def apply(self, plan, context):
        assert plan == 'the plan'
        self.step('apply', None)

    def result(self, plan, context):
        return self.step('result', {'changed': True, 'plan': plan})


@pytest.mark.parametrize('check_mode, fail_in, steps', [
    (False, None, ['validate', 'lock held', 'read', 'plan', 'apply', 'result', 'close']),
    (True, None, ['validate', 'no lock', 'read', 'plan', 'result', 'close']),
    (False, 'validate', ['validate']),
    (False, 'plan', ['validate', 'lock held', 'read', 'plan', 'close']),
    (False, 'apply', ['validate', 'lock held', 'read', 'plan', 'apply', 'close']),
    (False, 'result', ['validate', 'lock held', 'read', 'plan', 'apply', 'result', 'close']),  # applied stays
])
def test_execute_validates_locks_reads_plans_applies_outside_check_mode_and_closes(check_mode, fail_in, steps):
    api = StepLog(fail_in)
    context = CallContext(FakeModule(check_mode=check_mode))
    if fail_in is None:
        assert kind.execute(api, {'x': 1}, context) == {'changed': True, 'plan': 'the plan'}
    else:
        with pytest.raises(KindError) as failed:
            kind.execute(api, {'x': 1}, context)
        assert failed.value.msg == '%s failed' % fail_in
    assert api.steps == steps


@pytest.mark.parametrize('error, msg, undone', [
    (OSError('EPERM'), 'OSError: EPERM; everything this call had created was removed', True),
    (KindError('removals cannot be undone'), 'removals cannot be undone', False),  # the kind decided
])
def test_an_exception_in_apply_rolls_back_unless_the_kind_raised_a_kind_error(error, msg, undone):
    api = StepLog()

    def apply(plan, context):
        context.rollback.register('undo', api.steps.append, 'undone')
        raise error

    api.apply = apply
    with pytest.raises(KindError) as failed:
        kind.execute(api, {}, CallContext(FakeModule()))
    assert failed.value.msg == msg
    assert ('undone' in api.steps) is undone


@pytest.mark.parametrize('params', [
    {'namespace': 'new', 'rules': [], 'purge': True},
    {'namespace': 'new', 'rules': [], 'forward_policy': 'drop'},
])
def test_nat_rule_part_without_rules_in_a_pending_namespace_is_left_out(params):
    """Only top-level options (purge, the FORWARD policy) for a namespace check mode would
    create: there is nothing to compare, so the part is not previewed."""
    assert counted_without_pending('nat_rule', params, {'new'}) == (None, 0)


def test_nat_rule_part_without_rules_elsewhere_is_kept():
    params = {'namespace': 'old', 'rules': [], 'purge': True}
    assert counted_without_pending('nat_rule', params, {'new'}) == (params, 0)
