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


def execute(params, context):
    """The netns_persist module's call (plugins/module_utils/kind.py): the result, or KindError."""
    try:
        return write_files(params, context)
    except Exception as exc:
        raise failure(exc)


def write_files(params, context):
    validate(params)
    result = {'changed': False, 'files': [], 'commands': []}
    before, after = {}, {}
    present = params['state'] == 'present'
    wanted = desired_files(params, NetnsRunner(context.module)) if present else {}
    candidates = written_here(params['directory']) + [unit_path(params)]
    stale = [path for path in candidates if path not in wanted and os.path.exists(path) and ours(path)]
    for path, (text, mode) in sorted(wanted.items()):
        current = read_text(path)
        if current == text:
            continue
        if not ours(path):
            raise ValidationError('directory', path, 'exists and was not written by netns_persist; '
                                                     'remove it or choose another directory')
        before[path], after[path] = current or '', text
        result['files'].append(path)
        if not context.check_mode:
            write_atomically(path, text, mode)
    for path in stale:
        before[path], after[path] = read_text(path) or '', ''
        result['files'].append(path)
        if not context.check_mode:
            os.unlink(path)
    link = wants_link(params)
    if present and not os.path.islink(link):
        result['files'].append(link)
        after[link] = '-> %s' % unit_path(params)
        if not context.check_mode:
            if not os.path.isdir(os.path.dirname(link)):
                os.makedirs(os.path.dirname(link), 0o755)
            os.symlink(unit_path(params), link)
    elif not present and os.path.islink(link) and os.readlink(link) == unit_path(params):
        result['files'].append(link)
        before[link] = '-> %s' % unit_path(params)
        if not context.check_mode:
            os.unlink(link)
    if not present and not context.check_mode and os.path.isdir(params['directory']) \
            and not os.listdir(params['directory']):
        os.rmdir(params['directory'])
    result['changed'] = bool(result['files'])
    if result['changed'] and params['unit_directory'] == '/etc/systemd/system' \
            and os.path.isdir('/run/systemd/system'):
        result['commands'].append('systemctl daemon-reload')
        if not context.check_mode:
            context.module.run_command(['systemctl', 'daemon-reload'], check_rc=True)
    if present:
        result['script'] = wanted[os.path.join(params['directory'], 'restore.sh')][0]
    if context.diff:
        result['diff'] = [{'before_header': path, 'after_header': path, 'before': before.get(path, ''),
                           'after': after.get(path, '')} for path in result['files']]
    return result
