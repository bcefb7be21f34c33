# SPDX-License-Identifier: GPL-3.0-or-later
"""sysctl_forward against real namespaces: a setting stays in its namespace (not in
another, not in the root), idempotence, check mode (snapshots), diff, the kernel's
propagation of global writes, per-interface values, drift, the persist file, several
namespaces in one call, and bad input that changes nothing."""
import json
import os

import pytest

from tests.support import harness

# Carries this run's prefix, so a namespace created by mistake shows in snapshot_own.
MISSING_NS = harness.PREFIX + 'missing'


def build_lab(ns):
    """veth va/vb, both ends inside ``ns``."""
    harness.sh(['ip', '-n', ns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb'])
    return ns


@pytest.fixture
def lab(netns):
    return build_lab(netns('sc'))


def value(ns, key):
    """A sysctl read inside ns with the real sysctl tool (not our code)."""
    return int(harness.nsexec(ns, ['sysctl', '-n', key]).strip())


def forward(**args):
    return harness.run_module('sysctl_forward', args)


def assert_ok(result, changed):
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is changed, result


def test_ipv4_forward_check_mode_diff_idempotence(lab):
    assert value(lab, 'net.ipv4.ip_forward') == 0
    before = harness.snapshot_own([lab])
    predicted = harness.run_module('sysctl_forward', {'namespace': lab, 'ipv4': True}, check=True, diff=True)
    assert_ok(predicted, True)
    assert harness.snapshot_own([lab]) == before
    assert predicted['before'] == {lab: {'net.ipv4.ip_forward': 0}}
    assert predicted['after'] == {lab: {'net.ipv4.ip_forward': 1}}
    assert predicted['diff']['before'] == '%s: net.ipv4.ip_forward = 0\n' % lab
    assert predicted['diff']['after'] == '%s: net.ipv4.ip_forward = 1\n' % lab
    assert predicted['commands'] == ['ip netns exec %s sysctl -w net.ipv4.ip_forward=1' % lab]

    result = forward(namespace=lab, ipv4=True)
    assert_ok(result, True)
    assert result['after'] == predicted['after']
    assert value(lab, 'net.ipv4.ip_forward') == 1
    assert harness.sysctls(lab)['net/ipv4/ip_forward'] == '1'

    again = forward(namespace=lab, ipv4=True)
    assert_ok(again, False)
    assert again['commands'] == [] and again['before'] == again['after'] == {lab: {'net.ipv4.ip_forward': 1}}

    off = forward(namespace=lab, ipv4=False)
    assert_ok(off, True)
    assert value(lab, 'net.ipv4.ip_forward') == 0


def test_setting_stays_in_its_namespace(netns):
    first, second = build_lab(netns('sc')), build_lab(netns('sc'))
    root_before = harness.sysctls(None)
    second_before = harness.sysctls(second)
    assert_ok(forward(namespace=first, ipv4=True, ipv6=True), True)
    # the two global writes set every interface's forwarding value of their family too
    assert set(harness.sysctls(first).values()) == {'1'}
    assert harness.sysctls(second) == second_before
    assert harness.sysctls(None) == root_before
    assert value(second, 'net.ipv4.conf.va.forwarding') == 0


def test_global_write_propagates_and_interface_values_are_applied_after(lab):
    args = {'namespace': lab, 'ipv4': True, 'ipv6': True, 'ipv6_default': False,
            'interfaces': [{'name': 'va', 'ipv4': False}, {'name': 'vb', 'ipv6': False}]}
    predicted = harness.run_module('sysctl_forward', args, check=True)
    result = forward(**args)
    assert_ok(result, True)
    assert result['after'] == predicted['after'] == {lab: {
        'net.ipv4.ip_forward': 1, 'net.ipv6.conf.all.forwarding': 1, 'net.ipv6.conf.default.forwarding': 0,
        'net.ipv4.conf.va.forwarding': 0, 'net.ipv6.conf.vb.forwarding': 0}}
    # read back with sysctl(8): the kernel turned vb/ipv4 and va/ipv6 on with the global writes
    assert value(lab, 'net.ipv4.conf.va.forwarding') == 0
    assert value(lab, 'net.ipv4.conf.vb.forwarding') == 1
    assert value(lab, 'net.ipv6.conf.va.forwarding') == 1
    assert value(lab, 'net.ipv6.conf.vb.forwarding') == 0
    assert value(lab, 'net.ipv6.conf.default.forwarding') == 0
    assert_ok(forward(**args), False)


def test_drift_is_repaired(lab):
    args = {'namespace': lab, 'ipv6': True, 'interfaces': [{'name': 'va', 'ipv4': True}]}
    assert_ok(forward(**args), True)
    harness.nsexec(lab, ['sysctl', '-q', '-w', 'net.ipv4.conf.va.forwarding=0'])
    repaired = forward(**args)
    assert_ok(repaired, True)
    assert repaired['commands'] == ['ip netns exec %s sysctl -w net.ipv4.conf.va.forwarding=1' % lab]
    assert value(lab, 'net.ipv4.conf.va.forwarding') == 1


def test_persist_file(lab, tmp_path):
    path = tmp_path / '90-forward.conf'
    args = {'namespace': lab, 'ipv4': True, 'interfaces': [{'name': 'va', 'ipv6': False}], 'persist': str(path)}
    predicted = harness.run_module('sysctl_forward', args, check=True, diff=True)
    assert_ok(predicted, True)
    assert not path.exists()
    assert predicted['files_changed'] == [str(path)]
    file_diff = predicted['diff'][1]
    assert file_diff['before_header'] == str(path) and file_diff['before'] == ''
    assert file_diff['after'].endswith('net.ipv4.ip_forward = 1\nnet.ipv6.conf.va.forwarding = 0\n')
    assert 'namespace %s' % lab in file_diff['after'] and 'record only' in file_diff['after']

    result = harness.run_module('sysctl_forward', args, diff=True)
    assert_ok(result, True)
    assert path.read_text() == file_diff['after']
    assert result['diff'] == predicted['diff']

    again = harness.run_module('sysctl_forward', args, diff=True)
    assert_ok(again, False)
    assert again['files_changed'] == []
    assert isinstance(again['diff'], dict)  # only the sysctl diff: the file does not move

    # Only the file differs (edited by hand): the file is rewritten, the sysctls are left alone.
    path.write_text('net.ipv4.ip_forward = 0\n')
    fixed = harness.run_module('sysctl_forward', args, diff=True)
    assert_ok(fixed, True)
    assert fixed['commands'] == [] and fixed['files_changed'] == [str(path)]
    assert fixed['diff'][1]['before'] == 'net.ipv4.ip_forward = 0\n'
    assert path.read_text() == file_diff['after']


def test_own_namespace_when_namespace_is_not_given(lab, tmp_path):
    """As through the connection plugin: the module runs inside the namespace it manages."""
    python = harness.python_in_namespace(lab, tmp_path)
    result = harness.run_module('sysctl_forward', {'ipv6': True}, python=python)
    assert_ok(result, True)
    assert result['after'] == {'': {'net.ipv6.conf.all.forwarding': 1}}
    assert result['commands'] == ['sysctl -w net.ipv6.conf.all.forwarding=1']
    assert value(lab, 'net.ipv6.conf.all.forwarding') == 1
    assert_ok(harness.run_module('sysctl_forward', {'ipv6': True}, python=python), False)


def test_list_form_spans_namespaces(netns):
    first, second = build_lab(netns('sc')), build_lab(netns('sc'))
    settings = [{'namespace': first, 'ipv4': True}, {'namespace': second, 'ipv6': True}]
    result = forward(settings=settings)
    assert_ok(result, True)
    assert result['after'] == {first: {'net.ipv4.ip_forward': 1}, second: {'net.ipv6.conf.all.forwarding': 1}}
    assert value(first, 'net.ipv6.conf.all.forwarding') == 0 and value(second, 'net.ipv4.ip_forward') == 0
    assert_ok(forward(settings=settings), False)
    # top-level namespace is the default for items
    defaulted = forward(namespace=second, settings=[{'ipv4': True}])
    assert_ok(defaulted, True)
    assert value(second, 'net.ipv4.ip_forward') == 1


BAD_INPUT = [
    ({'interfaces': [{'name': 'nope0', 'ipv4': True}]}, 'settings[1].interfaces[0].name',
     'interface nope0 does not exist in namespace {ns}'),
    ({'interfaces': [{'name': 'all', 'ipv4': True}]}, 'settings[1].interfaces[0].name', 'not an interface'),
    ({'namespace': MISSING_NS, 'ipv4': True}, 'settings[1].namespace', MISSING_NS + ' does not exist'),
    ({'ipv4': True, 'persist': 'relative.conf'}, 'settings[1].persist', 'must be an absolute path'),
    ({}, 'settings[1].ipv4', 'nothing to set'),
]


@pytest.mark.parametrize('bad,field,message', BAD_INPUT, ids=['%d:%s' % (index, case[1]) for index, case in enumerate(BAD_INPUT)])
def test_bad_input_fails_naming_the_field_and_changes_nothing(netns, bad, field, message):
    good_ns, bad_ns = build_lab(netns('sc')), build_lab(netns('sc'))
    bad = dict(bad)
    bad.setdefault('namespace', bad_ns)
    before = harness.snapshot_own([good_ns, bad_ns])
    result = forward(settings=[{'namespace': good_ns, 'ipv4': True}, bad])
    assert result.get('failed') and result['_rc'] != 0
    assert result['field'] == field
    assert field in result['msg'] and message.format(ns=bad_ns) in result['msg']
    assert harness.snapshot_own([good_ns, bad_ns]) == before


def test_every_missing_interface_is_named_in_one_failure(netns):
    """One run names every interface that is not there, in every item, not just the first."""
    first, second = build_lab(netns('sc')), build_lab(netns('sc'))
    before = harness.snapshot_own([first, second])
    result = forward(settings=[
        {'namespace': first, 'interfaces': [{'name': 'nope0', 'ipv4': True}, {'name': 'nope1', 'ipv4': True}]},
        {'namespace': second, 'interfaces': [{'name': 'nope2', 'ipv4': True}]}])
    assert result.get('failed') and result['_rc'] != 0
    assert result['field'] == 'settings[0].interfaces[0].name'
    assert [error.split(':')[0] for error in result['errors']] == [
        "settings[0].interfaces[0].name='nope0'", "settings[0].interfaces[1].name='nope1'",
        "settings[1].interfaces[0].name='nope2'"]
    assert harness.snapshot_own([first, second]) == before


# --- record_dir / restore: put back what the module replaced ----------------------------------

def record_file(ns, record_dir):
    return harness.forwarding_record(ns, str(record_dir))


def test_record_then_restore_puts_back_the_replaced_value(lab, tmp_path):
    record_dir = tmp_path / 'records'  # created by the module
    turned_on = forward(namespace=lab, ipv4=True, record_dir=str(record_dir))
    assert_ok(turned_on, True)
    path = record_file(lab, record_dir)
    assert turned_on['files_changed'] == [path]
    assert json.loads(open(path).read())['before'] == harness.recorded_off(lab)
    assert value(lab, 'net.ipv4.ip_forward') == 1
    content = open(path).read()
    assert_ok(forward(namespace=lab, ipv4=True, record_dir=str(record_dir)), False)
    assert open(path).read() == content

    # check mode: nothing moves, the record stays
    before = harness.snapshot_own([lab])
    predicted = harness.run_module('sysctl_forward', {'namespace': lab, 'restore': True,
                                                      'record_dir': str(record_dir)}, check=True, diff=True)
    assert_ok(predicted, True)
    assert predicted['after'] == {lab: harness.recorded_off(lab)}  # ip_forward and each conf/*/forwarding
    assert predicted['files_changed'] == [path] and predicted['diff'][1]['after'] == ''
    assert harness.snapshot_own([lab]) == before and open(path).read() == content

    restored = forward(namespace=lab, restore=True, record_dir=str(record_dir))
    assert_ok(restored, True)
    assert restored['before'] == {lab: dict((key, 1) for key in harness.recorded_off(lab))}
    assert restored['after'] == {lab: harness.recorded_off(lab)}
    assert value(lab, 'net.ipv4.ip_forward') == 0 and value(lab, 'net.ipv4.conf.va.forwarding') == 0
    assert not (record_dir / os.path.basename(path)).exists()
    again = forward(namespace=lab, restore=True, record_dir=str(record_dir))
    assert_ok(again, False)
    assert again['files_changed'] == [] and again['after'] == {lab: {}}


def test_a_value_already_on_is_not_recorded_and_restore_leaves_it(lab, tmp_path):
    harness.nsexec(lab, ['sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    result = forward(namespace=lab, ipv4=True, record_dir=str(tmp_path))
    assert_ok(result, False)
    assert not os.path.exists(record_file(lab, tmp_path))
    assert_ok(forward(namespace=lab, restore=True, record_dir=str(tmp_path)), False)
    assert value(lab, 'net.ipv4.ip_forward') == 1


def test_the_record_keeps_the_first_value(lab, tmp_path):
    """on (records 0), off, on again: the record still says 0, the value before the first change."""
    for wanted, changed in ((True, True), (False, True), (True, True)):
        assert_ok(forward(namespace=lab, ipv4=wanted, record_dir=str(tmp_path)), changed)
    assert json.loads(open(record_file(lab, tmp_path)).read())['before'] == harness.recorded_off(lab)
    ipv6 = forward(namespace=lab, ipv6=True, interfaces=[{'name': 'va', 'ipv6': False}], record_dir=str(tmp_path))
    assert_ok(ipv6, True)
    # va is written too (all=1 turned it on, the item turns it off again): its first value is kept
    assert json.loads(open(record_file(lab, tmp_path)).read())['before'] == harness.recorded_off(lab, families=(4, 6))
    assert_ok(forward(namespace=lab, restore=True, record_dir=str(tmp_path)), True)
    assert value(lab, 'net.ipv4.ip_forward') == 0 and value(lab, 'net.ipv6.conf.all.forwarding') == 0
    assert value(lab, 'net.ipv6.conf.vb.forwarding') == 0


def test_records_are_per_namespace(netns, tmp_path):
    first, second = build_lab(netns('sc')), build_lab(netns('sc'))
    result = forward(settings=[{'namespace': first, 'ipv4': True}, {'namespace': second, 'ipv6': True}],
                     record_dir=str(tmp_path))
    assert_ok(result, True)
    assert sorted(result['files_changed']) == sorted([record_file(first, tmp_path), record_file(second, tmp_path)])
    assert_ok(forward(namespace=first, restore=True, record_dir=str(tmp_path)), True)
    assert value(first, 'net.ipv4.ip_forward') == 0 and value(second, 'net.ipv6.conf.all.forwarding') == 1
    assert os.path.exists(record_file(second, tmp_path)) and not os.path.exists(record_file(first, tmp_path))


RECORD_BAD_INPUT = [
    ('not json', 'is not a record written by this module'),
    ('{"before": {"net.ipv4.ip_forward": 7}}', 'is not a record written by this module'),
    ('{"before": {"kernel.panic": 0}}', 'records kernel.panic, which is not a forwarding sysctl'),
]


@pytest.mark.parametrize('content,message', RECORD_BAD_INPUT, ids=['garbage', 'value', 'foreign key'])
def test_a_foreign_record_fails_and_changes_nothing(lab, tmp_path, content, message):
    harness.nsexec(lab, ['sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    path = record_file(lab, tmp_path)
    with open(path, 'w') as handle:
        handle.write(content)
    before = harness.snapshot_own([lab])
    for args in ({'restore': True}, {'ipv4': False}):
        result = forward(namespace=lab, record_dir=str(tmp_path), **args)
        assert result.get('failed') and result['field'] == 'record_dir', result
        assert path in result['msg'] and message in result['msg']
        assert harness.snapshot_own([lab]) == before and open(path).read() == content


def test_record_dir_errors(lab, tmp_path):
    a_file = tmp_path / 'file'
    a_file.write_text('')
    before = harness.snapshot_own([lab])
    for record_dir, message in ((str(a_file), 'exists and is not a directory'),
                                ('relative/dir', 'must be an absolute path')):
        result = forward(namespace=lab, ipv4=True, record_dir=record_dir)
        assert result.get('failed') and result['field'] == 'record_dir' and message in result['msg'], result
    result = forward(namespace=lab, restore=True)
    assert result.get('failed') and 'record_dir' in result['msg']
    result = forward(namespace=lab, restore=True, ipv4=True, record_dir=str(tmp_path))
    assert result.get('failed') and 'mutually exclusive' in result['msg']
    assert harness.snapshot_own([lab]) == before
