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

Lines that differ only in per-flow values (a DNAT's published address and port and its
target, the FORWARD accepts and source NAT of the flows it translated) are not rules but
elements of a set or map shared by every line of the same shape: one rule per shape
(``<matches> <key> @lnt_<chain>_<digest> accept``, ``dnat ip to <key> map @...``) at the
top of its chain. The first packet of a flow then costs one hash lookup per shape, whatever
the number of published ports (a linear rule list costs one comparison per rule). Each
element carries our tag as its comment, so elements are owned, compared and purged like
rules. Lines with a network, a port range or a pick among endpoints stay rules.

An accept in this table does not override a drop elsewhere (every base chain on
the forward hook must accept a packet). The module therefore also writes the
FORWARD accepts into iptables when the namespace's iptables FORWARD chain can drop
(see nat_rule's documentation); that part uses nat_iptables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import json
import re

from ansible_collections.linuxnet.netns.plugins.module_utils.nat_model import (
    Entry,
    LogicalLine,
    Transaction,
    endpoint_text,
    family_name,
    make_tag,
    net_text,
    ordered_lines,
    port_text,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import CommandFailed

NFT_TABLE = 'linuxnet_netns'
NFT_FAMILY = 'inet'
TABLE_REF = '%s %s' % (NFT_FAMILY, NFT_TABLE)
# chain name -> (type, hook, priority)
CHAINS = (
    ('prerouting', 'nat', 'prerouting', -100),
    ('output', 'nat', 'output', -100),
    ('postrouting', 'nat', 'postrouting', 100),
    ('forward', 'filter', 'forward', 0),
)

_CHAIN_RE = re.compile(r'^\s*chain\s+(\S+)\s*\{')
_SET_RE = re.compile(r'^\s*(?:set|map)\s+(\S+)\s*\{')
_ELEMENTS_RE = re.compile(r'^\s*elements\s*=\s*\{(.*)$')
# one element of a listing: text outside quotes up to a comma, quoted comments included
_ELEMENT_RE = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')
# Our sets and maps of collapsed lines: lnt_<chain>_<digest of the shape>; their rules' comment.
_CONTAINER_RE = re.compile(r'^lnt_(prerouting|output|postrouting|forward)_[0-9a-f]{12}$')
CONTAINER_RULE_PREFIX = 'lnt-set '
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
        self.maps = set()  # the names in ``sets`` that are maps
        self.container_rules = {}  # set/map name -> [(chain, handle)] of the rules looking it up
        self.container_order = []  # the set/map names of those rules, in chain order

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
    chain = container = None
    elements = None  # the text of an elements block being read
    for raw in text.splitlines():
        line = raw.strip()
        if elements is not None:
            elements.append(line)
            if line.endswith('}'):
                table.entries.extend(_listed_elements(container, ' '.join(elements)))
                elements = None
            continue
        match = _CHAIN_RE.match(raw)
        if match:
            chain, container = match.group(1), None
            continue
        match = _SET_RE.match(raw)
        if match:
            container = match.group(1)
            table.sets.append(container)
            if line.startswith('map '):
                table.maps.add(container)
            continue
        match = _ELEMENTS_RE.match(raw)
        if match and container is not None:
            elements = [match.group(1)]
            if line.endswith('}'):
                table.entries.extend(_listed_elements(container, elements[0]))
                elements = None
            continue
        if line == '}':
            chain = container = None
            continue
        if chain is None or not line:
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
        tag = comment.group(1) if comment else None
        if tag and tag.startswith(CONTAINER_RULE_PREFIX):
            name = tag[len(CONTAINER_RULE_PREFIX):]
            table.container_rules.setdefault(name, []).append((chain, handle))
            table.container_order.append(name)
            continue
        table.entries.append(Entry(NFT_FAMILY, NFT_TABLE, chain, tag, text_part, handle=handle, role=chain))
    return table


def _listed_elements(container, body):
    """The elements of one of our sets or maps (``elements = { a comment "t" : b, ... }``) as
    entries; a set of someone else's is not ours to compare."""
    match = _CONTAINER_RE.match(container)
    if not match:
        return []
    entries = []
    for text in _ELEMENT_RE.findall(body.rstrip().rstrip('}')):
        text = text.strip()
        if text:
            comment = _COMMENT_RE.search(text)
            entry = Entry(NFT_FAMILY, NFT_TABLE, container, comment.group(1) if comment else None, text,
                          role=match.group(1))
            entry.unordered = True
            entry.slot = (container, element_key(entry))
            entries.append(entry)
    return entries


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
        containers = containers_of(keep + add)
        lines.extend(_container_lines(state, containers))
        dropped = [name for name in state.sets if _CONTAINER_RE.match(name) and name not in containers]
        for entry in remove:
            removed.append(display(entry.chain, entry.text))
            if not entry.unordered:
                lines.append('delete rule %s %s handle %d' % (TABLE_REF, entry.chain, entry.handle))
            elif entry.chain not in dropped:
                lines.append('delete element %s %s { %s }' % (TABLE_REF, entry.chain, element_key(entry)))
        for name in sorted(dropped):
            # the rules looking the set up go first: a set in use cannot be deleted
            lines.extend('delete rule %s %s handle %d' % (TABLE_REF, chain, handle)
                         for chain, handle in state.container_rules.get(name, []))
            lines.append('delete %s %s %s' % ('map' if name in state.maps else 'set', TABLE_REF, name))
        for name in sorted(set(state.sets) - set(wanted_sets)):
            if name.startswith('lnt_aff_'):
                lines.append('delete set %s %s' % (TABLE_REF, name))
        for entry in add:
            if entry.unordered:
                lines.append('add element %s %s { %s }' % (TABLE_REF, entry.chain, entry.text))
                added.append(display(entry.chain, entry.text))
                continue
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


def nft_expr(line):
    """The nft rule expression (without the comment) for the inet table."""
    ip = 'ip' if line.family == 4 else 'ip6'
    return ' '.join(_nft_matches(line, ip) + [_nft_action(line, ip)])


def _nft_matches(line, ip, family_stated=False):
    m = line.matches
    parts = []
    if not family_stated and not any(key in m for key in ('src', 'dst', 'not_dst', 'ct_orig_dst')):
        # The inet table sees both families; an iptables rule lives in one.
        parts.append('meta nfproto %s' % family_name(line.family))
    if 'src' in m:
        parts.append('%s saddr %s' % (ip, net_text(m['src'], False)))
    if 'dst' in m:
        parts.append('%s daddr %s' % (ip, net_text(m['dst'], False)))
    if 'not_dst' in m:
        parts.append('%s daddr != %s' % (ip, net_text(m['not_dst'], False)))
    if 'dst_local' in m:
        parts.append('fib daddr type local')
    if 'in_if' in m:
        parts.append('iifname "%s"' % m['in_if'])
    if 'out_if' in m:
        parts.append('oifname "%s"' % m['out_if'])
    if 'proto' in m:
        if 'sport' in m or 'dport' in m:
            if 'sport' in m:
                parts.append('%s sport %s' % (m['proto'], port_text(m['sport'])))
            if 'dport' in m:
                parts.append('%s dport %s' % (m['proto'], port_text(m['dport'])))
        else:
            parts.append('meta l4proto %s' % m['proto'])
    if 'ctstate' in m:
        parts.append('ct state %s' % ','.join(s.lower() for s in m['ctstate']))
    if 'ct_dnat' in m:
        parts.append('ct status dnat')
    if 'ct_orig_dst' in m:
        parts.append('ct original %s daddr %s' % (ip, m['ct_orig_dst']))
    if 'ct_orig_dport' in m:
        parts.append('ct original proto-dst %s' % port_text(m['ct_orig_dport']))
    if 'pick' in m:
        mode, every = m['pick']
        parts.append('numgen %s mod %d 0' % ('random' if mode == 'random' else 'inc', every))
    if 'affinity' in m:
        name, operation, dummy = m['affinity']
        if operation == 'check':
            parts.append('%s saddr @%s' % (ip, name))
        parts.append('update @%s { %s saddr }' % (name, ip))
    return parts


def _nft_action(line, ip):
    if line.action in ('accept', 'drop'):
        return line.action
    fully_random = ' fully-random' if line.random_fully else ''
    if line.action == 'masquerade':
        return 'masquerade' + fully_random
    if line.action == 'snat':
        return 'snat %s to %s%s' % (ip, line.to_addr, fully_random)
    return 'dnat %s to %s' % (ip, endpoint_text(line.to_addr, line.to_ports))


def nft_entries(rules):
    """Our nft rules and set/map elements for the present ``rules`` (Entry.text: the rule
    expression with its comment; for an element, the element as ``nft list`` prints it)."""
    entries = []
    slots = set()
    for rid, line in ordered_lines(rules):
        container = collapsed(line)
        if container is None:
            expr = nft_expr(line)
            tag = make_tag(rid, '%s %s' % (line.chain, expr))
            entries.append(Entry(NFT_FAMILY, NFT_TABLE, line.chain, tag, '%s comment "%s"' % (expr, tag),
                                 role=line.chain))
            continue
        key, value = _element_values(line)
        if (container.name, key) in slots:
            continue  # the first rule that needs the element owns it
        slots.add((container.name, key))
        tag = make_tag(rid, '%s %s : %s' % (container.name, key, value))
        entry = Entry(NFT_FAMILY, NFT_TABLE, container.name, tag,
                      '%s comment "%s"%s' % (key, tag, ' : %s' % value if value else ''), role=line.chain)
        entry.unordered = True
        entry.container = container
        entry.slot = (container.name, key)
        entries.append(entry)
    return entries


# --- sets and maps of lines that differ only in per-flow values -----------------------------

# match -> (nft expression, element type); %(ip)s: ip or ip6, %(proto)s: tcp, udp, sctp
_KEY_MATCHES = (
    ('src', '%(ip)s saddr', 'addr'),
    ('dst', '%(ip)s daddr', 'addr'),
    ('sport', '%(proto)s sport', 'inet_service'),
    ('dport', '%(proto)s dport', 'inet_service'),
    ('ct_orig_dst', 'ct original %(ip)s daddr', 'addr'),
    ('ct_orig_dport', 'ct original proto-dst', 'inet_service'),
)
_ADDRESS_TYPES = {4: 'ipv4_addr', 6: 'ipv6_addr'}


class Container(object):
    """A set (accept, masquerade, snat lines) or map (dnat lines) of ours and the one rule
    that looks packets up in it."""

    def __init__(self, name, chain, kind, type_text, rule_text):
        self.name = name
        self.chain = chain
        self.kind = kind
        self.type_text = type_text
        self.rule_text = rule_text


def collapsed(line):
    """The Container ``line`` becomes an element of, or None when it stays a rule: it must
    name a protocol and a single port, its addresses must be single addresses, and it must
    not be one of the lines that pick among endpoints in turn (their order decides)."""
    m = line.matches
    if line.action == 'drop' or line.ordered or 'affinity' in m or 'proto' not in m:
        return None
    keys = [name for name, dummy_expr, dummy_type in _KEY_MATCHES if name in m]
    if not any(name in ('sport', 'dport') for name in keys):
        return None
    for name in keys:
        value = m[name]
        if isinstance(value, tuple) and value[0] != value[1]:
            return None  # a port range
        if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            return None
    if line.action == 'dnat' and line.to_ports is not None and line.to_ports[0] != line.to_ports[1]:
        return None
    names = dict(ip='ip' if line.family == 4 else 'ip6', proto=m['proto'])
    key_expr = ' . '.join(expr % names for name, expr, dummy_type in _KEY_MATCHES if name in keys)
    types = [_ADDRESS_TYPES[line.family] if kind == 'addr' else kind
             for name, dummy_expr, kind in _KEY_MATCHES if name in keys]
    # an address in the key states the family, as it does in a rule
    family_stated = any(name in keys for name in ('src', 'dst', 'ct_orig_dst'))
    matches = ' '.join(_nft_matches(_without(line, keys), names['ip'], family_stated))
    if line.action == 'dnat':
        data = [_ADDRESS_TYPES[line.family]] + (['inet_service'] if line.to_ports is not None else [])
        type_text = '%s : %s' % (' . '.join(types), ' . '.join(data))
        action = 'dnat %s to %s map @%%s' % (names['ip'], key_expr)
        kind = 'map'
    else:
        type_text = ' . '.join(types)
        action = '%s @%%s %s' % (key_expr, _nft_action(line, names['ip']))
        kind = 'set'
    shape = '%s %s %s %s %s' % (line.chain, kind, type_text, matches, action)
    name = 'lnt_%s_%s' % (line.chain, hashlib.sha1(shape.encode('utf-8')).hexdigest()[:12])
    return Container(name, line.chain, kind, type_text, '%s %s' % (matches, action % name))


def _without(line, keys):
    """A copy of ``line`` without the matches that go into the set's key."""
    copy = LogicalLine(line.chain, line.family, line.action, to_addr=line.to_addr, to_ports=line.to_ports,
                       random_fully=line.random_fully,
                       **dict((k, v) for k, v in line.matches.items() if k not in keys))
    return copy


def _element_values(line):
    """(key, value) of ``line``'s element as ``nft list`` prints them; value None for a set."""
    m = line.matches
    texts = []
    for name, dummy_expr, dummy_type in _KEY_MATCHES:
        if name in m:
            value = m[name]
            texts.append(str(value[0]) if isinstance(value, tuple) else str(value))
    value = None
    if line.action == 'dnat':
        value = str(line.to_addr) + (' . %d' % line.to_ports[0] if line.to_ports is not None else '')
    return ' . '.join(texts), value


def containers_of(entries):
    """{name: Container or None} of the sets/maps ``entries`` have elements in (None: an element
    found in the table whose desired twin is unknown, e.g. a rule this call does not name)."""
    found = {}
    for entry in entries:
        if entry.unordered:
            if found.get(entry.chain) is None:
                found[entry.chain] = entry.container
    return found


def _container_lines(state, containers):
    """The sets/maps that ``containers`` need and the table lacks, and the rules that look them
    up: at the top of their chain (every line they hold is an accept or a translation no other
    line of ours overlaps, and an isolation's drop must come after every accept), sorted by
    name, so that a table edited run after run lists them as a fresh one does."""
    lines = []
    for name in sorted(containers):
        container = containers[name]
        if container is not None and name not in state.sets:
            lines.append('add %s %s %s { type %s; }' % (container.kind, TABLE_REF, name, container.type_text))
    for chain in sorted(set(_CONTAINER_RE.match(name).group(1) for name in containers)):
        names = sorted(name for name in containers if _CONTAINER_RE.match(name).group(1) == chain)
        listed = [name for name in state.container_order if name in names]
        if listed == names and all(len(state.container_rules[name]) == 1 for name in names):
            continue
        if any(containers[name] is None for name in names):
            # a set of a rule this call does not name: add what is missing, leave the rest
            lines.extend(_container_rule(containers[name]) for name in reversed(names)
                         if containers[name] is not None and name not in listed)
            continue
        lines.extend('delete rule %s %s handle %d' % (TABLE_REF, where, handle)
                     for name in listed for where, handle in state.container_rules[name])
        lines.extend(_container_rule(containers[name]) for name in reversed(names))
    return lines


def _container_rule(container):
    return 'insert rule %s %s %s comment "%s%s"' % (TABLE_REF, container.chain, container.rule_text,
                                                    CONTAINER_RULE_PREFIX, container.name)


def element_key(entry):
    """The key of an element entry (``a . b`` of ``a . b comment "..." : c``)."""
    return _COMMENT_RE.sub('', entry.text).split(' : ')[0].strip()
