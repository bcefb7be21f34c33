# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the netns module does, callable in-process: validate, plan, create/remove named
network namespaces (plugins/modules/netns.py and plugins/modules/netns_topology.py run it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
from collections import namedtuple

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
        self.report = Report()


# What a call compares against: ``existing`` live namespace names, ``stale`` names whose
# /run/netns file is not a namespace, ``loopback`` name -> lo up? for the wanted existing
# namespaces, ``pids`` name -> processes still in each namespace to remove.
Current = namedtuple('Current', 'existing stale loopback pids')


def existing_named(wanted, existing, state):
    return [item.name for item in wanted if item.state == state and item.name in existing]


def plan(wanted, current, context):
    """Compare the wanted namespaces with ``current``; a Plan whose ``report`` has the diff."""
    changes = Plan()
    report = changes.report
    existing, stale_files = current.existing, current.stale
    for item in wanted:
        entry = dict(name=item.name, state=item.state, created=False, removed=False, changed=False, pids=[],
                     loopback=item.loopback if item.state == 'present' else None)
        if item.state == 'present':
            if item.name in existing:
                lo_up = current.loopback[item.name]
                if lo_up != item.loopback:
                    changes.loopback.append((item.name, item.loopback))
                    entry['changed'] = True
                    report.record(namespace_line(item.name, lo_up), namespace_line(item.name, item.loopback),
                                  [ip_command(item.name, 'link', 'set', LOOPBACK, 'up' if item.loopback else 'down')])
                else:
                    report.record(namespace_line(item.name, lo_up), namespace_line(item.name, lo_up))
            else:
                changes.create.append(item.name)
                entry['created'] = True
                commands = [format_command(['ip', 'netns', 'add', item.name])]
                if item.loopback:
                    changes.loopback.append((item.name, True))
                    commands.append(ip_command(item.name, 'link', 'set', LOOPBACK, 'up'))
                before = 'netns %s (stale file, not a namespace)' % item.name if item.name in stale_files else None
                report.record(before, namespace_line(item.name, item.loopback), commands)
        else:
            if item.name in existing:
                changes.remove.append(item.name)
                entry['removed'] = True
                entry['pids'] = current.pids.get(item.name, [])
                report.record('netns %s' % item.name, None,
                              [format_command(['ip', 'netns', 'delete', item.name])])
            elif item.name in stale_files:
                changes.stale.append(item.name)
                entry['removed'] = True
                report.record('netns %s (stale file, not a namespace)' % item.name, None,
                              [format_command(['rm', namespace_path(item.name)])])
        entry['changed'] = entry['changed'] or entry['created'] or entry['removed']
        changes.results.append(entry)
    return changes


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


def validate(params):
    wanted, errors = wanted_namespaces(params)
    check_errors(errors)
    return wanted


def read(wanted, context):
    existing = set(list_namespaces())
    pids_of = pids_by_namespace()
    return Current(existing, stale_namespace_files([item.name for item in wanted]),
                   dict((name, read_loopback(name)) for name in existing_named(wanted, existing, 'present')),
                   dict((name, pids_of(name)) for name in existing_named(wanted, existing, 'absent')))


def apply(plan, context):
    if not plan.report.changed:
        return
    create_and_configure(plan, context.rollback)
    try:
        # Removals come last and cannot be undone; what was created stays if they fail.
        remove_all(plan)
    except Exception as exc:
        raise failure(exc)


def result(plan, context):
    for item in plan.results:
        if item['pids']:
            context.warn('namespace %s %s removed from /run/netns, but processes still run in it '
                         '(pids %s): the namespace lives on until they exit'
                         % (item['name'], 'would be' if context.check_mode else 'was',
                            ', '.join(str(p) for p in item['pids'])))
    return plan.report.result(
        context.diff, 'network namespaces',
        namespaces=plan.results,
        created=[r['name'] for r in plan.results if r['created']],
        removed=[r['name'] for r in plan.results if r['removed']],
    )
