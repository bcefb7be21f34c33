# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the netns module does, callable in-process: validate, plan, create/remove named
network namespaces (plugins/modules/netns.py and plugins/modules/netns_topology.py run it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.linuxnet.netns.plugins.module_utils.common import (
    Report, check_errors, collect_items, failure, format_command)
from ansible_collections.linuxnet.netns.plugins.module_utils.links import (
    ip_command, loopback_is_up, set_loopback)
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    create_namespaces, entered, is_usable_namespace, list_namespaces, namespace_path,
    pids_by_namespace, remove_namespace)
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import (
    ValidationError, check_netns_name, check_unique)

ITEM_KEYS = ('name', 'state', 'loopback')
LOOPBACK = 'lo'


def argument_spec():
    return dict(
        name=dict(type='str'),
        namespaces=dict(type='list', elements='dict', options=dict(
            name=dict(type='str', required=True),
            state=dict(type='str', choices=['present', 'absent']),
            loopback=dict(type='bool'),
        )),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        loopback=dict(type='bool', default=True),
    )


class Wanted(object):
    """One namespace as the user asked for it."""

    def __init__(self, field, name, state, loopback):
        self.field = field
        self.name = name
        self.state = state
        self.loopback = loopback


def wanted_namespaces(params):
    """(wanted, errors): the validated namespaces and every ValidationError found."""
    errors = []
    wanted = []
    items = collect_items(params, 'namespaces', ITEM_KEYS, defaults_from_top=('state', 'loopback'))
    for prefix, item in items:
        try:
            name = check_netns_name(prefix + 'name', item.get('name'))
        except ValidationError as exc:
            errors.append(exc)
            continue
        wanted.append(Wanted(prefix + 'name', name, item.get('state') or 'present',
                             True if item.get('loopback') is None else item['loopback']))
    if params.get('namespaces') is not None:
        try:
            check_unique('namespaces', params['namespaces'], 'name')
        except ValidationError as exc:
            errors.append(exc)
    return wanted, errors


def loopback_label(up):
    return 'lo=up' if up else 'lo=down'


def namespace_line(name, loopback_up):
    return 'netns %s %s' % (name, loopback_label(loopback_up))


class Plan(object):
    """What one call does: namespaces to create, lo changes, namespaces to remove."""

    def __init__(self):
        self.create = []          # names
        self.loopback = []        # (name, up) for namespaces whose lo must change
        self.remove = []          # names (live namespaces)
        self.stale = []           # names of placeholder files that are not namespaces
        self.results = []


def plan_changes(wanted, existing, stale_files, loopback_state, pids_of):
    """Compare the wanted namespaces with what exists; fill a Plan and a Report.

    ``existing`` is the set of live namespace names, ``stale_files`` the set of names
    whose /run/netns file is not a namespace, ``loopback_state(name)`` tells whether
    lo is up in an existing namespace, ``pids_of(name)`` lists its processes.
    """
    plan = Plan()
    report = Report()
    for item in wanted:
        result = dict(name=item.name, state=item.state, created=False, removed=False, changed=False, pids=[],
                      loopback=item.loopback if item.state == 'present' else None)
        if item.state == 'present':
            if item.name in existing:
                current = loopback_state(item.name)
                if current != item.loopback:
                    plan.loopback.append((item.name, item.loopback))
                    result['changed'] = True
                    report.record(namespace_line(item.name, current), namespace_line(item.name, item.loopback),
                                  [ip_command(item.name, 'link', 'set', LOOPBACK, 'up' if item.loopback else 'down')])
                else:
                    report.record(namespace_line(item.name, current), namespace_line(item.name, current))
            else:
                plan.create.append(item.name)
                result['created'] = True
                commands = [format_command(['ip', 'netns', 'add', item.name])]
                if item.loopback:
                    plan.loopback.append((item.name, True))
                    commands.append(ip_command(item.name, 'link', 'set', LOOPBACK, 'up'))
                before = 'netns %s (stale file, not a namespace)' % item.name if item.name in stale_files else None
                report.record(before, namespace_line(item.name, item.loopback), commands)
        else:
            if item.name in existing:
                plan.remove.append(item.name)
                result['removed'] = True
                result['pids'] = pids_of(item.name)
                report.record('netns %s' % item.name, None,
                              [format_command(['ip', 'netns', 'delete', item.name])])
            elif item.name in stale_files:
                plan.stale.append(item.name)
                result['removed'] = True
                report.record('netns %s (stale file, not a namespace)' % item.name, None,
                              [format_command(['rm', namespace_path(item.name)])])
        result['changed'] = result['changed'] or result['created'] or result['removed']
        plan.results.append(result)
    return plan, report


def read_loopback(name):
    with entered(name):
        return loopback_is_up()


def write_loopback(name, up):
    with entered(name):
        set_loopback(up)


def stale_namespace_files(names):
    """Names whose /run/netns entry exists but is not a live namespace (e.g. left by
    a namespace created inside ``ip netns exec``'s private mount namespace)."""
    return set(name for name in names
               if os.path.lexists(namespace_path(name)) and not is_usable_namespace(name))


def create_all(names, rollback):
    """Create ``names`` in one fork; whatever gets created is registered for rollback,
    also when the helper fails half-way."""
    if not names:
        return
    rollback.register('remove the namespaces this call created', remove_created, names)
    create_namespaces(names)


def remove_created(names):
    for name in names:
        if is_usable_namespace(name):
            remove_namespace(name)


def create_and_configure(plan, rollback):
    create_all(plan.create, rollback)
    for name, up in plan.loopback:
        write_loopback(name, up)


def remove_all(plan):
    for name in plan.remove + plan.stale:
        remove_namespace(name)


# The argument spec's rules besides the spec itself (AnsibleModule keywords).
ARGUMENT_RULES = dict(
    mutually_exclusive=[('name', 'namespaces')],
    required_one_of=[('name', 'namespaces')],
)


def execute(params, context):
    """The netns module's whole call (plugins/module_utils/kind.py): the result, or KindError."""
    wanted, errors = wanted_namespaces(params)
    check_errors(errors)

    context.lock()
    rollback = None  # only once something is being created
    try:
        existing = set(list_namespaces())
        stale = stale_namespace_files([w.name for w in wanted])
        plan, report = plan_changes(wanted, existing, stale, read_loopback, pids_by_namespace())
        if not context.check_mode and report.changed:
            rollback = context.rollback
            create_and_configure(plan, rollback)
            # Removals come last and cannot be undone; what was created stays if they fail.
            rollback = None
            remove_all(plan)
    except Exception as exc:
        raise failure(exc, rollback)

    for result in plan.results:
        if result['pids']:
            context.warn('namespace %s %s removed from /run/netns, but processes still run in it '
                         '(pids %s): the namespace lives on until they exit'
                         % (result['name'], 'would be' if context.check_mode else 'was',
                            ', '.join(str(p) for p in result['pids'])))
    return report.result(
        context.diff, 'network namespaces',
        namespaces=plan.results,
        created=[r['name'] for r in plan.results if r['created']],
        removed=[r['name'] for r in plan.results if r['removed']],
    )
