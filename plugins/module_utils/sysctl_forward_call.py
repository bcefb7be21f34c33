# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the sysctl_forward module does, callable in-process: forwarding sysctls, their
persist file and the record of replaced values (plugins/modules/sysctl_forward.py and
plugins/modules/netns_topology.py run it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile
from collections import namedtuple

from ansible_collections.linuxnet.netns.plugins.module_utils.common import (
    Report,
    check_errors,
    collect_items,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    namespace_exists,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.sysctls import (
    ITEM_KEYS,
    WantedSettings,
    apply_plan,
    check_unique_targets,
    namespace_errors,
    persist_content,
    plan_commands,
    plan_settings,
    read_file,
    read_namespace,
    read_record,
    record_content,
    record_path,
    recorded_values,
    report_lines,
    restore_settings,
    validate_record_dir,
    validate_settings,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError, check_netns_name

SETTING_OPTIONS = ('ipv4', 'ipv6', 'ipv6_default', 'interfaces', 'persist')


class Record(object):
    """The record file of one namespace as read under the state lock."""

    def __init__(self, path, content, values):
        self.path = path
        self.content = content
        self.values = values


def argument_spec():
    interface = dict(name=dict(type='str', required=True), ipv4=dict(type='bool'), ipv6=dict(type='bool'))
    item = dict(
        namespace=dict(type='str'),
        ipv4=dict(type='bool'),
        ipv6=dict(type='bool'),
        ipv6_default=dict(type='bool'),
        interfaces=dict(type='list', elements='dict', options=interface),
        persist=dict(type='path'),
    )
    spec = dict(item)
    spec['settings'] = dict(type='list', elements='dict', options=item)
    spec['record_dir'] = dict(type='path')
    spec['restore'] = dict(type='bool')
    return spec


def validate_all(params):
    wanted, errors = [], []
    try:
        validate_record_dir('record_dir', params['record_dir'])
    except ValidationError as exc:
        errors.append(exc)
    if params['restore']:
        wanted, item_errors = validate_restore(params['namespace'])
    else:
        wanted, item_errors = validate_items(params)
    errors.extend(item_errors)
    for item in wanted:
        if item.namespace and not namespace_exists(item.namespace):
            errors.append(ValidationError(item.field + 'namespace', item.namespace,
                                          'network namespace %s does not exist (/run/netns/%s is missing); '
                                          'create it first (linuxnet.netns.netns)' % (item.namespace, item.namespace)))
    return wanted, errors


def validate_restore(namespace):
    """The one namespace to restore; its settings come from the record, read later."""
    try:
        if namespace is not None:
            check_netns_name('namespace', namespace)
    except ValidationError as exc:
        return [], [exc]
    return [WantedSettings('', namespace, [], [], None)], []


def validate_items(params):
    wanted, errors = [], []
    for field, item in collect_items(params, 'settings', ITEM_KEYS, defaults_from_top=('namespace',)):
        try:
            wanted.append(validate_settings(field, item))
        except ValidationError as exc:
            errors.append(exc)
    errors.extend(check_unique_targets(wanted))
    return wanted, errors


def read_records(record_dir, wanted):
    """The record of each item's namespace (label -> Record); {} without record_dir."""
    records, errors = {}, []
    if record_dir is None:
        return records, errors
    for item in wanted:
        path = record_path(record_dir, item.namespace)
        try:
            content, values = read_record('record_dir', path)
        except ValidationError as exc:
            errors.append(exc)
            continue
        records[item.label] = Record(path, content, values)
    return records, errors


def file_diffs(wanted):
    """(path, old content, new content) for every persist file whose content differs."""
    diffs = []
    for item in wanted:
        if item.persist is None:
            continue
        old, new = read_file(item.persist), persist_content(item)
        if old != new:
            diffs.append((item.persist, old, new))
    return diffs


def record_diffs(plans, records, restore, originals):
    """(path, old content, new content) of the records that move; new '' removes a record."""
    diffs = []
    for plan in plans:
        record = records.get(plan.wanted.label)
        if record is None:
            continue
        if restore:
            if record.content:
                diffs.append((record.path, record.content, ''))
            continue
        values = recorded_values(plan, record.values, originals[plan.wanted.namespace].values)
        if values != record.values:
            diffs.append((record.path, record.content, record_content(plan.wanted.namespace, values)))
    return diffs


def write_file(module, path, content):
    """Atomically replace ``path`` (a temporary file in the same directory, then rename)."""
    handle, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.sysctl_forward.')
    try:
        with os.fdopen(handle, 'w') as stream:
            stream.write(content)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def put_file(module, path, content):
    """Write ``content`` to ``path``, or remove the file when ``content`` is empty."""
    if content:
        write_file(module, path, content)
    elif os.path.exists(path):
        os.unlink(path)


def ensure_record_dir(path, rollback):
    if path is None or os.path.isdir(path):
        return
    os.makedirs(path, 0o755)
    rollback.register('remove %s' % path, remove_empty_dir, path)


def remove_empty_dir(path):
    try:
        os.rmdir(path)
    except OSError:
        pass  # not empty: something else lives there now


# The validated call; what it compares against (each namespace's forwarding values, the records
# of earlier values, the persist files whose content differs); the writes it plans.
Spec = namedtuple('Spec', 'wanted record_dir restore')
Current = namedtuple('Current', 'originals records files')
Plan = namedtuple('Plan', 'settings originals record_dir record_files files')


def validate(params):
    wanted, errors = validate_all(params)
    check_errors(errors)
    return Spec(wanted, params['record_dir'], bool(params['restore']))


def read(spec, context):
    records, errors = read_records(spec.record_dir, spec.wanted)
    check_errors(errors)
    originals = dict((item.namespace, read_namespace(item.namespace)) for item in spec.wanted)
    return Current(originals, records, file_diffs(spec.wanted))


def plan(spec, current, context):
    """Check each item against its namespace and compute the writes."""
    settings, errors = [], []
    for item in spec.wanted:
        values = current.originals[item.namespace]
        if spec.restore:
            item = restore_settings('restore', item.namespace, current.records[item.label].values, values)
        item_errors = namespace_errors(item, values)
        if item_errors:
            errors.extend(item_errors)
            continue
        settings.append(plan_settings(item, values))
    check_errors(errors)
    record_files = record_diffs(settings, current.records, spec.restore, current.originals)
    return Plan(settings, current.originals, spec.record_dir, record_files, current.files + record_files)


def apply(plan, context):
    rollback = context.rollback
    for item in plan.settings:
        apply_plan(item, plan.originals[item.wanted.namespace], rollback)
    # Files last: a failed sysctl write leaves no record of values that were not set.
    if any(content for dummy_path, dummy_old, content in plan.record_files):
        ensure_record_dir(plan.record_dir, rollback)
    for path, old, content in plan.files:
        rollback.register('restore %s' % path, put_file, context.module, path, old)
        put_file(context.module, path, content)


def result(plan, context):
    report = Report()
    for item in plan.settings:
        before, after = report_lines(item)
        report.before.extend(before)
        report.after.extend(after)
        report.command(*plan_commands(item))
    files = plan.files
    outcome = report.result(context.diff, header='forwarding sysctls')
    outcome['changed'] = outcome['changed'] or bool(files)
    if context.diff and files:
        outcome['diff'] = [outcome['diff']] + [
            {'before_header': path, 'after_header': path, 'before': old, 'after': new}
            for path, old, new in files]
    outcome['files_changed'] = [entry[0] for entry in files]
    outcome['before'] = dict((item.wanted.label, item.before) for item in plan.settings)
    outcome['after'] = dict((item.wanted.label, item.after) for item in plan.settings)
    if not context.check_mode:
        # What the kernel holds now, not the prediction.
        for item in plan.settings:
            if item.changed:
                current = read_namespace(item.wanted.namespace)
                outcome['after'][item.wanted.label] = dict(
                    (setting.key, current.values.get(setting.path)) for setting in item.wanted.settings)
    return outcome


# The argument spec's rules besides the spec itself (AnsibleModule keywords).
ARGUMENT_RULES = dict(
    mutually_exclusive=[('settings', option) for option in SETTING_OPTIONS + ('restore',)]
    + [('restore', option) for option in SETTING_OPTIONS],
    required_one_of=[('settings', 'ipv4', 'ipv6', 'ipv6_default', 'interfaces', 'restore')],
    required_if=[('restore', True, ('record_dir',))],
)
