# SPDX-License-Identifier: GPL-3.0-or-later
"""sysctl_forward without the kernel: validation, sysctl names, the plan with the
kernel's propagation of global writes, persist file content, reading/writing/restoring
against a stand-in /proc/sys tree, and the module's argument handling."""
import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import sysctls as S
from ansible_collections.linuxnet.netns.plugins.module_utils.common import Rollback
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError
from tests.support import harness


def validate(**item):
    return S.validate_settings('settings[0].', item)


def field_error(**item):
    with pytest.raises(ValidationError) as info:
        validate(**item)
    return info.value


def current(values=None, ipv4_names=('lo', 'va', 'vb'), ipv6_names=('lo', 'va', 'vb'), namespace='ns1'):
    """Forwarding values as read from a namespace with interfaces lo, va, vb (all 0)."""
    base = {S.IPV4_FORWARD: 0}
    for name in ('all', 'default') + tuple(ipv4_names):
        base[S.interface_path(4, name)] = 0
    for name in ('all', 'default') + tuple(ipv6_names or ()):
        base[S.interface_path(6, name)] = 0
    base.update(values or {})
    return S.NamespaceSysctls(namespace, base, list(ipv4_names), None if ipv6_names is None else list(ipv6_names))


class TestNames:
    def test_sysctl_key_turns_dots_inside_a_name_into_slashes(self):
        assert S.sysctl_key('net/ipv4/ip_forward') == 'net.ipv4.ip_forward'
        assert S.sysctl_key(S.interface_path(6, 'eth0.100')) == 'net.ipv6.conf.eth0/100.forwarding'


class TestValidate:
    def test_settings_are_ordered_globals_first(self):
        wanted = validate(namespace='ns1', interfaces=[{'name': 'va', 'ipv4': False, 'ipv6': True}],
                          ipv6_default=False, ipv4=True)
        assert [(s.key, s.value) for s in wanted.settings] == [
            ('net.ipv4.ip_forward', 1), ('net.ipv6.conf.default.forwarding', 0),
            ('net.ipv4.conf.va.forwarding', 0), ('net.ipv6.conf.va.forwarding', 1)]
        assert [s.field for s in wanted.settings][2:] == ['settings[0].interfaces[0].ipv4',
                                                          'settings[0].interfaces[0].ipv6']

    def test_nothing_to_set(self):
        assert 'nothing to set' in str(field_error(namespace='ns1'))

    def test_interface_needs_a_family(self):
        assert field_error(interfaces=[{'name': 'va'}]).field == 'settings[0].interfaces[0].ipv4'

    @pytest.mark.parametrize('name', ['all', 'default'])
    def test_pseudo_interfaces_are_refused(self, name):
        error = field_error(interfaces=[{'name': name, 'ipv4': True}])
        assert error.field == 'settings[0].interfaces[0].name' and 'not an interface' in str(error)

    def test_bad_and_duplicate_interface_names(self):
        assert field_error(interfaces=[{'name': 'x' * 16, 'ipv4': True}]).field == 'settings[0].interfaces[0].name'
        error = field_error(interfaces=[{'name': 'va', 'ipv4': True}, {'name': 'va', 'ipv6': True}])
        assert error.field == 'settings[0].interfaces[1].name' and 'duplicates' in str(error)

    def test_bad_namespace_name(self):
        assert field_error(namespace='a/b', ipv4=True).field == 'settings[0].namespace'

    def test_persist_path_checks(self, tmp_path):
        assert field_error(ipv4=True, persist='relative.conf').field == 'settings[0].persist'
        assert 'is a directory' in str(field_error(ipv4=True, persist=str(tmp_path)))
        missing_dir = str(tmp_path / 'nope' / 'x.conf')
        assert 'does not exist' in str(field_error(ipv4=True, persist=missing_dir))
        assert validate(ipv4=True, persist=str(tmp_path / 'x.conf')).persist == str(tmp_path / 'x.conf')

    def test_each_namespace_and_file_once(self, tmp_path):
        path = str(tmp_path / 'f.conf')
        items = [S.validate_settings('settings[0].', {'namespace': 'a', 'ipv4': True, 'persist': path}),
                 S.validate_settings('settings[1].', {'namespace': 'a', 'ipv6': True}),
                 S.validate_settings('settings[2].', {'namespace': 'b', 'ipv6': True, 'persist': path}),
                 S.validate_settings('settings[3].', {'ipv4': True}),
                 S.validate_settings('settings[4].', {'ipv6': True})]
        errors = S.check_unique_targets(items)
        assert [error.field for error in errors] == ['settings[1].namespace', 'settings[2].persist',
                                                     'settings[4].namespace']


class TestCheckAgainstNamespace:
    def test_missing_interface(self):
        wanted = validate(namespace='ns1', interfaces=[{'name': 'vz', 'ipv6': True}])
        with pytest.raises(ValidationError) as info:
            S.check_against_namespace(wanted, current())
        assert info.value.field == 'settings[0].interfaces[0].name'
        assert 'interface vz does not exist in namespace ns1 (it has: lo, va, vb)' in str(info.value)

    def test_ipv6_unavailable(self):
        with pytest.raises(ValidationError) as info:
            S.check_against_namespace(validate(ipv6=True), current(ipv6_names=None))
        assert info.value.field == 'settings[0].ipv6'
        S.check_against_namespace(validate(ipv4=True), current(ipv6_names=None))


class TestPlan:
    def test_unchanged_values_are_not_written(self):
        plan = S.plan_settings(validate(namespace='ns1', ipv4=False, ipv6=False), current())
        assert not plan.changed and plan.before == plan.after
        assert S.plan_commands(plan) == []

    def test_global_ipv4_write_propagates_before_interface_values(self):
        # ip_forward 0 -> 1 turns va on as well, so va: false must be written afterwards
        wanted = validate(namespace='ns1', ipv4=True, interfaces=[{'name': 'va', 'ipv4': False}])
        plan = S.plan_settings(wanted, current())
        assert [s.key for s in plan.writes] == ['net.ipv4.ip_forward', 'net.ipv4.conf.va.forwarding']
        assert plan.after == {'net.ipv4.ip_forward': 1, 'net.ipv4.conf.va.forwarding': 0}
        assert plan.before == {'net.ipv4.ip_forward': 0, 'net.ipv4.conf.va.forwarding': 0}
        assert S.plan_commands(plan) == ['ip netns exec ns1 sysctl -w net.ipv4.ip_forward=1',
                                         'ip netns exec ns1 sysctl -w net.ipv4.conf.va.forwarding=0']

    def test_interface_already_as_wanted_after_propagation_is_not_written(self):
        wanted = validate(ipv4=True, interfaces=[{'name': 'va', 'ipv4': True}])
        plan = S.plan_settings(wanted, current())
        assert [s.key for s in plan.writes] == ['net.ipv4.ip_forward']

    def test_ipv6_all_propagates_to_default_and_interfaces(self):
        wanted = validate(ipv6=True, ipv6_default=False, interfaces=[{'name': 'vb', 'ipv6': True}])
        plan = S.plan_settings(wanted, current())
        assert [s.key for s in plan.writes] == ['net.ipv6.conf.all.forwarding', 'net.ipv6.conf.default.forwarding']
        assert plan.after['net.ipv6.conf.default.forwarding'] == 0
        assert plan.after['net.ipv6.conf.vb.forwarding'] == 1

    def test_ipv4_does_not_touch_ipv6(self):
        values = S.propagated_values(S.IPV4_FORWARD, 1, current().values)
        assert all(path.startswith('net/ipv4/') for path in values)
        assert S.interface_path(4, 'default') in values and S.interface_path(4, 'vb') in values
        assert S.propagated_values(S.interface_path(4, 'va'), 1, current().values) == {
            S.interface_path(4, 'va'): 1}

    def test_report_lines_and_own_namespace(self):
        plan = S.plan_settings(validate(ipv4=True), current(namespace=None))
        assert S.report_lines(plan) == (['net.ipv4.ip_forward = 0'], ['net.ipv4.ip_forward = 1'])
        assert S.plan_commands(plan) == ['sysctl -w net.ipv4.ip_forward=1']
        assert plan.wanted.label == ''


class TestPersistContent:
    def test_named_namespace_file_says_it_is_a_record(self):
        content = S.persist_content(validate(namespace='ns1', ipv4=True,
                                             interfaces=[{'name': 'eth0.5', 'ipv6': False}]))
        lines = content.splitlines()
        assert lines[-2:] == ['net.ipv4.ip_forward = 1', 'net.ipv6.conf.eth0/5.forwarding = 0']
        assert 'namespace ns1' in content and 'record only' in content
        assert all(line.startswith('#') for line in lines[:-2])

    def test_own_namespace_file_and_read_back(self, tmp_path):
        content = S.persist_content(validate(ipv6=True))
        assert content.splitlines()[1:] == ['net.ipv6.conf.all.forwarding = 1']
        path = tmp_path / 'f.conf'
        assert S.read_file(str(path)) == ''
        path.write_text(content)
        assert S.read_file(str(path)) == content


class TestProcSysStandIn:
    """read/write/restore against a directory laid out like /proc/sys (no namespace entered)."""

    @pytest.fixture
    def proc(self, tmp_path, monkeypatch):
        monkeypatch.setattr(S, 'PROC_SYS', str(tmp_path))
        for path, value in current().values.items():
            full = tmp_path / path
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_text('%d\n' % value)
        return tmp_path

    def test_read_current_lists_interfaces_and_values(self, proc):
        (proc / S.interface_path(4, 'va')).write_text('1\n')
        state = S.read_current()
        assert state.ipv4_names == ['lo', 'va', 'vb'] and state.ipv6_names == ['lo', 'va', 'vb']
        assert state.values[S.interface_path(4, 'va')] == 1 and state.values[S.IPV4_FORWARD] == 0

    def test_missing_ipv6_tree_means_no_ipv6(self, proc):
        import shutil
        shutil.rmtree(str(proc / 'net' / 'ipv6'))
        assert S.read_current().ipv6_names is None

    def test_apply_then_rollback_restores_every_value_globals_first(self, proc, monkeypatch):
        original = S.read_current()
        plan = S.plan_settings(validate(ipv4=True, interfaces=[{'name': 'va', 'ipv4': False}]), original)
        rollback = Rollback()
        S.apply_plan(plan, original, rollback)
        assert S.read_value(S.IPV4_FORWARD) == 1
        # what the kernel would have done on the global write
        (proc / S.interface_path(4, 'vb')).write_text('1\n')
        writes = []
        real_write = S.write_value

        def recording_write(path, value):
            writes.append(path)
            real_write(path, value)

        monkeypatch.setattr(S, 'write_value', recording_write)
        assert rollback.run() == []
        assert writes[0] == S.IPV4_FORWARD
        assert S.read_current().values == original.values


class TestRecord:
    def test_sysctl_path_inverts_sysctl_key(self):
        for path in (S.IPV4_FORWARD, S.IPV6_ALL, S.interface_path(6, 'eth0.100'), S.interface_path(4, 'va')):
            assert S.sysctl_path(S.sysctl_key(path)) == path

    @pytest.mark.parametrize('path,ok', [
        ('net/ipv4/ip_forward', True), ('net/ipv6/conf/default/forwarding', True),
        ('net/ipv4/conf/eth0.100/forwarding', True), ('net/ipv4/conf/../forwarding', False),
        ('net/ipv4/conf/eth0/rp_filter', False), ('kernel/panic', False), ('net/ipv4/conf/a/b/forwarding', False),
    ])
    def test_only_forwarding_sysctls_may_be_recorded(self, path, ok):
        assert S.is_forwarding_path(path) is ok

    def test_recorded_values_keep_the_first_value_of_written_keys_only(self):
        wanted = validate(ipv4=True, interfaces=[{'name': 'va', 'ipv6': True}])
        now = current({S.interface_path(4, 'vb'): 1})
        plan = S.plan_settings(wanted, now)
        # the ip_forward write also sets every conf/*/forwarding of IPv4: their old values
        # (vb was 1 while ip_forward was 0) are recorded so that a restore puts them back
        assert S.recorded_values(plan, {}, now.values) == {
            'net.ipv4.ip_forward': 0, 'net.ipv4.conf.all.forwarding': 0, 'net.ipv4.conf.default.forwarding': 0,
            'net.ipv4.conf.lo.forwarding': 0, 'net.ipv4.conf.va.forwarding': 0, 'net.ipv4.conf.vb.forwarding': 1,
            'net.ipv6.conf.va.forwarding': 0}
        # a key already in the record keeps its value; other recorded keys stay
        recorded = S.recorded_values(plan, {'net.ipv4.ip_forward': 1, 'net.ipv6.conf.all.forwarding': 1}, now.values)
        assert recorded['net.ipv4.ip_forward'] == 1 and recorded['net.ipv6.conf.all.forwarding'] == 1
        assert recorded['net.ipv4.conf.vb.forwarding'] == 1 and recorded['net.ipv6.conf.va.forwarding'] == 0
        unchanged = S.plan_settings(validate(ipv4=False), current())
        assert S.recorded_values(unchanged, {}, current().values) == {}

    def test_restore_writes_globals_first_and_skips_vanished_interfaces(self):
        now = current({S.IPV4_FORWARD: 1, S.IPV6_ALL: 1, S.interface_path(4, 'va'): 1})
        values = {'net.ipv4.conf.va.forwarding': 1, 'net.ipv4.conf.gone0.forwarding': 0,
                  'net.ipv6.conf.all.forwarding': 0, 'net.ipv4.ip_forward': 0}
        wanted = S.restore_settings('restore', 'ns1', values, now)
        assert [setting.path for setting in wanted.settings] == [
            S.IPV4_FORWARD, S.IPV6_ALL, S.interface_path(4, 'va')]
        plan = S.plan_settings(wanted, now)
        # ip_forward=0 resets va as well; the record's va=1 is written after it
        assert [(setting.path, setting.value) for setting in plan.writes] == [
            (S.IPV4_FORWARD, 0), (S.IPV6_ALL, 0), (S.interface_path(4, 'va'), 1)]

    def test_read_record_round_trip_and_bad_records(self, tmp_path):
        path = str(tmp_path / 'forwarding-1.json')
        assert S.read_record('record_dir', path) == ('', {})
        content = S.record_content('ns1', {'net.ipv4.ip_forward': 0})
        with open(path, 'w') as handle:
            handle.write(content)
        assert S.read_record('record_dir', path) == (content, {'net.ipv4.ip_forward': 0})
        for bad in ('[]', '{"before": []}', '{"before": {"net.ipv4.ip_forward": true}}', '{"other": 1}'):
            with open(path, 'w') as handle:
                handle.write(bad)
            with pytest.raises(ValidationError) as info:
                S.read_record('record_dir', path)
            assert info.value.field == 'record_dir' and path in str(info.value)


class TestArguments:
    def test_settings_and_top_level_options_are_mutually_exclusive(self):
        result = harness.run_module('sysctl_forward', {'ipv4': True, 'settings': [{'ipv6': True}]})
        assert result['failed'] and 'mutually exclusive' in result['msg']

    def test_something_to_set_is_required(self):
        result = harness.run_module('sysctl_forward', {'namespace': 'x'})
        assert result['failed'] and 'one of the following is required' in result['msg']

    def test_non_boolean_is_refused_by_the_argument_spec(self):
        result = harness.run_module('sysctl_forward', {'ipv4': 'maybe'})
        assert result['failed'] and 'ipv4' in result['msg']

    def test_restore_needs_record_dir_and_excludes_settings(self):
        result = harness.run_module('sysctl_forward', {'restore': True})
        assert result['failed'] and 'record_dir' in result['msg']
        result = harness.run_module('sysctl_forward', {'restore': True, 'record_dir': '/tmp', 'ipv6': True})
        assert result['failed'] and 'mutually exclusive' in result['msg']

    def test_missing_namespace_names_the_field(self):
        result = harness.run_module('sysctl_forward', {'settings': [{'namespace': 'lnt-unit-no-such-ns',
                                                                     'ipv4': True}]})
        assert result['failed'] and result['field'] == 'settings[0].namespace'


def test_every_missing_interface_of_an_item_is_named():
    wanted = validate(namespace='ns1', interfaces=[{'name': 'vz', 'ipv4': True}, {'name': 'va', 'ipv4': True},
                                                   {'name': 'vy', 'ipv6': True}])
    errors = S.namespace_errors(wanted, current())
    assert [(error.field, error.value) for error in errors] == [
        ('settings[0].interfaces[0].name', 'vz'), ('settings[0].interfaces[2].name', 'vy')]
    assert all('(it has: lo, va, vb)' in str(error) for error in errors)
    assert S.namespace_errors(validate(namespace='ns1', interfaces=[{'name': 'va', 'ipv4': True}]), current()) == []
