# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The iptables backend of nat_rule: read with iptables-save, write with one
``iptables-restore --noflush -w`` transaction per family and table.

Our rules live in chains of our own (LNT-PREROUTING, LNT-OUTPUT, LNT-POSTROUTING in
the nat table, LNT-FORWARD in filter), each entered by one tagged jump from its
built-in chain. The restore input names only those chains and jumps:

* a user chain declared with ``:NAME - [0:0]`` is FLUSHED by iptables-restore even
  with --noflush, so a chain is declared only when it does not exist yet;
* rules are removed with ``-D CHAIN <spec as iptables-save printed it>`` and added
  with ``-A``, so nothing else in the table is touched or reordered;
* a built-in chain's policy line (``:FORWARD DROP [0:0]``) sets the policy without
  flushing the chain; it is written only when the user asked for a policy.

Both iptables flavours are handled: iptables-nft (the default on current
distributions) and iptables-legacy. A namespace whose rules are in the legacy
tables (an older Docker, say) keeps getting legacy rules, because rules of the other
flavour would not be seen by the tools the admin uses there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import XTABLES_WAIT
from ansible_collections.linuxnet.netns.plugins.module_utils.nat_model import (
    CHAIN_ROLES,
    JUMP_TAG,
    Entry,
    Transaction,
    endpoint_text,
    family_name,
    make_tag,
    net_text,
    ordered_lines,
)

# role -> (table, our chain, built-in chain it is entered from)
IPTABLES_CHAINS = {
    'prerouting': ('nat', 'LNT-PREROUTING', 'PREROUTING'),
    'output': ('nat', 'LNT-OUTPUT', 'OUTPUT'),
    'postrouting': ('nat', 'LNT-POSTROUTING', 'POSTROUTING'),
    'forward': ('filter', 'LNT-FORWARD', 'FORWARD'),
}

OUR_CHAINS = dict((chain, (table, builtin)) for table, chain, builtin in IPTABLES_CHAINS.values())
ROLE_OF_CHAIN = dict((chain, role) for role, (table, chain, builtin) in IPTABLES_CHAINS.items())
TABLES = ('nat', 'filter')
BUILTIN_CHAINS = {
    'nat': ('PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'),
    'filter': ('INPUT', 'FORWARD', 'OUTPUT'),
}
_COMMENT_RE = re.compile(r'(?:^|\s)--comment\s+("(?:[^"\\]|\\.)*"|\S+)')
_JUMP_RE = re.compile(r'(?:^|\s)-j\s+(LNT-[A-Z]+)(?:\s|$)')


def tool(family, variant, what):
    """'iptables-nft-save', 'ip6tables-legacy-restore', 'iptables-save' (variant None)."""
    base = 'iptables' if family == 4 else 'ip6tables'
    return '%s-%s-%s' % (base, variant, what) if variant else '%s-%s' % (base, what)


def operator_tool(family, variant):
    base = 'iptables' if family == 4 else 'ip6tables'
    return '%s-legacy' % base if variant == 'legacy' else base


def comment_of(text):
    match = _COMMENT_RE.search(text)
    if not match:
        return None
    value = match.group(1)
    if value.startswith('"') and value.endswith('"'):
        value = value[1:-1].replace('\\"', '"')
    return value


def parse_save(text):
    """iptables-save output -> {table: {'policies': {chain: policy}, 'chains': [names],
    'rules': [(chain, spec)]}} (spec: everything after ``-A CHAIN``)."""
    tables = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('*'):
            current = tables.setdefault(line[1:], {'policies': {}, 'chains': [], 'rules': []})
        elif current is None:
            continue
        elif line.startswith(':'):
            name, dummy, rest = line[1:].partition(' ')
            policy = rest.split(' ')[0] if rest else '-'
            current['chains'].append(name)
            if policy != '-':
                current['policies'][name] = policy
        elif line.startswith('-A '):
            chain, dummy, spec = line[3:].partition(' ')
            current['rules'].append((chain, spec))
    return tables


class XtablesView(object):
    """What one iptables flavour (variant) shows for one family in a namespace."""

    def __init__(self, family, variant, tables):
        self.family = family
        self.variant = variant
        self.tables = tables

    @property
    def label(self):
        return '%s%s' % (family_name(self.family), ' (legacy)' if self.variant == 'legacy' else '')

    def table(self, name):
        return self.tables.get(name) or {'policies': {}, 'chains': [], 'rules': []}

    def our_chains(self):
        """Our chains that exist, as {chain: table}."""
        found = {}
        for table in TABLES:
            for chain in self.table(table)['chains']:
                if chain in OUR_CHAINS and OUR_CHAINS[chain][0] == table:
                    found[chain] = table
        return found

    def entries(self):
        """Every line in our chains (ours or not: our chains hold nothing else by design)."""
        result = []
        for table in TABLES:
            for chain, spec in self.table(table)['rules']:
                if chain in OUR_CHAINS:
                    result.append(Entry(self.family, table, chain, comment_of(spec), spec,
                                        role=ROLE_OF_CHAIN[chain]))
        return result

    def jumps(self):
        """Lines in built-in chains that jump to one of our chains: {our chain: [spec]}."""
        result = {}
        for table in TABLES:
            for chain, spec in self.table(table)['rules']:
                if chain in OUR_CHAINS:
                    continue
                match = _JUMP_RE.search(spec)
                if match and match.group(1) in OUR_CHAINS:
                    result.setdefault(match.group(1), []).append((chain, spec))
        return result

    def policy(self, chain='FORWARD'):
        return self.table('filter')['policies'].get(chain, 'ACCEPT')

    def foreign_forward_rules(self):
        return [spec for chain, spec in self.table('filter')['rules']
                if chain == 'FORWARD' and not _JUMP_RE.search(spec)]

    def forward_restrictive(self, policy=None):
        """Whether this FORWARD chain can drop what our accepts let through: a DROP
        policy, or rules of someone else (Docker's isolation chains, an admin's DROP)."""
        effective = (policy or self.policy()).upper()
        return effective != 'ACCEPT' or bool(self.foreign_forward_rules())

    def foreign_content(self, table, forward_policy=None):
        """Whether ``table`` holds anything but ours: rules, user chains, a non-ACCEPT
        policy (FORWARD's as ``forward_policy`` will set it, when given)."""
        content = self.table(table)
        policies = dict(content['policies'])
        if forward_policy and 'FORWARD' in policies:
            policies['FORWARD'] = forward_policy.upper()
        if any(p != 'ACCEPT' for p in policies.values()):
            return True
        if any(c not in OUR_CHAINS and c not in BUILTIN_CHAINS[table] and c != ADMIN_CHAIN for c in content['chains']):
            return True
        return any(chain not in OUR_CHAINS and not _JUMP_RE.search(spec) for chain, spec in content['rules'])

    def has_content(self):
        """Any rule or non-ACCEPT policy at all (used to detect a legacy-managed namespace)."""
        for table in self.tables.values():
            if table['rules'] or any(p != 'ACCEPT' for p in table['policies'].values()):
                return True
        return False


def read_views(runner):
    """Every iptables flavour's view of both families: {(family, variant): XtablesView}.

    iptables-save without ``-t`` dumps only tables that exist, so reading never
    creates a table (``iptables-legacy -t nat -S`` would load one).
    """
    views = {}
    for family in (4, 6):
        for variant in ('nft', 'legacy'):
            if runner.which(tool(family, variant, 'save')) is None:
                continue
            if variant == 'legacy' and not legacy_tables_exist(runner, family):
                # The kernel lists loaded legacy tables per namespace; none, nothing to read.
                views[(family, variant)] = XtablesView(family, variant, {})
                continue
            out = runner.run([tool(family, variant, 'save')])[1]
            views[(family, variant)] = XtablesView(family, variant, parse_save(out))
        if not any(key[0] == family for key in views) and runner.which(tool(family, None, 'save')):
            out = runner.run([tool(family, None, 'save')])[1]
            views[(family, None)] = XtablesView(family, None, parse_save(out))
    return views


def legacy_tables_exist(runner, family):
    return bool(runner.read_proc_net('ip_tables_names' if family == 4 else 'ip6_tables_names').strip())


def choose_view(views, family):
    """The flavour our rules of ``family`` go to: where they already are, else where the
    namespace's other rules are (legacy), else iptables-nft (or the plain tools)."""
    candidates = [view for key, view in sorted(views.items(), key=view_order) if key[0] == family]
    if not candidates:
        return None
    for view in candidates:
        if view.our_chains():
            return view
    for view in candidates:
        if view.variant == 'legacy' and view.has_content():
            return view
    for view in candidates:
        if view.variant != 'legacy':
            return view
    return candidates[0]


def view_order(item):
    family, variant = item[0]
    return (family, {'nft': 0, None: 1, 'legacy': 2}[variant])


def display(view, table, chain, spec):
    return '%s %s: -A %s %s' % (view.label, table, chain, spec)


def jump_spec(chain):
    return '-m comment --comment "%s" -j %s' % (JUMP_TAG, chain)


# The administrator's chain: FORWARD jumps to it right before LNT-FORWARD, so a DROP put
# there (a quarantined host, say) applies to the flows our accepts would let through. The
# collection creates it empty and never writes into it; it goes with our jump only when empty.
ADMIN_CHAIN = 'LNT-USER'
ADMIN_TAG = 'lnt:user'
_DOCKER_USER_RE = re.compile(r'(?:^|\s)-j\s+DOCKER-USER(?:\s|$)')


def admin_jump_spec():
    return '-m comment --comment "%s" -j %s' % (ADMIN_TAG, ADMIN_CHAIN)


def forward_position(view, without=()):
    """Where our FORWARD jump goes (1-based) once the jumps in ``without`` are deleted: first,
    or right after Docker's DOCKER-USER jump, which keeps precedence as Docker documents it
    (the administrator's restrictions)."""
    rules = [spec for chain, spec in view.table('filter')['rules']
             if chain == 'FORWARD' and (chain, spec) not in without]
    for index, spec in enumerate(rules):
        if _DOCKER_USER_RE.search(spec):
            return index + 2
    return 1


def forward_jumps_in_order(view):
    """Whether our FORWARD jump (and the admin chain's, just before it) sit where
    forward_position puts them."""
    rules = [spec for chain, spec in view.table('filter')['rules'] if chain == 'FORWARD']
    ours = [index for index, spec in enumerate(rules) if JUMP_TAG in spec and 'LNT-FORWARD' in spec]
    admin = [index for index, spec in enumerate(rules) if ADMIN_TAG in spec]
    docker = [index for index, spec in enumerate(rules) if _DOCKER_USER_RE.search(spec)]
    if len(ours) != 1 or len(admin) != 1 or admin[0] != ours[0] - 1:
        return False
    return not docker or docker[0] < admin[0]


def plan_view(view, keep, remove, add, policy=None, tables=TABLES):
    """Transactions (one per table with changes) that turn ``view`` into keep + add.

    ``keep``/``remove``/``add`` are Entry lists of this view's family. ``policy``
    (ACCEPT/DROP or None) sets the FORWARD policy.
    """
    existing = view.our_chains()
    jumps = view.jumps()
    final = {}
    for entry in keep + add:
        final.setdefault(entry.chain, []).append(entry)
    transactions = []
    for table in tables:
        decl, body, tail = [], [], []
        removed, added, policies = [], [], []
        if table == 'filter' and policy and view.policy().upper() != policy.upper():
            decl.append(':FORWARD %s [0:0]' % policy.upper())
            policies.append(('%s filter: policy FORWARD %s' % (view.label, view.policy()),
                             '%s filter: policy FORWARD %s' % (view.label, policy.upper())))
        for chain, (chain_table, builtin) in sorted(OUR_CHAINS.items()):
            if chain_table != table:
                continue
            needed = bool(final.get(chain))
            if needed and chain not in existing:
                decl.append(':%s - [0:0]' % chain)
            for entry in remove:
                if entry.chain == chain:
                    body.append('-D %s %s' % (chain, deletable(entry.text)))
                    removed.append(display(view, table, chain, entry.text))
            # Each addition goes in front of the kept line the desired order puts after it
            # (in_desired_order set ``before``), else at the end.
            lines_now = [entry for entry in keep if entry.chain == chain]
            for entry in add:
                if entry.chain != chain:
                    continue
                before = getattr(entry, 'before', None)
                if before is not None and before in lines_now:
                    position = lines_now.index(before)
                    lines_now.insert(position, entry)
                    body.append('-I %s %d %s' % (chain, position + 1, entry.text))
                else:
                    lines_now.append(entry)
                    body.append('-A %s %s' % (chain, entry.text))
                added.append(display(view, table, chain, entry.text))
            found = jumps.get(chain, [])
            surplus = found if not needed else found[1:]
            if builtin == 'FORWARD':
                admin = [(c, spec) for c, spec in view.table('filter')['rules'] if c == 'FORWARD' and ADMIN_TAG in spec]
                if needed and found and not forward_jumps_in_order(view):
                    surplus, found = found, []  # deleted here, inserted again at its place
                admin_rules = [spec for c, spec in view.table('filter')['rules'] if c == ADMIN_CHAIN]
                if (needed and not found) or (not needed and not admin_rules):
                    surplus = surplus + [entry for entry in admin if entry not in surplus]
            # Deletions first: a jump moved to its place has the same spec as the old one.
            for builtin_chain, spec in surplus:
                tail.append('-D %s %s' % (builtin_chain, spec))
                if ADMIN_TAG not in spec:  # the admin chain's jump is plumbing, like a chain declaration
                    removed.append(display(view, table, builtin_chain, spec))
            if needed and not found:
                if builtin == 'FORWARD':
                    # Before a DROP policy or an admin's REJECT later in FORWARD, since our
                    # accepts only let through the flows our NAT rules create; after Docker's
                    # DOCKER-USER jump, and right after the admin chain LNT-USER, so that the
                    # administrator's restrictions still decide first.
                    position = forward_position(view, without=surplus)
                    if ADMIN_CHAIN not in view.table('filter')['chains']:
                        decl.append(':%s - [0:0]' % ADMIN_CHAIN)
                    tail.append('-I %s %d %s' % (builtin, position, jump_spec(chain)))
                    tail.append('-I %s %d %s' % (builtin, position, admin_jump_spec()))
                else:
                    # nat: appended, so NAT rules made by Docker, kube-proxy or an admin
                    # keep deciding first for the flows they own.
                    tail.append('-A %s %s' % (builtin, jump_spec(chain)))
                added.append(display(view, table, builtin, jump_spec(chain)))
            if not needed and chain in existing:
                # Lines in our chain we do not know (not tagged, not removed above) would
                # make -X fail; our chains hold only our lines, so flush before deleting.
                tail.append('-F %s' % chain)
                tail.append('-X %s' % chain)
                if builtin == 'FORWARD' and ADMIN_CHAIN in view.table('filter')['chains'] \
                        and not [spec for c, spec in view.table('filter')['rules'] if c == ADMIN_CHAIN]:
                    tail.append('-X %s' % ADMIN_CHAIN)
        if not (decl or body or tail):
            continue
        lines = ['*%s' % table] + decl + body + tail + ['COMMIT']
        commands = [_operator_line(view, table, line) for line in decl + body + tail]
        restore = [tool(view.family, view.variant, 'restore'), '--noflush', '-w', str(XTABLES_WAIT)]
        transactions.append(Transaction('%s %s' % (view.label, table), restore, lines, commands, removed, added,
                                        policies))
        if view.variant != 'legacy' and not final_in_table(final, table) \
                and not view.foreign_content(table, policy if table == 'filter' else None):
            transactions.append(drop_empty_table(view.family, table))
    return transactions


# iptables-save prints the default mask of a recent match, and a -D naming it does not find
# the rule added without one (iptables 1.8.9, nft and legacy variants alike); we never set it.
_DEFAULT_RECENT_MASK_RE = re.compile(r' --mask (?:255\.255\.255\.255|ffff(?::ffff){7})(?= )')


def deletable(spec):
    """A listed rule spec as -D finds it."""
    return _DEFAULT_RECENT_MASK_RE.sub('', spec)


def final_in_table(final, table):
    return any(entries for chain, entries in final.items() if OUR_CHAINS[chain][0] == table)


def drop_empty_table(family, table):
    """Delete an iptables-nft table our removal left empty.

    iptables-nft creates a table (and the base chains used) on first use and never
    deletes it; an empty one behaves exactly like none, but ``nft list ruleset``
    and iptables-save would still show it after ``state: absent``. The guard checks
    at apply time that it holds nothing at all (no rule, set or map, every policy
    accept) and skips the deletion otherwise.
    """
    nft_family = 'ip' if family == 4 else 'ip6'
    argv = ['nft', 'delete', 'table', nft_family, table]

    def guard(runner):
        if runner.which('nft') is None:
            return False
        rc, out, dummy = runner.run(['nft', '-j', 'list', 'table', nft_family, table], check=False)
        return rc == 0 and nft_table_is_empty(out)

    return Transaction('%s %s' % (family_name(family), table), argv, None,
                       ['nft delete table %s %s' % (nft_family, table)], [], [], guard=guard)


def nft_table_is_empty(json_text):
    try:
        items = json.loads(json_text).get('nftables', [])
    except ValueError:
        return False
    for item in items:
        if 'metainfo' in item or 'table' in item:
            continue
        chain = item.get('chain')
        if chain is not None and chain.get('policy', 'accept') == 'accept':
            continue
        return False
    return True


def _operator_line(view, table, line):
    """A restore input line as the iptables command an operator would type."""
    prefix = '%s -t %s ' % (operator_tool(view.family, view.variant), table)
    if line.startswith(':'):
        name, dummy, rest = line[1:].partition(' ')
        policy = rest.split(' ')[0]
        return prefix + ('-N %s' % name if policy == '-' else '-P %s %s' % (name, policy))
    return prefix + line


def current_lines(view):
    """Display lines of everything of ours in ``view`` (for the diff's before side)."""
    lines = [display(view, entry.table, entry.chain, entry.text) for entry in view.entries()]
    for chain, found in view.jumps().items():
        for builtin, spec in found:
            lines.append(display(view, OUR_CHAINS[chain][0], builtin, spec))
    return lines


def _ports_iptables(ports):
    lo, hi = ports
    return str(lo) if lo == hi else '%d:%d' % (lo, hi)


def iptables_spec(line):
    """The rule specification after ``-A CHAIN`` (without the comment match and target)."""
    m = line.matches
    args = []
    if 'not_dst' in m:
        args += ['!', '-d', net_text(m['not_dst'], True)]
    if 'src' in m:
        args += ['-s', net_text(m['src'], True)]
    if 'dst' in m:
        args += ['-d', net_text(m['dst'], True)]
    if 'in_if' in m:
        args += ['-i', m['in_if']]
    if 'out_if' in m:
        args += ['-o', m['out_if']]
    if 'proto' in m:
        args += ['-p', m['proto']]
        if 'sport' in m or 'dport' in m:
            args += ['-m', m['proto']]
            if 'sport' in m:
                args += ['--sport', _ports_iptables(m['sport'])]
            if 'dport' in m:
                args += ['--dport', _ports_iptables(m['dport'])]
    if 'dst_local' in m:
        args += ['-m', 'addrtype', '--dst-type', 'LOCAL']
    states = list(m.get('ctstate', ()))
    if 'ct_dnat' in m:
        states.append('DNAT')
    if states:
        args += ['-m', 'conntrack', '--ctstate', ','.join(states)]
        if 'ct_orig_dst' in m:
            args += ['--ctorigdst', str(m['ct_orig_dst'])]
        if 'ct_orig_dport' in m:
            args += ['--ctorigdstport', _ports_iptables(m['ct_orig_dport'])]
    if 'pick' in m:
        mode, every = m['pick']
        if mode == 'random':
            args += ['-m', 'statistic', '--mode', 'random', '--probability', '%.10f' % (1.0 / every)]
        else:
            args += ['-m', 'statistic', '--mode', 'nth', '--every', str(every), '--packet', '0']
    if 'affinity' in m:
        name, operation, seconds = m['affinity']
        if operation == 'check':
            # --update: a returning client renews its timeout, as a new pick would
            args += ['-m', 'recent', '--update', '--seconds', str(seconds), '--reap', '--name', name, '--rsource']
        else:
            args += ['-m', 'recent', '--set', '--name', name, '--rsource']
    return args


def iptables_target(line):
    if line.action == 'accept':
        return ['-j', 'ACCEPT']
    if line.action == 'drop':
        return ['-j', 'DROP']
    fully_random = ['--random-fully'] if line.random_fully else []
    if line.action == 'masquerade':
        return ['-j', 'MASQUERADE'] + fully_random
    if line.action == 'snat':
        return ['-j', 'SNAT', '--to-source', str(line.to_addr)] + fully_random
    return ['-j', 'DNAT', '--to-destination', endpoint_text(line.to_addr, line.to_ports)]


def iptables_entries(rules, roles=CHAIN_ROLES):
    """Our iptables lines for the present ``rules`` (Entry.text: spec after ``-A CHAIN``)."""
    entries = []
    for rid, line in ordered_lines(rules):
        if line.chain not in roles:
            continue
        table, chain = IPTABLES_CHAINS[line.chain][:2]
        spec, target = iptables_spec(line), iptables_target(line)
        tag = make_tag(rid, ' '.join([chain] + spec + target))
        text = ' '.join(spec + ['-m', 'comment', '--comment', '"%s"' % tag] + target)
        entries.append(Entry(line.family, table, chain, tag, text, role=line.chain))
    return entries
