# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which conntrack entries a change of DNAT rules made stale, on either backend.

A flow keeps the translation its first packet got: after a DNAT target changes (an
endpoint leaves, the rule is removed), established flows would keep going to the old
target. The plan names them here (``conntrack_cleanups``), and ``stale_entries`` picks
the entries of a namespace's conntrack table that match.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
from collections import namedtuple

from ansible_collections.linuxnet.netns.plugins.module_utils.nat_model import Target, parse_dnat_id

_IPT_DNAT_RE = re.compile(r'--to-destination\s+(\S+)')
_NFT_DNAT_RE = re.compile(r'\bdnat\s+(?:ip6?\s+)?to\s+(\S+)')
# an element of one of our DNAT maps: ``<key> comment "<tag>" : <address> [. <port>]``
_MAP_TARGET_RE = re.compile(r'"\s+:\s+([0-9a-fA-F.:]+?)(?:\s+\.\s+(\d+))?\s*$')


def _parse_endpoint(text):
    """'192.168.45.3:80', '[fd45::3]:80', '192.168.45.3', 'fd45::3' -> Target."""
    text = text.strip().strip('"')
    ports = None
    if text.startswith('['):
        host, dummy, rest = text[1:].partition(']')
        if rest.startswith(':'):
            ports = rest[1:]
    elif text.count(':') == 1:
        host, dummy, ports = text.partition(':')
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ports:
        lo, dummy, hi = ports.replace(':', '-').partition('-')
        try:
            ports = (int(lo), int(hi or lo))
        except ValueError:
            return None
    return Target(address, ports or None)


def dnat_target(text):
    """The target of a listed DNAT line (iptables-save, nft rule or element of an nft map), or None."""
    match = _IPT_DNAT_RE.search(text) or _NFT_DNAT_RE.search(text)
    if match:
        return _parse_endpoint(match.group(1))
    match = _MAP_TARGET_RE.search(text)
    if not match:
        return None
    address = match.group(1) if match.group(2) is None or ':' not in match.group(1) else '[%s]' % match.group(1)
    return _parse_endpoint(address + (':' + match.group(2) if match.group(2) else ''))


Cleanup = namedtuple('Cleanup', 'family protocol destination ports stale_target keep_targets')


def conntrack_cleanups(rules, removed, added, namespace, kept=()):
    """What conntrack entries a change made stale, as Cleanup records.

    * a DNAT rule that no longer sends flows to a target (an endpoint left, the target
      changed, the rule was removed): entries to the published address/port whose reply
      comes from that old target (``stale_target``);
    * a UDP DNAT rule that is new or lost a target: every UDP entry to the published port
      that does not reply from one of its targets (``keep_targets``); without this a client
      that sent datagrams before the rule existed keeps its untranslated flow.
    ``removed``/``added`` are the entries the plan removes/adds in ``namespace``.
    """
    old_targets = {}
    for entry in removed:
        if entry.role == 'prerouting' and entry.rule_id:
            target = dnat_target(entry.text)
            if target is not None:
                old_targets.setdefault(entry.rule_id, set()).add(target)
    kept_ids = set(entry.rule_id for entry in kept if entry.rule_id)
    added_ids = set(entry.rule_id for entry in added if entry.rule_id)
    wanted = {}
    for rule in rules:
        if rule.namespace == namespace and rule.kind == 'dnat' and rule.present:
            wanted[rule.rule_ids()[0]] = set(rule.endpoints)
    cleanups = []
    for rid in sorted(set(old_targets) | set(wanted)):
        key = parse_dnat_id(rid)
        if key is None:
            continue
        old, new = old_targets.get(rid, set()), wanted.get(rid, set())
        stale = sorted(old - new, key=str)
        for target in stale:
            cleanups.append(Cleanup(key.family, key.protocol, key.destination, key.ports, target, None))
        newly_published = not old and rid in added_ids and rid not in kept_ids
        if key.protocol == 'udp' and new and (stale or newly_published):
            cleanups.append(Cleanup(key.family, key.protocol, key.destination, key.ports, None,
                                    tuple(sorted(new, key=str))))
    return cleanups


def parse_flows(entries):
    """(entry, protocol, original dst, original dport, reply src, reply sport) of each
    conntrack entry (conntrack.list_entries format) whose addresses parse: read once for
    all the cleanups of a call (a teardown of N DNATs has N cleanups)."""
    flows = []
    for entry in entries:
        orig = entry.get('original') or {}
        reply = entry.get('reply') or {}
        try:
            flows.append((entry, entry.get('protocol'), ipaddress.ip_address(orig.get('dst')), int(orig.get('dport')),
                          ipaddress.ip_address(reply.get('src')), reply.get('sport')))
        except (TypeError, ValueError):
            continue
    return flows


def stale_entries(cleanup, flows, local_addresses):
    """The conntrack entries of ``flows`` (parse_flows) a Cleanup deletes."""
    result = []
    for entry, protocol, dst, dport, reply_src, reply_sport in flows:
        if protocol != cleanup.protocol:
            continue
        if dst.version != cleanup.family or not cleanup.ports[0] <= dport <= cleanup.ports[1]:
            continue
        if cleanup.destination is not None:
            if dst != cleanup.destination:
                continue
        elif dst not in local_addresses:
            continue  # a flow through us to some other host's port, not to ours
        if cleanup.stale_target is not None:
            if reply_src != cleanup.stale_target.address:
                continue
            if cleanup.stale_target.ports and not _in_ports(reply_sport, cleanup.stale_target.ports):
                continue
            result.append(entry)
        elif cleanup.keep_targets:
            if any(reply_src == target.address and (target.ports is None or _in_ports(reply_sport, target.ports))
                   for target in cleanup.keep_targets):
                continue
            result.append(entry)
    return result


def _in_ports(value, ports):
    try:
        return ports[0] <= int(value) <= ports[1]
    except (TypeError, ValueError):
        return False
