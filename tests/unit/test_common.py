# SPDX-License-Identifier: GPL-3.0-or-later
"""plugins/module_utils/common.py (input collection, Report, Rollback, failures, command
formatting) and the pure parts of netns_session.py."""
import errno
import os
import shlex

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import common
from ansible_collections.linuxnet.netns.plugins.module_utils import netns_session
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import NamespaceMissing
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError


class Failed(Exception):
    """What our stand-in for AnsibleModule.fail_json raises (the real one exits)."""

    def __init__(self, kwargs):
        super(Failed, self).__init__(kwargs.get('msg'))
        self.kwargs = kwargs


class RecordingModule:
    """Just the AnsibleModule surface common.py touches: fail_json."""

    def fail_json(self, **kwargs):
        raise Failed(kwargs)


# --- collect_items -------------------------------------------------------------------------

class TestCollectItems:
    def test_top_level_options_make_one_item_without_prefix(self):
        params = {'name': 'v1', 'peer': 'v2', 'state': 'present', 'pairs': None, 'unrelated': 1}
        assert common.collect_items(params, 'pairs', ('name', 'peer', 'mtu')) == [
            ('', {'name': 'v1', 'peer': 'v2', 'mtu': None})]

    def test_list_items_get_their_index_as_field_prefix(self):
        params = {'pairs': [{'name': 'a'}, {'name': 'b'}], 'state': None}
        items = common.collect_items(params, 'pairs', ('name',))
        assert [prefix for prefix, item in items] == ['pairs[0].', 'pairs[1].']
        assert [item['name'] for prefix, item in items] == ['a', 'b']

    def test_top_level_state_is_a_default_that_items_can_override(self):
        params = {'namespaces': [{'name': 'a'}, {'name': 'b', 'state': 'absent'}, {'name': 'c', 'state': None}],
                  'state': 'present'}
        states = [item['state'] for prefix, item in common.collect_items(params, 'namespaces', ('name',))]
        assert states == ['present', 'absent', 'present']

    def test_other_defaults_only_when_asked(self):
        params = {'routes': [{'dest': 'default'}], 'namespace': 'ns1', 'state': 'present'}
        plain = common.collect_items(params, 'routes', ('dest',))[0][1]
        assert 'namespace' not in plain
        with_ns = common.collect_items(params, 'routes', ('dest',), defaults_from_top=('state', 'namespace'))[0][1]
        assert with_ns == {'dest': 'default', 'namespace': 'ns1', 'state': 'present'}

    def test_items_are_copies(self):
        raw = [{'name': 'a', 'addresses': ['10.0.0.1/24']}]
        item = common.collect_items({'pairs': raw, 'state': 'absent'}, 'pairs', ('name',))[0][1]
        item['addresses'].append('10.0.0.2/24')
        assert raw == [{'name': 'a', 'addresses': ['10.0.0.1/24']}]

    def test_empty_list_means_no_items(self):
        assert common.collect_items({'pairs': [], 'name': 'x'}, 'pairs', ('name',)) == []


# --- Report --------------------------------------------------------------------------------

class TestReport:
    def test_nothing_recorded_is_unchanged(self):
        report = common.Report()
        assert not report.changed
        assert report.result(False) == {'changed': False, 'commands': []}

    def test_same_lines_in_another_order_are_unchanged(self):
        report = common.Report()
        report.record('a', 'b')
        report.record('b', 'a')
        assert not report.changed

    def test_different_lines_are_a_change(self):
        report = common.Report()
        report.record('netns ns1 absent', 'netns ns1 present')
        assert report.changed

    def test_a_command_alone_is_a_change(self):
        report = common.Report()
        report.record('x', 'x', commands=['ip link set v1 up'])
        assert report.changed
        assert report.commands == ['ip link set v1 up']

    def test_none_lines_are_not_recorded(self):
        report = common.Report()
        report.record(None, 'route default via 10.0.0.1')
        report.record('address 10.0.0.2/24', None)
        assert report.before == ['address 10.0.0.2/24']
        assert report.after == ['route default via 10.0.0.1']

    def test_commands_keep_their_order(self):
        report = common.Report()
        report.command('ip netns add b')
        report.record(None, 'x', commands=('ip netns add a', 'ip -n a link set lo up'))
        report.command('one', 'two')
        assert report.commands == ['ip netns add b', 'ip netns add a', 'ip -n a link set lo up', 'one', 'two']

    def test_diff_is_sorted_newline_terminated_text_with_headers(self):
        report = common.Report()
        report.record('b line', 'b line')
        report.record('a line', None)
        report.record(None, 'c line')
        assert report.diff('veth') == {
            'before_header': 'veth (before)', 'after_header': 'veth (after)',
            'before': 'a line\nb line\n', 'after': 'b line\nc line\n'}
        assert report.diff()['before_header'] == 'before'
        assert report.diff()['after_header'] == 'after'

    def test_empty_side_of_the_diff_is_empty_text(self):
        report = common.Report()
        report.record(None, 'netns ns1')
        assert report.diff()['before'] == ''

    def test_result_has_diff_only_in_diff_mode_and_keeps_extras(self):
        report = common.Report()
        report.record(None, 'netns ns1', commands=['ip netns add ns1'])
        plain = report.result(False, 'netns', created=['ns1'])
        assert plain == {'changed': True, 'commands': ['ip netns add ns1'], 'created': ['ns1']}
        with_diff = report.result(True, 'netns')
        assert with_diff['diff'] == {'before_header': 'netns (before)', 'after_header': 'netns (after)',
                                     'before': '', 'after': 'netns ns1\n'}

    def test_result_commands_are_a_copy(self):
        report = common.Report()
        report.command('x')
        result = report.result(False)
        result['commands'].append('y')
        assert report.commands == ['x']


# --- Rollback ------------------------------------------------------------------------------

class TestRollback:
    def test_undoes_in_reverse_order_with_arguments(self):
        calls = []
        rollback = common.Rollback()
        rollback.register('first', calls.append, 'undo first')
        rollback.register('second', lambda item, suffix='': calls.append(item + suffix), 'undo second', suffix='!')
        rollback.register('third', calls.append, 'undo third')
        assert rollback.run() == []
        assert calls == ['undo third', 'undo second!', 'undo first']

    def test_keeps_undoing_after_an_error_and_reports_it(self):
        calls = []

        def broken():
            raise OSError(errno.EBUSY, 'Device or resource busy')

        rollback = common.Rollback()
        rollback.register('delete ns a', calls.append, 'a')
        rollback.register('delete link v1', broken)
        rollback.register('delete ns b', calls.append, 'b')
        errors = rollback.run()
        assert calls == ['b', 'a']
        assert errors == ['delete link v1: [Errno 16] Device or resource busy']

    def test_runs_each_undo_once(self):
        calls = []
        rollback = common.Rollback()
        rollback.register('x', calls.append, 'x')
        rollback.run()
        assert rollback.run() == []
        assert calls == ['x']

    def test_discard_forgets_everything(self):
        calls = []
        rollback = common.Rollback()
        rollback.register('x', calls.append, 'x')
        rollback.discard()
        assert rollback.run() == []
        assert calls == []


# --- fail_from_exception -------------------------------------------------------------------

class TestFailFromException:
    def fail(self, exc, rollback=None, **extra):
        with pytest.raises(Failed) as info:
            common.fail_from_exception(RecordingModule(), exc, rollback, **extra)
        return info.value.kwargs

    def test_validation_error_names_field_and_value(self):
        result = self.fail(ValidationError('pairs[1].name', 'v' * 16, 'too long'))
        assert result['msg'] == "invalid input: pairs[1].name='%s': too long" % ('v' * 16)
        assert result['field'] == 'pairs[1].name'
        assert result['value'] == 'v' * 16
        assert 'exception' not in result

    def test_missing_namespace_names_it(self):
        result = self.fail(NamespaceMissing('ghost'))
        assert result['namespace'] == 'ghost'
        assert "'ghost' does not exist" in result['msg']
        assert '/run/netns/ghost is missing' in result['msg']

    def test_other_errors_carry_type_and_traceback(self):
        result = None
        try:
            raise OSError(errno.EPERM, 'Operation not permitted')
        except OSError as exc:
            result = self.fail(exc)
        assert result['msg'] == 'PermissionError: [Errno 1] Operation not permitted'
        assert 'Traceback' in result['exception']

    def test_rolls_back_first_and_says_so(self):
        calls = []
        rollback = common.Rollback()
        rollback.register('delete ns a', calls.append, 'a')
        result = self.fail(ValidationError('x', 1, 'bad'), rollback)
        assert calls == ['a']
        assert result['msg'].endswith('; everything this call had created was removed')

    def test_reports_an_incomplete_rollback(self):
        def broken():
            raise RuntimeError('still busy')

        rollback = common.Rollback()
        rollback.register('delete ns a', broken)
        result = self.fail(RuntimeError('boom'), rollback)
        assert result['msg'].startswith('RuntimeError: boom')
        assert result['msg'].endswith('; rollback incomplete: delete ns a: still busy')

    def test_extra_results_are_kept_and_not_overridden(self):
        result = self.fail(ValidationError('name', 'x', 'bad'), None, field='given', pairs=[])
        assert result['field'] == 'given'
        assert result['pairs'] == []


# --- KindError, failure, check_errors (what the kinds raise instead of fail_json) -----------

class TestFailure:
    def test_a_kind_error_keeps_its_message_and_fields_through_a_generic_handler(self):
        try:
            try:
                raise common.KindError('v1 exists', conflicts=['v1'])
            except Exception as exc:  # as a kind's own error handling around its apply
                raise common.failure(exc)
        except common.KindError as error:
            assert error.msg == str(error) == 'v1 exists'
            assert error.fields == {'conflicts': ['v1']}  # no exception traceback, not "KindError: ..."

    def test_a_kind_error_after_a_rollback_says_what_was_undone(self):
        calls = []
        rollback = common.Rollback()
        rollback.register('delete v1', calls.append, 'v1')
        error = common.failure(common.KindError('conflict', pairs=[]), rollback, field='x')
        assert calls == ['v1'] and error.fields == {'pairs': [], 'field': 'x'}
        assert error.msg == 'conflict; everything this call had created was removed'

    def test_check_errors_names_the_first_and_lists_every_one(self):
        common.check_errors([])  # nothing wrong: nothing raised
        errors = [ValidationError('a', 1, 'bad'), ValidationError('b', 2, 'worse')]
        with pytest.raises(common.KindError) as info:
            common.check_errors(errors)
        assert info.value.msg == "invalid input: a=1: bad"
        assert info.value.fields == {'field': 'a', 'value': 1, 'errors': ["a=1: bad", "b=2: worse"]}


# --- format_command / COMMAND_ENVIRON ------------------------------------------------------

class TestFormatCommand:
    def test_plain_words_are_not_quoted(self):
        argv = ['ip', '-n', 'ns1', 'addr', 'add', '192.168.45.2/24', 'dev', 'veth2', 'key=v,w:x@y%z+_']
        assert common.format_command(argv) == ' '.join(argv)

    @pytest.mark.parametrize('arg,expected', [
        ('', "''"),
        ('a b', "'a b'"),
        ('$HOME', "'$HOME'"),
        ('x;rm -rf /', "'x;rm -rf /'"),
        ("it's", "'it'\"'\"'s'"),
        ('*', "'*'"),
        ('-m comment --comment "lnn:x"', "'-m comment --comment \"lnn:x\"'"),
    ])
    def test_quotes_what_a_shell_would_interpret(self, arg, expected):
        assert common.format_command(['echo', arg]) == 'echo ' + expected

    def test_non_strings_are_formatted(self):
        assert common.format_command(['ip', 'link', 'set', 'v1', 'mtu', 1400]) == 'ip link set v1 mtu 1400'

    @pytest.mark.parametrize('argv', [
        ['iptables', '-t', 'nat', '-A', 'LNN-POST', '-m', 'comment', '--comment', 'linuxnet.netns: a b', '-j', 'MASQUERADE'],
        ['sh', '-c', "echo 'quoted' \"double\" $VAR `cmd` \\ back"],
        ['printf', '%s\n', '', 'tab\there'],
    ])
    def test_a_shell_splits_it_back_into_the_same_argv(self, argv):
        assert shlex.split(common.format_command(argv)) == argv

    def test_environment_is_untranslated(self):
        assert common.COMMAND_ENVIRON == {'LC_ALL': 'C', 'LANG': 'C'}


# --- netns_session: the parts that need no root ---------------------------------------------

@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A stand-in /run/netns: plain files in it are what a failed mount leaves behind."""
    monkeypatch.setattr(netns_session, 'NETNS_RUN_DIR', str(tmp_path))
    return tmp_path


class TestNetnsSession:
    def test_namespace_path(self):
        assert netns_session.namespace_path('ns1') == '/run/netns/ns1'

    def test_missing_message_names_namespace_path_and_fix(self):
        err = NamespaceMissing('lab-1')
        assert err.name == 'lab-1'
        assert str(err) == ("network namespace 'lab-1' does not exist (/run/netns/lab-1 is missing); "
                            "create it first (linuxnet.netns.netns) or fix the name")

    def test_missing_run_dir_means_no_namespaces(self, tmp_path, monkeypatch):
        monkeypatch.setattr(netns_session, 'NETNS_RUN_DIR', str(tmp_path / 'absent'))
        assert netns_session.list_namespaces() == []

    def test_plain_files_are_not_namespaces(self, run_dir):
        (run_dir / 'stale').write_text('')
        assert netns_session.list_namespaces() == []
        assert not netns_session.namespace_exists('stale')
        assert not netns_session.namespace_exists('never-made')

    def test_entered_none_stays_without_setns(self, monkeypatch):
        def refuse(fd, what):
            raise AssertionError('setns must not be called: ' + what)
        monkeypatch.setattr(netns_session, '_setns', refuse)
        with netns_session.entered(None):
            inside = True
        assert inside

    def test_entering_a_missing_namespace_never_creates_it(self, run_dir, monkeypatch):
        entered_fds = []
        monkeypatch.setattr(netns_session, '_setns', lambda fd, what: entered_fds.append(what))
        (run_dir / 'stale').write_text('')
        for name in ('ghost', 'stale'):
            with pytest.raises(NamespaceMissing) as info:
                with netns_session.entered(name):
                    pytest.fail('the body must not run')
            assert info.value.name == name
        assert entered_fds == []
        assert sorted(os.listdir(str(run_dir))) == ['stale']

    def test_no_pids_in_a_missing_namespace(self, run_dir):
        assert netns_session.pids_by_namespace()('ghost') == []

    def test_require_pyroute2_fails_with_install_hint(self, monkeypatch):
        monkeypatch.setattr(netns_session, 'HAS_PYROUTE2', False)
        monkeypatch.setattr(netns_session, 'PYROUTE2_IMPORT_ERROR', 'ImportError: No module named pyroute2')
        with pytest.raises(Failed) as info:
            netns_session.require_pyroute2(RecordingModule())
        assert info.value.kwargs['msg'] == netns_session.PYROUTE2_INSTALL_HINT
        assert 'apt-get install python3-pyroute2' in info.value.kwargs['msg']
        assert 'pip install pyroute2' in info.value.kwargs['msg']
        assert info.value.kwargs['exception'] == 'ImportError: No module named pyroute2'

    def test_require_pyroute2_passes_when_present(self, monkeypatch):
        monkeypatch.setattr(netns_session, 'HAS_PYROUTE2', True)
        netns_session.require_pyroute2(RecordingModule())  # must not call fail_json
