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

from ansible_collections.linuxnet.netns.plugins.module_utils.common import (
    Report,
    check_errors,
    collect_items,
    failure,
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


def read_and_plan(wanted, records, restore):
    """Read each namespace once, check the items against it, compute the writes."""
    originals, plans, errors = {}, [], []
    for item in wanted:
        current = read_namespace(item.namespace)
        originals[item.namespace] = current
        if restore:
            item = restore_settings('restore', item.namespace, records[item.label].values, current)
        item_errors = namespace_errors(item, current)
        if item_errors:
            errors.extend(item_errors)
            continue
        plans.append(plan_settings(item, current))
    return originals, plans, errors


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


def build_result(diff, plans, files):
    report = Report()
    for plan in plans:
        before, after = report_lines(plan)
        report.before.extend(before)
        report.after.extend(after)
        report.command(*plan_commands(plan))
    result = report.result(diff, header='forwarding sysctls')
    result['changed'] = result['changed'] or bool(files)
    if diff and files:
        result['diff'] = [result['diff']] + [
            {'before_header': path, 'after_header': path, 'before': old, 'after': new}
            for path, old, new in files]
    result['files_changed'] = [entry[0] for entry in files]
    result['before'] = dict((plan.wanted.label, plan.before) for plan in plans)
    result['after'] = dict((plan.wanted.label, plan.after) for plan in plans)
    return result


# The argument spec's rules besides the spec itself (AnsibleModule keywords).
ARGUMENT_RULES = dict(
    mutually_exclusive=[('settings', option) for option in SETTING_OPTIONS + ('restore',)]
    + [('restore', option) for option in SETTING_OPTIONS],
    required_one_of=[('settings', 'ipv4', 'ipv6', 'ipv6_default', 'interfaces', 'restore')],
    required_if=[('restore', True, ('record_dir',))],
)


def execute(params, context):
    """The sysctl_forward module's whole call (plugins/module_utils/kind.py): the result, or KindError."""
    restore = bool(params['restore'])
    wanted, errors = validate_all(params)
    check_errors(errors)
    context.lock()
    records, errors = read_records(params['record_dir'], wanted)
    check_errors(errors)
    originals, plans, errors = read_and_plan(wanted, records, restore)
    check_errors(errors)
    record_files = record_diffs(plans, records, restore, originals)
    files = file_diffs(wanted) + record_files
    result = build_result(context.diff, plans, files)
    if context.check_mode:
        return result

    rollback = context.rollback
    try:
        for plan in plans:
            apply_plan(plan, originals[plan.wanted.namespace], rollback)
        # Files last: a failed sysctl write leaves no record of values that were not set.
        if any(content for dummy_path, dummy_old, content in record_files):
            ensure_record_dir(params['record_dir'], rollback)
        for path, old, content in files:
            rollback.register('restore %s' % path, put_file, context.module, path, old)
            put_file(context.module, path, content)
    except Exception as exc:  # undo the writes of this call, then fail with the reason
        raise failure(exc, rollback)
    # Report what the kernel holds now, not the prediction.
    for plan in plans:
        if plan.changed:
            current = read_namespace(plan.wanted.namespace)
            result['after'][plan.wanted.label] = dict(
                (setting.key, current.values.get(setting.path)) for setting in plan.wanted.settings)
    return result
