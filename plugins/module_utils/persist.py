# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What brings a topology back at boot without Ansible (the netns_persist module).

Namespaces, veth pairs, addresses, routes and firewall rules live in the kernel and vanish at
reboot. The module writes, from the topology it is given and from the rules of ours that are
live now (whatever backend holds them), a directory of plain files and a systemd unit:

* ``restore.sh``: ``ip`` commands that create what is missing and set what is there (so a
  second run changes nothing), ``sysctl`` for forwarding, then the firewall files;
* ``iptables-v4.rules`` / ``iptables-v6.rules``: our chains for ``iptables-restore --noflush``
  (declaring a chain there empties it, so the file can be loaded again), plus the jumps, which
  the script first deletes so that they are never doubled;
* ``nftables.rules``: our table, created or emptied and filled again in one ``nft -f``;
* ``rekey.py`` and ``ownership.json``/``forwarding.json``: the role's records without what a
  boot changes (netns cookies, ifindexes); the script writes them back under the new keys, so
  that the role's next run recognises what the boot rebuilt as its own and reports no change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables as ipt
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_nftables as nft
from ansible_collections.linuxnet.netns.plugins.module_utils.nat_model import JUMP_TAG

UNIT_NAME = 'linuxnet-netns.service'
MARKER = 'Written by linuxnet.netns.netns_persist'
_SET_ELEMENTS_RE = re.compile(r'\n\s*elements = \{[^}]*\}', re.S)
# kind, name and elements (None: empty) of each set or map of a listing
_SET_BLOCK_RE = re.compile(r'^\s*(set|map) (\S+) \{[^}]*?(?:elements = \{([^}]*)\}[^}]*)?\}', re.M)


def _quote(word):
    """One shell word, single-quoted unless it is plainly safe."""
    text = str(word)
    if re.match(r'^[A-Za-z0-9_./:@%+=-]+$', text):
        return text
    return "'%s'" % text.replace("'", "'\"'\"'")


def _line(*words):
    return ' '.join(_quote(word) for word in words)


def topology_lines(netns, pairs, routes):
    """The ip commands of restore.sh: each creates what is missing or sets what is there."""
    lines = []
    for item in netns:
        name = item['name']
        lines.append('[ -e %s ] || %s' % (_quote('/run/netns/' + name), _line('ip', 'netns', 'add', name)))
        lines.append(_line('ip', '-n', name, 'link', 'set', 'lo', 'up'))
    for pair in pairs:
        name, peer, peer_ns = pair['name'], pair['peer'], pair.get('peer_namespace')
        create = ['ip', 'link', 'add', name, 'type', 'veth', 'peer', 'name', peer]
        if peer_ns:
            create += ['netns', peer_ns]
        lines.append('ip link show dev %s >/dev/null 2>&1 || %s' % (_quote(name), _line(*create)))
        for address in pair.get('addresses') or []:
            lines.append(_line('ip', 'addr', 'replace', address, 'dev', name))
        lines.append(_line('ip', 'link', 'set', name, 'up'))
        inner = ['ip', '-n', peer_ns] if peer_ns else ['ip']
        for address in pair.get('peer_addresses') or []:
            lines.append(_line(*(inner + ['addr', 'replace', address, 'dev', peer])))
        lines.append(_line(*(inner + ['link', 'set', peer, 'up'])))
    for route in routes:
        where = ['ip', '-n', route['namespace']] if route.get('namespace') else ['ip']
        words = where + (['-6'] if route.get('family') == 'ipv6' else []) + ['route', 'replace', route['dest']]
        if route.get('gateway'):
            words += ['via', route['gateway']]
        if route.get('device'):
            words += ['dev', route['device']]
        for key in ('metric', 'table'):
            if route.get(key) is not None:
                words += [key, route[key]]
        lines.append(_line(*(words + ['proto', 'static'])))  # as linuxnet.netns.netns_route sets it
    return lines


def iptables_files(views):
    """{file name: (variant, restore text)} and the jump lines to delete first, from the live
    views: our chains with their lines (the administrator's chain LNT-USER with its rules too),
    the jumps to them and a FORWARD policy that is not ACCEPT, in the order a fresh apply
    writes them, so that the rebuilt tables list as the role left them."""
    files, jumps = {}, []
    for (family, variant), view in sorted(views.items(), key=ipt.view_order):
        ours = view.our_chains()
        if not ours:
            continue
        text = []
        for table in ipt.TABLES:
            chains = [chain for chain, where in sorted(ours.items()) if where == table]
            if table == 'filter' and ipt.ADMIN_CHAIN in view.table(table)['chains']:
                chains.append(ipt.ADMIN_CHAIN)
            if not chains:
                continue
            body = [':%s - [0:0]' % chain for chain in chains]
            if table == 'filter' and view.policy() != 'ACCEPT':
                body.insert(0, ':FORWARD %s [0:0]' % view.policy())
            body += ['-A %s %s' % (chain, spec) for chain, spec in view.table(table)['rules'] if chain in chains]
            builtin_jumps = [(chain, spec) for chain, spec in view.table(table)['rules']
                             if chain not in chains and (JUMP_TAG in spec or ipt.ADMIN_TAG in spec)]
            jumps.extend((family, variant, table, chain, spec) for chain, spec in builtin_jumps)
            # FORWARD's jumps first in that chain, in the order found; the nat ones appended
            forward = [spec for chain, spec in builtin_jumps if chain == 'FORWARD']
            body += ['-I FORWARD %d %s' % (index + 1, spec) for index, spec in enumerate(forward)]
            body += ['-A %s %s' % (chain, spec) for chain, spec in sorted(builtin_jumps, key=_jump_target)
                     if chain != 'FORWARD']
            text += ['*%s' % table] + body + ['COMMIT']
        files['iptables-v%d.rules' % family] = (variant, '\n'.join(text) + '\n')
    return files, jumps


def _jump_target(item):
    return item[1].split(' -j ')[-1]


def nft_file(listing):
    """Our table as an nft script that empties it (or creates it) and fills it again in one
    transaction, so that loading it twice gives the same table, in the same place among the
    tables. ``flush table`` empties the chains, not the sets: each set or map that holds
    elements of ours (published ports, accepts) is flushed and filled again after the
    declarations; the clients an affinity set has learnt are left out (their timeouts ran out)."""
    table = '%s %s' % (nft.NFT_FAMILY, nft.NFT_TABLE)
    fills = []
    for kind, name, elements in _SET_BLOCK_RE.findall(listing):
        if elements and not name.startswith('lnt_aff_'):
            fills.append('flush %s %s %s' % (kind, table, name))
            fills.append('add element %s %s { %s }' % (table, name, ' '.join(elements.split())))
    body = _SET_ELEMENTS_RE.sub('', listing).strip()
    return 'table %s {}\nflush table %s\n%s\n%s' % (table, table, body, ''.join(line + '\n' for line in fills))


def _iptables(family, variant):
    """The iptables command of one flavour: iptables-nft, ip6tables-legacy, iptables."""
    base = 'iptables' if family == 4 else 'ip6tables'
    return '%s-%s' % (base, variant) if variant else base


def firewall_lines(directory, files, jumps, has_nft):
    """Our nft table first, then the iptables files (the order the nat_rule module writes them)."""
    lines = []
    if has_nft:
        lines.append('nft -f %s' % _quote(os.path.join(directory, 'nftables.rules')))
    if jumps:
        lines.append('# the jumps to our chains go first, so that loading the files never doubles them')
    for family, variant, table, chain, spec in jumps:
        lines.append('%s -w -t %s -D %s %s 2>/dev/null || true' % (_iptables(family, variant), table, chain, spec))
    for name, (variant, dummy) in sorted(files.items()):
        family = 4 if name.endswith('v4.rules') else 6
        lines.append('%s -w --noflush < %s' % (ipt.tool(family, variant, 'restore'),
                                               _quote(os.path.join(directory, name))))
    return lines


def script(directory, netns, pairs, routes, forwarding, files, jumps, has_nft, record_dir):
    lines = ['#!/bin/sh', '# %s: what the netns_nat role built, brought back at boot.' % MARKER,
             '# Each command creates what is missing or sets what is there: running it again changes nothing.',
             'set -eu', 'export LC_ALL=C']
    lines += topology_lines(netns, pairs, routes)
    if forwarding:
        lines.append('sysctl -q -w net.ipv4.ip_forward=1')
    lines += firewall_lines(directory, files, jumps, has_nft)
    if record_dir:
        lines.append('# the role\'s records under the keys this boot gave the namespaces and links')
        lines.append(_line('python3', os.path.join(directory, 'rekey.py'), directory, record_dir))
    return '\n'.join(lines) + '\n'


def unit(directory):
    return '\n'.join([
        '# %s' % MARKER,
        '[Unit]',
        'Description=linuxnet.netns: network namespaces, veth pairs and NAT rules of the netns_nat role',
        'DefaultDependencies=no',
        'After=local-fs.target systemd-modules-load.service',
        'Before=network-pre.target shutdown.target',
        'Wants=network-pre.target',
        'Conflicts=shutdown.target',
        '',
        '[Service]',
        'Type=oneshot',
        'RemainAfterExit=yes',
        'ExecStart=/bin/sh %s' % os.path.join(directory, 'restore.sh'),
        '',
        '[Install]',
        'WantedBy=multi-user.target',
        '',
    ])


def record_template(record):
    """The ownership record without what a boot changes (filled in again by rekey.py)."""
    if not record:
        return None
    data = json.loads(json.dumps(record))
    for entry in (data.get('namespaces') or {}).values():
        entry['key'] = None
    for entry in (data.get('pairs') or {}).values():
        entry['ifindex'] = None
    return data


REKEY = r'''#!/usr/bin/python3
# %(marker)s: writes the netns_nat role's records back under the keys of this boot.
import ctypes, json, os, socket, struct, sys

SO_NETNS_COOKIE = 71
libc = ctypes.CDLL(None, use_errno=True)


def key():
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        return 'cookie:%%d' %% struct.unpack('=Q', probe.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
    except OSError:
        return 'inode:%%d' %% os.stat('/proc/thread-self/ns/net').st_ino
    finally:
        probe.close()


def key_of(name):
    own = os.open('/proc/thread-self/ns/net', os.O_RDONLY)
    target = os.open('/run/netns/' + name, os.O_RDONLY)
    try:
        if libc.setns(target, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), 'setns ' + name)
        try:
            return key()
        finally:
            libc.setns(own, 0x40000000)
    finally:
        os.close(target)
        os.close(own)


def main(directory, record_dir):
    os.makedirs(record_dir, exist_ok=True)
    host = key().replace(':', '-')
    path = os.path.join(directory, 'ownership.json')
    if os.path.exists(path):
        with open(path) as handle:
            record = json.load(handle)
        for name, entry in record.get('namespaces', {}).items():
            entry['key'] = key_of(name)
        for name, entry in record.get('pairs', {}).items():
            entry['ifindex'] = socket.if_nametoindex(name)
        write(os.path.join(record_dir, 'owned-%%s.json' %% host), record)
    path = os.path.join(directory, 'forwarding.json')
    if os.path.exists(path):
        with open(path) as handle:
            write(os.path.join(record_dir, 'forwarding-%%s.json' %% host), json.load(handle))


def write(path, data):
    with open(path + '.tmp', 'w') as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.rename(path + '.tmp', path)


main(sys.argv[1], sys.argv[2])
''' % {'marker': MARKER}
