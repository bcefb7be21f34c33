# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The netns_persist module: validate, render the boot files from the topology given and the
rules live now, and write (or remove) only what differs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile

from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables as ipt
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_nftables as nft
from ansible_collections.linuxnet.netns.plugins.module_utils import persist
from ansible_collections.linuxnet.netns.plugins.module_utils.common import failure
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import namespace_key
from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import NetnsRunner
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import (
    ValidationError,
    check_ifname,
    check_interface_address,
    check_ip,
    check_netns_name,
    check_network,
)


def validate(params):
    """Every name and address before anything is read or written (they end up in a script)."""
    check_topology(params)
    return params


def check_topology(params):
    for index, item in enumerate(params['namespaces']):
        check_netns_name('namespaces[%d].name' % index, item.get('name'))
    for index, pair in enumerate(params['pairs']):
        field = 'pairs[%d].' % index
        check_ifname(field + 'name', pair.get('name'))
        check_ifname(field + 'peer', pair.get('peer'))
        if pair.get('peer_namespace'):
            check_netns_name(field + 'peer_namespace', pair['peer_namespace'])
        for key in ('addresses', 'peer_addresses'):
            for number, address in enumerate(pair.get(key) or []):
                check_interface_address('%s%s[%d]' % (field, key, number), address)
    for index, route in enumerate(params['routes']):
        field = 'routes[%d].' % index
        if route.get('namespace'):
            check_netns_name(field + 'namespace', route['namespace'])
        if route.get('dest') != 'default':
            check_network(field + 'dest', route.get('dest'), strict=True)
        if route.get('gateway'):
            check_ip(field + 'gateway', route['gateway'])
        if route.get('device'):
            check_ifname(field + 'device', route['device'])
        if route.get('family') not in (None, 'ipv4', 'ipv6'):
            raise ValidationError(field + 'family', route.get('family'), 'must be ipv4 or ipv6')


def live_rules(runner):
    """(iptables files, jumps, nft file or None) of the rules of ours that are live now."""
    files, jumps = persist.iptables_files(ipt.read_views(runner))
    nft_text = None
    if nft.list_chains(runner) is not None and nft.read_table(runner).exists:
        listing = runner.run(['nft', 'list', 'table', nft.NFT_FAMILY, nft.NFT_TABLE])[1]
        nft_text = persist.nft_file(listing)
    return files, jumps, nft_text


def saved_records(record_dir):
    """{file name: content} of the role's records without their boot-dependent keys."""
    if not record_dir:
        return {}
    key = namespace_key(None).replace(':', '-')
    saved = {}
    for source, target, convert in (('owned-%s.json' % key, 'ownership.json', persist.record_template),
                                    ('forwarding-%s.json' % key, 'forwarding.json', lambda data: data)):
        try:
            with open(os.path.join(record_dir, source)) as handle:
                data = json.load(handle)
        except (IOError, OSError, ValueError):
            continue
        saved[target] = json.dumps(convert(data), indent=1, sort_keys=True) + '\n'
    return saved


def desired_files(params, runner):
    """{path: (content, mode)} of everything this module writes for ``present``."""
    directory = params['directory']
    files, jumps, nft_text = live_rules(runner) if params['rules'] else ({}, [], None)
    records = saved_records(params['record_dir'])
    wanted = {}
    for name, (dummy, text) in files.items():
        wanted[os.path.join(directory, name)] = (text, 0o600)
    if nft_text is not None:
        wanted[os.path.join(directory, 'nftables.rules')] = (nft_text, 0o600)
    for name, text in records.items():
        wanted[os.path.join(directory, name)] = (text, 0o600)
    record_dir = params['record_dir'] if records else None
    if record_dir:
        wanted[os.path.join(directory, 'rekey.py')] = (persist.REKEY, 0o700)
    script = persist.script(directory, params['namespaces'], params['pairs'], params['routes'],
                            params['forwarding'], files, jumps, nft_text is not None, record_dir)
    wanted[os.path.join(directory, 'restore.sh')] = (script, 0o700)
    wanted[unit_path(params)] = (persist.unit(directory), 0o644)
    return wanted


def unit_path(params):
    return os.path.join(params['unit_directory'], persist.UNIT_NAME)


def wants_link(params):
    return os.path.join(params['unit_directory'], 'multi-user.target.wants', persist.UNIT_NAME)


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def ours(path):
    """Only files this module wrote are replaced or removed."""
    text = read_text(path)
    return text is None or persist.MARKER in text or path.endswith('.json') or path.endswith('.rules')


def write_atomically(path, text, mode):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path))
    try:
        with os.fdopen(handle, 'w') as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.rename(temporary, path)
    except Exception:
        os.unlink(temporary)
        raise


def written_here(directory):
    """The files of ``directory`` this module may have written earlier."""
    names = ('restore.sh', 'rekey.py', 'nftables.rules', 'iptables-v4.rules', 'iptables-v6.rules',
             'ownership.json', 'forwarding.json')
    return [os.path.join(directory, name) for name in names if os.path.exists(os.path.join(directory, name))]


class Current(object):
    """The files a call wants ({path: (content, mode)}), what each candidate path holds now,
    the ones of ours no longer wanted, and where the boot unit's wants link points."""

    def __init__(self, params, wanted):
        self.wanted = wanted
        candidates = written_here(params['directory']) + [unit_path(params)]
        self.stale = [path for path in candidates if path not in wanted and os.path.exists(path) and ours(path)]
        self.texts = dict((path, read_text(path)) for path in list(wanted) + self.stale)
        link = wants_link(params)
        self.link_target = os.readlink(link) if os.path.islink(link) else None


class Plan(object):
    """The files that move (diff lines per path), the writes, removals and wants link to apply."""

    def __init__(self, params, wanted):
        self.params = params
        self.present = params['state'] == 'present'
        self.wanted = wanted
        self.files, self.writes, self.removals = [], [], []
        self.before, self.after = {}, {}
        self.link = None  # 'create' or 'remove'

    def record(self, path, before, after):
        self.files.append(path)
        self.before[path], self.after[path] = before, after

    @property
    def reload(self):
        """systemd reads units again only when told, and only where it runs."""
        return bool(self.files) and self.params['unit_directory'] == '/etc/systemd/system' \
            and os.path.isdir('/run/systemd/system')


def read(params, context):
    return Current(params, desired_files(params, NetnsRunner(context.module)) if params['state'] == 'present' else {})


def plan(params, current, context):
    changes = Plan(params, current.wanted)
    for path, (text, mode) in sorted(current.wanted.items()):
        if current.texts[path] == text:
            continue
        if not ours(path):
            raise ValidationError('directory', path, 'exists and was not written by netns_persist; '
                                                     'remove it or choose another directory')
        changes.record(path, current.texts[path] or '', text)
        changes.writes.append((path, text, mode))
    for path in current.stale:
        changes.record(path, current.texts[path] or '', '')
        changes.removals.append(path)
    link, target = wants_link(params), '-> %s' % unit_path(params)
    if changes.present and current.link_target is None:
        changes.record(link, '', target)
        changes.link = 'create'
    elif not changes.present and current.link_target == unit_path(params):
        changes.record(link, target, '')
        changes.link = 'remove'
    return changes


def apply(plan, context):
    params = plan.params
    try:
        for path, text, mode in plan.writes:
            write_atomically(path, text, mode)
        for path in plan.removals:
            os.unlink(path)
        link = wants_link(params)
        if plan.link == 'create':
            if not os.path.isdir(os.path.dirname(link)):
                os.makedirs(os.path.dirname(link), 0o755)
            os.symlink(unit_path(params), link)
        elif plan.link == 'remove':
            os.unlink(link)
        if not plan.present and os.path.isdir(params['directory']) and not os.listdir(params['directory']):
            os.rmdir(params['directory'])
        if plan.reload:
            context.module.run_command(['systemctl', 'daemon-reload'], check_rc=True)
    except Exception as exc:
        raise failure(exc)


def result(plan, context):
    outcome = {'changed': bool(plan.files), 'files': plan.files,
               'commands': ['systemctl daemon-reload'] if plan.reload else []}
    if plan.present:
        outcome['script'] = plan.wanted[os.path.join(plan.params['directory'], 'restore.sh')][0]
    if context.diff:
        outcome['diff'] = [{'before_header': path, 'after_header': path, 'before': plan.before[path],
                            'after': plan.after[path]} for path in plan.files]
    return outcome
