# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the netns_route module does, callable in-process: validate, read, plan and apply
routes in namespaces (plugins/modules/netns_route.py and plugins/modules/netns_topology.py run it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.linuxnet.netns.plugins.module_utils.common import (
    Report,
    check_errors,
    collect_items,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    entered,
    namespace_exists,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.routes import (
    ITEM_KEYS,
    apply_changes,
    change_commands,
    check_against_namespace,
    check_duplicates,
    plan_route,
    read_namespace_state,
    report_lines,
    validate_route,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError

ROUTE_OPTIONS = ('dest', 'gateway', 'device', 'metric', 'table', 'family', 'onlink')


def argument_spec():
    route = dict(
        dest=dict(type='str'),
        gateway=dict(type='str'),
        device=dict(type='str'),
        metric=dict(type='int'),
        table=dict(type='int'),
        family=dict(type='str', choices=['ipv4', 'ipv6']),
        onlink=dict(type='bool', default=False),
    )
    item = dict(route, namespace=dict(type='str'), state=dict(type='str', choices=['present', 'absent']))
    item['dest'] = dict(type='str', required=True)
    spec = dict(route)
    spec.update(
        namespace=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        routes=dict(type='list', elements='dict', options=item),
    )
    return spec


def validate(params):
    """Every request checked on its own; all errors are collected before failing."""
    wanted, errors = [], []
    for field, item in collect_items(params, 'routes', ITEM_KEYS, defaults_from_top=('state', 'namespace')):
        try:
            wanted.append(validate_route(field, item))
        except ValidationError as exc:
            errors.append(exc)
    errors.extend(check_duplicates(wanted))
    reported = set()
    for route in wanted:
        if route.namespace and route.namespace not in reported and not namespace_exists(route.namespace):
            reported.add(route.namespace)
            errors.append(ValidationError(route.field + 'namespace', route.namespace,
                                          'network namespace %s does not exist (/run/netns/%s is missing); '
                                          'create it first (linuxnet.netns.netns)' % (route.namespace, route.namespace)))
    check_errors(errors)
    return wanted


def read(wanted, context):
    """Each namespace's links, addresses and routes, read once, for the IP versions its
    requests are about (a namespace holding only IPv4 requests never has its IPv6 routes
    read)."""
    versions = {}
    for route in wanted:
        versions.setdefault(route.namespace, set()).add(route.version)
    states = {}
    for namespace, namespace_versions in versions.items():
        with entered(namespace):
            states[namespace] = read_namespace_state(namespace, namespace_versions)
    return states


class Plan(object):
    """The route changes of a call, the namespaces' states they were planned against, the report."""

    def __init__(self, changes, states):
        self.changes = changes
        self.states = states
        self.report = Report()
        for change in changes:
            before, after = report_lines(change)
            self.report.before.extend(before)
            self.report.after.extend(after)
            self.report.command(*change_commands(change))


def plan(wanted, states, context):
    changes, errors = [], []
    for route in wanted:
        state = states[route.namespace]
        try:
            check_against_namespace(route, state)
            changes.append(plan_route(route, state))
        except ValidationError as exc:
            errors.append(exc)
    check_errors(errors)
    return Plan(changes, states)


def apply(plan, context):
    """Write the changes, one batch per namespace that has any."""
    by_namespace = {}
    for change in plan.changes:
        if change.changed:
            by_namespace.setdefault(change.wanted.namespace, []).append(change)
    for namespace, namespace_changes in by_namespace.items():
        apply_changes(namespace, namespace_changes, plan.states[namespace].links, context.rollback)


def result(plan, context):
    return dict(routes=[change.result() for change in plan.changes], **plan.report.result(context.diff, header='routes'))


# The argument spec's rules besides the spec itself (AnsibleModule keywords).
ARGUMENT_RULES = dict(
    mutually_exclusive=[('routes', option) for option in ROUTE_OPTIONS],
    required_one_of=[('routes', 'dest')],
)
