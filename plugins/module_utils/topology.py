# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""netns_topology: the five state modules' calls run one after the other in one process.

Each part is validated by its own module's argument spec and runs its own module's code
(``kind.execute`` of its ``<kind>_call`` API, plugins/module_utils/kind.py), which returns the
part's result or raises KindError. All parts get one CallContext, so they register their undo actions with
one Rollback: when a part fails, what the parts before it created is removed too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.linuxnet.netns.plugins.module_utils import (
    nat_rule_call, netns_call, netns_route_call, ownership, sysctl_forward_call, veth_call)
from ansible_collections.linuxnet.netns.plugins.module_utils.common import KindError, format_command
from ansible_collections.linuxnet.netns.plugins.module_utils.kind import CallContext, execute
from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import NetnsRunner

# name: (the kind's code, list option, whether the part takes a top-level state)
PARTS = {
    'netns': (netns_call, 'namespaces', True),
    'veth': (veth_call, 'pairs', True),
    'netns_route': (netns_route_call, 'routes', True),
    'sysctl_forward': (sysctl_forward_call, 'settings', False),
    'nat_rule': (nat_rule_call, 'rules', True),
}

# Building goes outside in (namespaces before what lives in them, forwarding before the
# rules that use it); removing goes inside out (rules refer to the links and subnets).
ORDER = {
    'present': ('netns', 'veth', 'netns_route', 'sysctl_forward', 'nat_rule'),
    'absent': ('nat_rule', 'netns_route', 'veth', 'netns', 'sysctl_forward'),
}

NAMESPACE_KEYS = ('namespace', 'peer_namespace')

# The per-object lists of the parts' results, which report=changed trims.
OBJECT_LISTS = {'netns': 'namespaces', 'veth': 'pairs', 'netns_route': 'routes'}


def part_params(part, given, state):
    """The part's options (a dict, or JSON text of one: the option type is json) with the
    top-level state as the default of its own."""
    params = parsed_options(part, given)
    if PARTS[part][2] and params.get('state') is None:
        params['state'] = state
    return params


def parsed_options(part, given):
    """The part's options as a new dict (they may come as JSON text)."""
    if not isinstance(given, dict):
        try:
            given = json.loads(given)
        except ValueError as exc:
            raise KindError('invalid input: not a JSON object: %s' % exc)
    if not isinstance(given, dict):
        raise KindError('invalid input: expected a dictionary of the module\'s options, got %s' % type(given).__name__)
    return dict(given)


def namespaces_named(item, defaults):
    names = set()
    for key in NAMESPACE_KEYS:
        value = item.get(key) if item.get(key) is not None else defaults.get(key)
        if value is not None:
            names.add(value)
    return names


def without_pending(part, params, pending):
    """The part's options minus the objects in namespaces that check mode only pretends to
    create (they cannot be compared with a namespace that does not exist yet), and the
    objects left out; None when nothing is left to preview."""
    list_key = PARTS[part][1]
    items = params.get(list_key)
    if not items:  # the single form, or an empty list with top-level options only
        if namespaces_named(params, {}) & pending:
            return None, ([params] if items is None else [])
        return params, []
    kept = [item for item in items if not namespaces_named(item, params) & pending]
    left_out = [item for item in items if namespaces_named(item, params) & pending]
    if not kept:
        return None, left_out
    reduced = dict(params)
    reduced[list_key] = kept
    return reduced, left_out


def describe_pending(part, item, defaults):
    """One line for an object that would be created in a namespace check mode only pretends
    to create: what a real run would add there."""
    shown = dict((key, value) for key, value in sorted(defaults.items())
                 if key != PARTS[part][1] and value is not None and not isinstance(value, (list, dict)))
    shown.update((key, value) for key, value in sorted(item.items()) if value is not None)
    shown.pop('state', None)
    return '+ %s %s' % (part, ' '.join('%s=%s' % (key, ','.join(map(str, value)) if isinstance(value, list)
                                                  else value) for key, value in sorted(shown.items())))


def check_options(part, params):
    """The part's options checked and completed by its module's argument spec (as
    AnsibleModule would), or KindError. Every part's are checked before the first runs."""
    code = PARTS[part][0]
    validated = ArgumentSpecValidator(code.argument_spec(), **code.ARGUMENT_RULES).validate(params)
    if validated.error_messages:
        messages = list(validated.error_messages)
        if validated.unsupported_parameters:  # AnsibleModule's wording for the same mistake
            messages[0] = 'unsupported parameters of %s: %s' % (part, messages[0])
        raise KindError('invalid input: %s' % '; '.join(messages), errors=messages)
    return validated.validated_parameters


def run_part(context, part, options):
    """The part's result: its module's call on its checked options, with the shared context."""
    context.prefix = '%s: ' % part
    return execute(PARTS[part][0], options, context)


class Topology(object):
    """Runs the parts of one netns_topology call in order and merges their results."""

    def __init__(self, module):
        self.module = module
        self.state = module.params['state']
        self.context = CallContext(module)
        self.results = {}
        self.pending = set()
        self.left_out = {}
        self.pending_lines = {}
        self.owner = None
        self.owner_result = None
        self.labels = []
        self.firewall_commands = []

    def given_parts(self):
        given = {}
        for part in ORDER['present']:
            if self.module.params.get(part) is not None:
                try:
                    given[part] = parsed_options(part, self.module.params[part])
                except KindError as error:
                    self.fail(part, error)
        return given

    def steps(self, given):
        """(label, part, options) in the order they run."""
        if self.owner is None:
            return [(part, part, part_params(part, given[part], self.state))
                    for part in ORDER[self.state] if part in given]
        parts = self.owner.converge(given)
        # Once nothing is desired, everything goes inside out, as with state=absent.
        order = ORDER['absent' if self.owner.last_gone else self.state]
        steps = []
        for part in order:
            if part == 'nat_rule':
                # A backend that is no longer used is emptied before the one asked for is
                # written: its purge must not take the new backend's FORWARD companions.
                for backend in self.owner.cleanup_backends:
                    cleanup = {'backend': backend, 'rules': [], 'purge': True, 'state': 'present'}
                    steps.append(('nat_rule_cleanup', 'nat_rule', cleanup))
            if part in parts:
                steps.append((part, part, part_params(part, parts[part], 'present')))
        return steps

    def start_ownership(self):
        options = self.module.params.get('ownership')
        if not options:
            return
        path = ownership.record_path(options['record_dir'])
        try:
            self.context.lock()
            record = ownership.read_record(path)
        except KindError as error:
            self.module.fail_json(msg=error.msg)
        except ValueError as exc:
            self.module.fail_json(msg='ownership: %s; nothing was changed' % exc)
        self.owner = ownership.Convergence(
            record, self.state, options.get('adopt'), path, check_mode=self.module.check_mode,
            read_addresses=lambda namespace, ifname: ownership.namespace_addresses(namespace).get(ifname, set()),
            host_addresses=lambda: ownership.namespace_addresses(None))

    def runner(self, namespace=None):
        return NetnsRunner(self.module, namespace)

    def run(self):
        given = self.given_parts()
        self.start_ownership()
        try:
            steps = self.steps(given)
        except ownership.OwnershipError as exc:
            self.module.fail_json(msg='ownership: %s' % exc, errors=exc.errors)
        for warning in self.owner.warnings if self.owner is not None else []:
            self.module.warn(warning)
        firewall_before = None
        if self.owner is not None and not self.owner.last_gone and not self.module.check_mode \
                and self.owner.record['firewall_before'] is None:
            firewall_before = ownership.read_firewall(NetnsRunner(self.module))
        self.labels = [label for label, dummy_part, dummy_params in steps]
        checked = []
        for label, part, params in steps:
            try:
                checked.append((label, part, check_options(part, params)))
            except KindError as error:
                self.fail(part, error)  # before any part ran: nothing to undo
        for label, part, params in checked:
            try:
                if self.module.check_mode and self.pending:
                    params, left_out = without_pending(part, params, self.pending)
                    if left_out:
                        self.left_out[label] = len(left_out)
                        self.pending_lines[label] = [describe_pending(part, item, params or {})
                                                     for item in left_out]
                    if params is None:
                        continue
                self.results[label] = run_part(self.context, part, params)
                if label == 'nat_rule_cleanup' and not self.module.check_mode:
                    # The backend left behind is as the first run found it, so the new
                    # one starts where a fresh apply would (no policy or table of ours left).
                    self.firewall_commands.extend(ownership.restore_firewall(
                        NetnsRunner(self.module), self.owner.record['firewall_before']))
            except KindError as error:
                self.fail(part, error)
            if part == 'netns' and self.module.check_mode:
                self.pending = set(self.results[part].get('created', []))
        # Every part succeeded: what they created stays.
        self.context.rollback.discard()
        if self.owner is not None:
            self.finish_ownership(firewall_before)
        return self.result()

    def finish_ownership(self, firewall_before):
        """Write the record of what this run leaves (or remove it with the last namespace), and
        put back what the first run found once nothing is desired any more."""
        owner = self.owner
        used = (self.results.get('nat_rule') or {}).get('backend') or None
        commands = self.firewall_commands
        if owner.address_removals:
            commands.extend(ownership.remove_addresses(self.runner, owner.address_removals, self.module.check_mode))
        if owner.last_gone:
            commands.extend(ownership.restore_firewall(NetnsRunner(self.module), owner.record['firewall_before'],
                                                       check_mode=self.module.check_mode))
            if not self.module.check_mode:
                ownership.remove_record(owner.path)
            record = None
        else:
            record = None
            if not self.module.check_mode:
                record = owner.next_record(used, firewall_before)
                ownership.write_record(owner.path, record)
        self.owner_result = dict(
            record=owner.path, last=owner.last_gone, adopted=sorted(
                name for name, entry in ((record or {}).get('namespaces') or {}).items() if entry['adopted']),
            cleanup_backends=list(owner.cleanup_backends),
            persisted=bool(self.module.params['ownership'].get('persist_unit'))
            and os.path.exists(self.module.params['ownership']['persist_unit']),
            commands=[format_command(argv) for argv in commands])

    def fail(self, part, error):
        fields = dict(error.fields)
        undo_errors = self.context.rollback.run()
        msg = '%s: %s' % (part, error.msg)
        if undo_errors:
            msg += '; rollback of the earlier parts incomplete: %s' % '; '.join(undo_errors)
        elif self.results and not self.module.check_mode:
            msg += '; what the earlier parts (%s) had created was removed' % ', '.join(self.results)
        fields.pop('changed', None)
        self.module.fail_json(msg=msg, failed_part=part, part_result=fields, **self.partial())

    def partial(self):
        """The results of the parts that ran before the failure, as a success reports them."""
        partial = {}
        for part, part_result in self.results.items():
            part_result = dict(part_result)
            part_result.pop('diff', None)
            partial[part] = self.trimmed(part, part_result)
        return partial

    def trimmed(self, part, part_result):
        """With report=changed, only the objects that changed (or would) are listed: at a
        few hundred objects the full lists are most of a large result, and Ansible pays
        for every byte of it on the controller."""
        key = OBJECT_LISTS.get(part)
        if self.module.params['report'] == 'full' or key is None or key not in part_result:
            return part_result
        objects = part_result[key]
        part_result[key] = [entry for entry in objects if entry.get('changed')]
        part_result['unchanged'] = len(objects) - len(part_result[key])
        return part_result

    def result(self):
        order = self.labels or list(self.results) + [label for label in self.pending_lines if label not in self.results]
        changed_parts = [label for label in order
                         if (self.results.get(label) or {}).get('changed') or label in self.pending_lines]
        result = dict(
            changed=bool(changed_parts),
            parts=list(self.results),
            changed_parts=changed_parts,
            commands=[command for r in self.results.values() for command in r.get('commands', [])],
        )
        diffs = []
        for part, part_result in self.results.items():
            diff = part_result.pop('diff', None)
            diffs.extend(diff if isinstance(diff, list) else [diff] if diff else [])
            result[part] = self.trimmed(part, part_result)
        for part, lines in self.pending_lines.items():
            diffs.append({'before_header': '%s (in namespaces to be created)' % part, 'before': '',
                          'after_header': '%s (in namespaces to be created)' % part, 'after': '\n'.join(lines) + '\n'})
            result.setdefault(part, {})['pending'] = lines
        if self.owner_result is not None:
            result['ownership'] = self.owner_result
            result['commands'].extend(self.owner_result['commands'])
            if self.owner_result['commands']:
                result['changed'] = True
                diffs.append({'before_header': 'host firewall', 'after_header': 'host firewall',
                              'before': '', 'after': '\n'.join(self.owner_result['commands']) + '\n'})
        if self.module._diff:
            result['diff'] = diffs
        if self.module.check_mode:
            result['pending_namespaces'] = sorted(self.pending)
            result['left_out'] = self.left_out
        return result
