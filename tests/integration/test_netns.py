# SPDX-License-Identifier: GPL-3.0-or-later
"""The netns module against the real kernel: every namespace it makes has a unique
name reserved through the ``netns`` fixture, which deletes it after the test."""
import os
import subprocess
import time

import pytest

from tests.support import harness


def lo_is_up(ns):
    return 'UP' in harness.links(ns)['lo']['flags']


def test_create_list_idempotent_with_diff(run, netns):
    blue, red = netns(create=False), netns(create=False)
    args = {'namespaces': [{'name': blue}, {'name': red, 'loopback': False}]}

    result = run('netns', args, diff=True)
    assert result['_rc'] == 0 and result['changed'], result
    assert result['created'] == [blue, red] and result['removed'] == []
    assert result['commands'] == ['ip netns add %s' % blue, 'ip -n %s link set lo up' % blue,
                                  'ip netns add %s' % red]
    assert result['diff']['before'] == ''
    assert result['diff']['after'] == 'netns %s lo=up\nnetns %s lo=down\n' % (blue, red)
    assert {blue, red} <= set(harness.list_netns())
    assert lo_is_up(blue) and not lo_is_up(red)

    again = run('netns', args, diff=True)
    assert again['_rc'] == 0 and not again['changed'], again
    assert again['commands'] == [] and again['created'] == []
    assert again['diff']['before'] == again['diff']['after']


def test_single_name_form(run, netns):
    name = netns(create=False)
    result = run('netns', {'name': name})
    assert result['changed'] and result['namespaces'] == [
        {'name': name, 'state': 'present', 'loopback': True, 'created': True, 'removed': False, 'changed': True,
         'pids': []}]
    assert name in harness.list_netns() and lo_is_up(name)


def test_check_mode_changes_nothing(run, netns):
    existing = netns()
    new = netns(create=False)
    harness.sh(['ip', '-n', existing, 'link', 'set', 'lo', 'down'])
    before = harness.snapshot_own([existing, new])

    result = run('netns', {'namespaces': [{'name': existing}, {'name': new}]}, check=True, diff=True)
    assert result['_rc'] == 0 and result['changed'], result
    assert result['created'] == [new]
    assert 'netns %s lo=up' % new in result['diff']['after']
    assert harness.snapshot_own([existing, new]) == before

    gone = run('netns', {'name': existing, 'state': 'absent'}, check=True)
    assert gone['changed'] and gone['removed'] == [existing]
    assert harness.snapshot_own([existing, new]) == before


def test_names_match_exactly(run, netns):
    short = netns(create=False)
    longer = short + 'x'
    harness.sh(['ip', 'netns', 'add', longer])
    try:
        absent = run('netns', {'name': short, 'state': 'absent'})
        assert absent['_rc'] == 0 and not absent['changed'], absent
        assert longer in harness.list_netns()

        present = run('netns', {'name': short})
        assert present['changed'] and present['created'] == [short]
        assert {short, longer} <= set(harness.list_netns())
    finally:
        harness.delete_netns(longer)


def test_absent_removes_and_reports_running_processes(run, netns):
    busy, idle = netns(), netns()
    proc = subprocess.Popen(['ip', 'netns', 'exec', busy, 'sleep', '30'])
    try:
        target = os.stat('/run/netns/%s' % busy).st_ino
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                if os.stat('/proc/%d/ns/net' % proc.pid).st_ino == target:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        result = run('netns', {'state': 'absent', 'namespaces': [{'name': busy}, {'name': idle}]}, diff=True)
        assert result['_rc'] == 0 and result['changed'], result
        assert result['removed'] == [busy, idle]
        by_name = dict((entry['name'], entry) for entry in result['namespaces'])
        assert proc.pid in by_name[busy]['pids']
        assert by_name[idle]['pids'] == []
        warnings = str(result.get('warnings'))  # ansible-core 2.19 returns structured warnings
        assert 'namespace %s was removed' % busy in warnings and str(proc.pid) in warnings
        assert result['diff']['after'] == ''
        assert busy not in harness.list_netns() and idle not in harness.list_netns()
    finally:
        proc.kill()
        proc.wait()

    again = run('netns', {'state': 'absent', 'namespaces': [{'name': busy}, {'name': idle}]})
    assert not again['changed'] and again['removed'] == []


def test_loopback_drift_repaired(run, netns):
    name = netns()
    harness.sh(['ip', '-n', name, 'link', 'set', 'lo', 'down'])
    result = run('netns', {'name': name}, diff=True)
    assert result['changed'] and result['created'] == []
    assert result['commands'] == ['ip -n %s link set lo up' % name]
    assert result['diff']['before'] == 'netns %s lo=down\n' % name
    assert lo_is_up(name)


@pytest.mark.parametrize('bad, field', [
    ({'name': 'bad/name'}, 'name'),
    ({'namespaces': [{'name': 'OK'}, {'name': '..'}]}, 'namespaces[1].name'),
    ({'namespaces': [{'name': 'OK'}, {'name': 'OK'}]}, 'namespaces[1].name'),
    ({'name': 'x' * 70}, 'name'),
])
def test_bad_input_fails_and_changes_nothing(run, netns, bad, field):
    good = netns(create=False)
    args = dict(bad)
    if 'namespaces' in args:
        args['namespaces'] = [{'name': good if entry['name'] == 'OK' else entry['name']}
                              for entry in args['namespaces']]
    result = run('netns', args)
    assert result['_rc'] == 1 and result['failed'], result
    assert result['field'] == field and field in result['msg']
    # Other test sessions may add namespaces meanwhile: look only at the names of this call.
    assert good not in harness.list_netns()
    assert not os.path.lexists('/run/netns/%s' % good)


def test_failure_half_way_removes_what_was_created(run, netns):
    good, bad = netns(create=False), netns(create=False)
    # A directory where the namespace file should go: the bind mount onto it fails.
    os.mkdir('/run/netns/%s' % bad)
    try:
        result = run('netns', {'namespaces': [{'name': good}, {'name': bad}]})
        assert result['_rc'] == 1 and result['failed'], result
        assert 'everything this call had created was removed' in result['msg']
        assert good not in harness.list_netns()
        assert not os.path.exists('/run/netns/%s' % good)
    finally:
        os.rmdir('/run/netns/%s' % bad)


def test_many_namespaces_in_one_call(run, netns):
    names = [netns(create=False) for dummy in range(60)]
    started = time.time()
    result = run('netns', {'namespaces': [{'name': n} for n in names]})
    elapsed = time.time() - started
    assert result['changed'] and result['created'] == names
    assert set(names) <= set(harness.list_netns())
    assert all(lo_is_up(n) for n in names[::15])
    # One module call, one fork for all namespaces: far below one second per ten.
    assert elapsed < 10, elapsed
    removed = run('netns', {'state': 'absent', 'namespaces': [{'name': n} for n in names]})
    assert removed['removed'] == names
    assert not set(names) & set(harness.list_netns())
