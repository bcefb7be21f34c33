# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The nftables backend of nat_rule: one table of our own, changed by one ``nft -f -``
batch (atomic) per call and namespace.

The table is ``inet linuxnet_netns``: family inet serves IPv4 and IPv6 with one set
of chains (NAT in inet chains needs Linux >= 5.2). Its name is deliberately not
``nat`` or ``filter``: iptables-nft owns ``ip nat``/``ip filter`` and breaks on
chains it did not create there. Chains and priorities:

* prerouting: nat, hook prerouting, priority -100 (dstnat, as iptables' nat)
* output: nat, hook output, priority -100 (host-originated access to DNATs)
* postrouting: nat, hook postrouting, priority 100 (srcnat)
* forward: filter, hook forward, priority 0; its policy is ``forward_policy``

An accept in this table does not override a drop elsewhere (every base chain on
the forward hook must accept a packet). The module therefore also writes the
FORWARD accepts into iptables when the namespace's iptables FORWARD chain can drop
(see nat_rule's documentation); that part uses nat_iptables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.linuxnet.netns.plugins.module_utils.nat_iptables import Transaction
from ansible_collections.linuxnet.netns.plugins.module_utils.nat_model import NFT_FAMILY, NFT_TABLE, Entry
from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import CommandFailed

TABLE_REF = '%s %s' % (NFT_FAMILY, NFT_TABLE)
# chain name -> (type, hook, priority)
CHAINS = (
    ('prerouting', 'nat', 'prerouting', -100),
    ('output', 'nat', 'output', -100),
    ('postrouting', 'nat', 'postrouting', 100),
    ('forward', 'filter', 'forward', 0),
)

_CHAIN_RE = re.compile(r'^\s*chain\s+(\S+)\s*\{')
_SET_RE = re.compile(r'^\s*set\s+(\S+)\s*\{')
# The affinity sets our DNAT lines use: lnt_aff_<family>_<timeout>_<digest> (nat_model._affinity).
_AFFINITY_SET_RE = re.compile(r'@(lnt_aff_([46])_([0-9]+)_[0-9a-f]+)\b')
_POLICY_RE = re.compile(r'\bpolicy\s+(\w+)\s*;')
_HANDLE_RE = re.compile(r'^(.*?)\s*#\s*handle\s+(\d+)\s*$')
_COMMENT_RE = re.compile(r'\bcomment\s+"((?:[^"\\]|\\.)*)"')


class NftTable(object):
    """Our table as listed: whether it exists, its chains' policies, its rules."""

    def __init__(self, exists=False, policies=None, entries=None, sets=None):
        self.exists = exists
        self.policies = policies or {}
        self.entries = entries or []
        self.sets = sets or []

    def policy(self, chain='forward'):
        return self.policies.get(chain, 'accept')


def list_chains(runner):
    """The namespace's nft chains (``nft -j list chains``), or None when nft is not installed or
    cannot talk to the kernel here. This one call also tells whether nft is usable: ``nft list
    tables`` would cost ~0.1 s more where iptables-nft holds thousands of rules (it loads them)."""
    if runner.which('nft') is None:
        return None
    rc, out = runner.run(['nft', '-j', 'list', 'chains'], check=False)[:2]
    if rc != 0:
        return None
    try:
        return [item['chain'] for item in json.loads(out).get('nftables', []) if 'chain' in item]
    except (ValueError, AttributeError, TypeError):
        return []


def parse_listing(text):
    """``nft -a list table inet linuxnet_netns`` -> NftTable."""
    table = NftTable(exists=True)
    chain = None
    for raw in text.splitlines():
        line = raw.strip()
        match = _CHAIN_RE.match(raw)
        if match:
            chain = match.group(1)
            continue
        match = _SET_RE.match(raw)
        if match:
            table.sets.append(match.group(1))
            continue
        if chain is None or not line or line in ('}',):
            if line == '}':
                chain = None
            continue
        if line.startswith('type '):
            policy = _POLICY_RE.search(line)
            table.policies[chain] = policy.group(1) if policy else 'accept'
            continue
        match = _HANDLE_RE.match(line)
        if not match:
            continue
        text_part, handle = match.group(1), int(match.group(2))
        comment = _COMMENT_RE.search(text_part)
        table.entries.append(Entry(NFT_FAMILY, NFT_TABLE, chain, comment.group(1) if comment else None,
                                   text_part, handle=handle, role=chain))
    return table


def read_table(runner):
    rc, out, err = runner.run(['nft', '-a', 'list', 'table', NFT_FAMILY, NFT_TABLE], check=False)
    if rc != 0:
        if 'No such file or directory' in err or 'does not exist' in err:
            return NftTable(exists=False)
        raise CommandFailed(['nft', '-a', 'list', 'table', NFT_FAMILY, NFT_TABLE], rc, out, err)
    return parse_listing(out)


def foreign_forward_drops(chains):
    """Forward-hook base chains (of ``list_chains``) with a drop policy in tables that are
    neither ours nor iptables-nft's (those are handled through iptables): 'family table chain'."""
    found = []
    for chain in chains:
        if chain.get('hook') != 'forward' or chain.get('policy') != 'drop':
            continue
        family, table = chain.get('family'), chain.get('table')
        if (family, table) == (NFT_FAMILY, NFT_TABLE):
            continue
        if family in ('ip', 'ip6') and table == 'filter' and chain.get('name') == 'FORWARD':
            continue
        found.append('%s %s %s' % (family, table, chain.get('name')))
    return found


def _chain_line(name, kind, hook, priority, policy='accept'):
    return 'add chain %s %s { type %s hook %s priority %d; policy %s; }' % (
        TABLE_REF, name, kind, hook, priority, policy)


def display(chain, text):
    return '%s %s: %s' % (TABLE_REF, chain, text)


def current_lines(state):
    return [display(entry.chain, entry.text) for entry in state.entries]


def plan_table(state, keep, remove, add, policy=None):
    """The batch (a list with zero or one Transaction) turning ``state`` into keep + add.

    ``policy`` ('accept'/'drop'/None) sets the forward chain's policy. The table is
    created when something needs it and deleted when nothing of ours is left (no
    rules and an accept policy), so ``absent`` leaves no trace.
    """
    final_policy = (policy or state.policy()).lower()
    needed = bool(keep or add) or final_policy != 'accept'
    lines, removed, added, policies = [], [], [], []
    if policy and state.policy() != final_policy and (state.exists or needed):
        policies.append(('%s forward: policy %s' % (TABLE_REF, state.policy()),
                         '%s forward: policy %s' % (TABLE_REF, final_policy)))
    if not needed:
        if state.exists:
            lines.append('delete table %s' % TABLE_REF)
            removed.extend(display(entry.chain, entry.text) for entry in remove + keep)
    else:
        if not state.exists:
            lines.append('add table %s' % TABLE_REF)
        for name, kind, hook, priority in CHAINS:
            wanted_policy = final_policy if name == 'forward' else 'accept'
            if name not in state.policies or (name == 'forward' and state.policy() != final_policy):
                lines.append(_chain_line(name, kind, hook, priority, wanted_policy))
        wanted_sets = affinity_sets(keep + add)
        for name in sorted(set(wanted_sets) - set(state.sets)):
            lines.append(_set_line(name, *wanted_sets[name]))
        for entry in remove:
            lines.append('delete rule %s %s handle %d' % (TABLE_REF, entry.chain, entry.handle))
            removed.append(display(entry.chain, entry.text))
        for name in sorted(set(state.sets) - set(wanted_sets)):
            if name.startswith('lnt_aff_'):
                lines.append('delete set %s %s' % (TABLE_REF, name))
        for entry in add:
            before = getattr(entry, 'before', None)
            if before is not None and before.handle is not None:
                # in front of the kept rule the desired order puts after it
                lines.append('insert rule %s %s position %d %s' % (TABLE_REF, entry.chain, before.handle, entry.text))
            else:
                lines.append('add rule %s %s %s' % (TABLE_REF, entry.chain, entry.text))
            added.append(display(entry.chain, entry.text))
    if not lines:
        return []
    commands = ['nft %s' % _quote(line) for line in lines]
    return [Transaction(TABLE_REF, ['nft', '-f', '-'], lines, commands, removed, added, policies)]


def affinity_sets(entries):
    """{set name: (family, timeout)} of the affinity sets ``entries`` refer to."""
    found = {}
    for entry in entries:
        for match in _AFFINITY_SET_RE.finditer(entry.text):
            found[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return found


def _set_line(name, family, timeout):
    # dynamic: the rules add the clients; timeout: a client unseen that long is forgotten
    return 'add set %s %s { type %s; flags dynamic,timeout; timeout %ds; }' % (
        TABLE_REF, name, 'ipv4_addr' if family == 4 else 'ipv6_addr', timeout)


def _quote(line):
    return "'%s'" % line.replace("'", "'\"'\"'")
