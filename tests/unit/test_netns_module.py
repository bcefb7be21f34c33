# SPDX-License-Identifier: GPL-3.0-or-later
"""netns module without root: input validation, argument handling, and the plan/diff
computed from a fake list of namespaces."""
import json

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.linuxnet.netns.plugins.module_utils import netns_call as netns
from ansible_collections.linuxnet.netns.plugins.modules import netns as netns_module


def params(**overrides):
    base = dict(name=None, namespaces=None, state='present', loopback=True)
    base.update(overrides)
    return base


def plan_for(wanted_params, existing=(), stale=(), lo_up=(), pids=None):
    """The plan against a fake current state, and the namespaces whose lo ``read`` reads."""
    wanted = netns.validate(params(**wanted_params))
    asked = netns.existing_named(wanted, set(existing), 'present')
    current = netns.Current(set(existing), set(stale), dict((name, name in lo_up) for name in asked),
                            dict((name, found) for name, found in (pids or {}).items() if name in existing))
    plan = netns.plan(wanted, current, None)
    return plan, plan.report, asked


# --- validation --------------------------------------------------------------------

@pytest.mark.parametrize('overrides, field, fragment', [
    (dict(name='a/b'), 'name', 'single path component'),
    (dict(name='..'), 'name', 'single path component'),
    (dict(name='x' * 65), 'name', 'at most 64 bytes'),
    (dict(name='-dash'), 'name', 'must not start'),
    (dict(namespaces=[dict(name='ok'), dict(name='bad name')]), 'namespaces[1].name', 'may contain only'),
    (dict(namespaces=[dict(name='dup'), dict(name='dup')]), 'namespaces[1].name', 'duplicates namespaces[0].name'),
])
def test_invalid_names_are_rejected_with_their_field(overrides, field, fragment):
    wanted, errors = netns.wanted_namespaces(params(**overrides))
    by_field = dict((e.field, e) for e in errors)
    assert field in by_field, errors
    assert fragment in str(by_field[field])


def test_top_level_state_and_loopback_are_defaults_for_items():
    wanted, errors = netns.wanted_namespaces(params(state='absent', loopback=False, namespaces=[
        dict(name='a'), dict(name='b', state='present'), dict(name='c', state='present', loopback=True)]))
    assert errors == []
    assert [(w.name, w.state, w.loopback) for w in wanted] == [
        ('a', 'absent', False), ('b', 'present', False), ('c', 'present', True)]


# --- plans ---------------------------------------------------------------------------

def test_missing_namespaces_are_created_with_loopback_up():
    plan, report, asked = plan_for(dict(namespaces=[dict(name='blue'), dict(name='red', loopback=False)]))
    assert plan.create == ['blue', 'red']
    assert plan.loopback == [('blue', True)]
    assert report.commands == ['ip netns add blue', 'ip -n blue link set lo up', 'ip netns add red']
    assert report.diff()['after'] == 'netns blue lo=up\nnetns red lo=down\n'
    assert report.diff()['before'] == ''
    assert asked == []  # nothing to read in namespaces that do not exist yet
    assert [r['created'] for r in plan.results] == [True, True]


def test_names_match_exactly_never_as_substrings():
    # "blue" must be created although "blue2" and "xblue" exist.
    plan, report, dummy = plan_for(dict(name='blue'), existing={'blue2', 'xblue'})
    assert plan.create == ['blue']
    plan, report, dummy = plan_for(dict(name='blue', state='absent'), existing={'blue2', 'xblue'})
    assert plan.remove == [] and not report.changed


def test_existing_namespace_in_sync_is_unchanged():
    plan, report, asked = plan_for(dict(name='blue'), existing={'blue'}, lo_up={'blue'})
    assert not report.changed and plan.create == [] and plan.loopback == []
    assert asked == ['blue']


def test_loopback_drift_is_repaired_both_ways():
    plan, report, dummy = plan_for(dict(name='blue'), existing={'blue'})
    assert plan.loopback == [('blue', True)] and report.commands == ['ip -n blue link set lo up']
    assert report.diff()['before'] == 'netns blue lo=down\n'
    plan, report, dummy = plan_for(dict(name='blue', loopback=False), existing={'blue'}, lo_up={'blue'})
    assert plan.loopback == [('blue', False)] and report.commands == ['ip -n blue link set lo down']


def test_absent_reports_pids_still_running():
    plan, report, dummy = plan_for(dict(namespaces=[dict(name='blue'), dict(name='gone')], state='absent'),
                                   existing={'blue'}, pids={'blue': [42, 4242]})
    assert plan.remove == ['blue']
    assert report.commands == ['ip netns delete blue']
    blue, gone = plan.results
    assert blue['removed'] and blue['pids'] == [42, 4242]
    assert not gone['removed'] and gone['pids'] == []


def test_stale_placeholder_file_counts_as_missing():
    plan, report, dummy = plan_for(dict(name='blue'), stale={'blue'})
    assert plan.create == ['blue']
    assert report.diff()['before'] == 'netns blue (stale file, not a namespace)\n'
    plan, report, dummy = plan_for(dict(name='blue', state='absent'), stale={'blue'})
    assert plan.stale == ['blue'] and report.changed


# --- argument handling ---------------------------------------------------------------

def run_main(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            netns_module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_name_and_namespaces_are_mutually_exclusive(capsys):
    rc, result = run_main({'name': 'a', 'namespaces': [{'name': 'b'}]}, capsys)
    assert rc == 1 and 'mutually exclusive' in result['msg']


def test_one_of_name_or_namespaces_is_required(capsys):
    rc, result = run_main({'state': 'absent'}, capsys)
    assert rc == 1 and 'one of the following is required' in result['msg']


def test_bad_state_is_rejected(capsys):
    rc, result = run_main({'name': 'a', 'state': 'gone'}, capsys)
    assert rc == 1 and 'state' in result['msg'] and 'present' in result['msg']


def test_invalid_name_fails_before_touching_anything(capsys):
    rc, result = run_main({'namespaces': [{'name': 'fine'}, {'name': 'no/slash'}]}, capsys)
    assert rc == 1
    assert result['field'] == 'namespaces[1].name' and result['value'] == 'no/slash'
    assert result['msg'].startswith('invalid input: namespaces[1].name=')


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(netns_module.DOCUMENTATION)
    spec = netns.argument_spec()
    assert set(doc['options']) == set(spec)
    for name, option in spec.items():
        documented = doc['options'][name]
        for key in ('type', 'default', 'choices', 'elements'):
            assert option.get(key) == documented.get(key), (name, key)
    sub_spec = spec['namespaces']['options']
    sub_doc = doc['options']['namespaces']['suboptions']
    assert set(sub_spec) == set(sub_doc)
    for name, option in sub_spec.items():
        for key in ('type', 'choices', 'required'):
            assert option.get(key, False if key == 'required' else None) == \
                sub_doc[name].get(key, False if key == 'required' else None), (name, key)
