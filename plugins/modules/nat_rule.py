#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: nat_rule
short_description: Manage NAT (masquerade, SNAT, DNAT) and forwarding rules of a network namespace
version_added: 0.1.0
description:
  - Manages the NAT rules that connect a network namespace to the outside and publish its
    services, with their FORWARD companions, through iptables or nftables; the declarative form
    of C(iptables -t nat -A POSTROUTING -s 192.168.45.0/24 -o eth0 -j MASQUERADE) and of a
    DNAT port forward.
  - One rule is given through the top-level options, or many through O(rules) in one call, in
    one or several namespaces.
  - Rules live only where the collection owns them. With iptables, in the chains
    C(LNT-PREROUTING), C(LNT-OUTPUT), C(LNT-POSTROUTING) (nat table) and C(LNT-FORWARD) (filter
    table), each entered by one jump from its built-in chain (the FORWARD jump at position 1, the
    nat jumps appended). With nftables, in the table C(inet linuxnet_netns). Every line carries the
    comment C(lnt:<rule-id> <digest>). Rules made by Docker, kube-proxy, firewalld or an
    administrator are never flushed, reordered or rewritten.
  - Each call reads the current rules once per namespace, computes the difference and applies it
    in one atomic transaction per namespace and table (C(iptables-restore --noflush -w) per family
    and table, or one C(nft -f -) batch). Check mode stops after the comparison.
  - A rule is identified by what selects its traffic (masquerade - source, destination,
    out_interface; snat - family, source, destination, out_interface; dnat - protocol, published
    address and port). Changing anything else (a DNAT target, the forward mode) changes the rule
    in place.
  - After a DNAT rule's target changed or the rule was removed, the conntrack entries that still
    lead to the old target are deleted, and for a UDP port that is newly published or retargeted
    every UDP entry to that port not leading to the new target is deleted (see
    O(conntrack_cleanup)); otherwise established flows, and UDP "flows" that never end, keep their
    old translation.
author:
  - linuxnet.netns contributors (@linuxnet)
extends_documentation_fragment:
  - linuxnet.netns.netns
  - linuxnet.netns.netns.ATTRIBUTES
options:
  namespace:
    description:
      - Namespace whose rules are managed. With O(rules), the default for items that do not
        name one.
      - The namespace must exist; the module never creates it.
    type: str
  backend:
    description:
      - V(iptables) writes through iptables-restore (iptables-nft or, when the namespace's rules
        are in the legacy tables, iptables-legacy). V(nftables) writes the table
        C(inet linuxnet_netns) with nft.
      - V(auto) chooses per namespace - the backend that already holds rules of ours there;
        otherwise iptables when C(nft) is missing or cannot list the ruleset, or when the
        namespace has iptables-legacy rules (the rules of a legacy-managed host belong with them);
        otherwise nftables.
      - An accept in our nft table does not override a drop in another table. With V(nftables),
        when the namespace's iptables FORWARD chain can drop (policy DROP or rules of someone
        else, such as Docker's), the FORWARD companions are also written into iptables
        (C(LNT-FORWARD), jumped to from FORWARD at position 1) and removed again when that
        chain no longer drops.
    type: str
    choices: [auto, iptables, nftables]
    default: auto
  kind:
    description:
      - V(masquerade) translates the source address of traffic from O(source) leaving through
        O(out_interface) to that interface's address (article step 8).
      - V(snat) translates the source address to O(to_source).
      - V(dnat) publishes O(protocol) O(port) on O(destination) (or on every address of the
        namespace) and forwards it to O(to_address):O(to_port).
      - Required unless O(rules) is given or only O(forward_policy)/O(purge) are used.
    type: str
    choices: [masquerade, snat, dnat]
  source:
    description:
      - Source network in CIDR form whose traffic is translated (masquerade, snat). Required for
        V(masquerade).
    type: str
  destination:
    description:
      - For V(dnat), the address the port is published on (a single address; when omitted, every
        local address of the namespace, loopback excluded).
      - For V(masquerade) and V(snat), only traffic to this network (CIDR) is translated.
    type: str
  out_interface:
    description:
      - Egress interface. Required for V(masquerade). For V(dnat), the interface towards the
        target, used only by the FORWARD companions.
    type: str
  in_interface:
    description:
      - For V(dnat), only packets arriving on this interface are translated (see O(hairpin)).
      - For V(masquerade) and V(snat), the inner interface; used only by the FORWARD companions.
      - O(forward=both) needs O(in_interface) and O(out_interface).
    type: str
  to_source:
    description: Address to translate the source to (V(snat), required there).
    type: str
  protocol:
    description: Protocol of the published port (V(dnat), required there).
    type: str
    choices: [tcp, udp, sctp]
  port:
    description:
      - Published port, an integer or a range C("lo-hi") (V(dnat), required there).
      - A range keeps its ports (8080-8090 goes to the same ports of O(to_address)).
    type: raw
  to_address:
    description: Address the published port is forwarded to (V(dnat), required when present).
    type: str
  to_port:
    description:
      - Port on O(to_address); when omitted, the published port. Not allowed with a port range.
    type: int
  forward:
    description:
      - FORWARD companions of the rule.
      - V(scoped) (the default) accepts new flows from O(source) (and to O(destination)) leaving
        through O(out_interface), their replies by conntrack state, and for V(dnat) only flows
        DNAT'ed to O(to_address):O(to_port) and their replies.
      - V(both) is the article's step 9 literally, everything both ways between O(in_interface)
        and O(out_interface).
      - V(none) writes no FORWARD rule.
      - The FORWARD policy itself is changed only through O(forward_policy).
    type: str
    choices: [scoped, both, none]
  hairpin:
    description:
      - For V(dnat) (default V(true)), also make the published port reachable from the namespace
        itself (DNAT in the nat OUTPUT chain) and from the target itself through the published
        address (masquerading that hairpin flow so its replies come back through the NAT).
        With O(in_interface), the target's own hairpin flows are translated as well.
      - Clients in other inner namespaces reach a port published without O(in_interface)
        through the ordinary DNAT.
    type: bool
  state:
    description:
      - V(present) makes sure the rule exists as requested; V(absent) removes exactly the lines of
        this rule (of both families when its addresses do not tell the family), our chains or table
        when they become empty, and the jumps to them.
      - With O(rules), the default for items that do not set it.
    type: str
    choices: [present, absent]
    default: present
  rules:
    description:
      - Several rules in one call; each item takes the top-level rule options and O(namespace).
      - Mutually exclusive with the top-level rule options.
    type: list
    elements: dict
    suboptions:
      namespace:
        description: Namespace of this rule (default O(namespace)).
        type: str
      kind:
        description: V(masquerade), V(snat) or V(dnat), as O(kind).
        type: str
        choices: [masquerade, snat, dnat]
        required: true
      source:
        description: As O(source).
        type: str
      destination:
        description: As O(destination).
        type: str
      out_interface:
        description: As O(out_interface).
        type: str
      in_interface:
        description: As O(in_interface).
        type: str
      to_source:
        description: As O(to_source).
        type: str
      protocol:
        description: As O(protocol).
        type: str
        choices: [tcp, udp, sctp]
      port:
        description: As O(port).
        type: raw
      to_address:
        description: As O(to_address).
        type: str
      to_port:
        description: As O(to_port).
        type: int
      forward:
        description: As O(forward) (default V(scoped)).
        type: str
        choices: [scoped, both, none]
      hairpin:
        description: As O(hairpin) (default V(true) for V(dnat)).
        type: bool
      state:
        description: V(present) or V(absent) (default O(state)).
        type: str
        choices: [present, absent]
  purge:
    description:
      - Also remove the rules of ours that this call does not name, in every namespace the call
        names (with the chosen backend). O(rules=[]) with O(purge=true) removes all our rules of
        O(namespace).
    type: bool
    default: false
  forward_policy:
    description:
      - Set the FORWARD policy (IPv4 and IPv6) of every namespace the call names. Unset, the
        policy is left as it is.
      - With iptables, the policy of the built-in FORWARD chains. With nftables, the policy of our
        table's forward chain; V(accept) also sets an iptables FORWARD chain that exists with policy
        DROP to ACCEPT, since our accept could not override its drop.
    type: str
    choices: [accept, drop]
  conntrack_cleanup:
    description:
      - Delete the conntrack entries a DNAT change made stale (see the description). Needs the
        namespace's conntrack table (ctnetlink), which pyroute2 reaches.
    type: bool
    default: true
notes:
  - Needs C(iptables-save)/C(iptables-restore) (iptables 1.8) or C(nft) (nftables 0.9.3 or later,
    Linux 5.2 or later for NAT in an inet table), and C(nsenter) (util-linux) to run them inside a
    namespace.
  - IP forwarding itself is a sysctl, see M(linuxnet.netns.sysctl_forward).
  - Works with pyroute2 0.7.2 (Debian 12 C(python3-pyroute2)) and 0.9.x.
seealso:
  - module: linuxnet.netns.sysctl_forward
  - module: linuxnet.netns.conntrack_info
  - module: linuxnet.netns.netns_probe
'''

EXAMPLES = r'''
- name: Article step 8 and 9 - masquerade the inner network out of eth0, scoped forwarding
  linuxnet.netns.nat_rule:
    namespace: host1
    kind: masquerade
    source: 192.168.45.0/24
    out_interface: eth0
    in_interface: veth1

- name: Article 2.3 - publish host1:8080/tcp on myspace's port 80
  linuxnet.netns.nat_rule:
    namespace: host1
    kind: dnat
    protocol: tcp
    port: 8080
    destination: 192.168.1.32
    to_address: 192.168.45.3
    to_port: 80

- name: Everything of host1 in one call, FORWARD policy DROP, remove rules not listed
  linuxnet.netns.nat_rule:
    namespace: host1
    backend: nftables
    forward_policy: drop
    purge: true
    rules:
      - kind: masquerade
        source: 192.168.45.0/24
        out_interface: eth0
      - kind: masquerade
        source: fd45::/64
        out_interface: eth0
      - kind: dnat
        protocol: udp
        port: 5000-5010
        to_address: 192.168.45.3
      - kind: dnat
        protocol: tcp
        port: 8443
        to_address: fd45::3
        to_port: 443

- name: NodePort - node B publishes :30000 to a pod behind host C and SNATs so replies return
  linuxnet.netns.nat_rule:
    namespace: nodeb
    rules:
      - kind: dnat
        protocol: tcp
        port: 30000
        to_address: 172.26.0.3
        to_port: 8080
      - kind: snat
        destination: 172.26.0.3/32
        out_interface: eth1
        to_source: 10.0.0.2

- name: Remove a port forward (and the conntrack entries still leading to its target)
  linuxnet.netns.nat_rule:
    namespace: host1
    kind: dnat
    protocol: tcp
    port: 8080
    destination: 192.168.1.32
    state: absent
'''

RETURN = r'''
backend:
  description:
    - The backend used, V(iptables) or V(nftables); when the namespaces of one call used
      different ones, the names joined by a comma.
  returned: always
  type: str
  sample: nftables
rules_added:
  description: The rule lines added, as the backend lists them (with family and table or chain).
  returned: always
  type: list
  elements: str
  sample: ['ipv4 nat: -A LNT-POSTROUTING -s 192.168.45.0/24 -o eth0 -m comment --comment "lnt:masq,s=192.168.45.0/24,o=eth0 68a96732" -j MASQUERADE']
rules_removed:
  description: The rule lines removed, same form as RV(rules_added).
  returned: always
  type: list
  elements: str
  sample: []
conntrack_deleted:
  description: Number of conntrack entries deleted because a DNAT change made them stale.
  returned: always
  type: int
  sample: 1
namespaces:
  description: Per namespace of the call, what was done there.
  returned: always
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace name (null for the module's own namespace).
      type: str
      sample: host1
    backend:
      description: Backend used in this namespace.
      type: str
      sample: iptables
    changed:
      description: Whether this namespace's rules changed.
      type: bool
      sample: true
    rules_added:
      description: Rule lines added here.
      type: list
      elements: str
      sample: []
    rules_removed:
      description: Rule lines removed here.
      type: list
      elements: str
      sample: []
    conntrack_deleted:
      description: Conntrack entries deleted here.
      type: int
      sample: 0
commands:
  description: The iptables or nft commands an operator would have typed for the same change
    (the module applies them as one transaction per namespace and table).
  returned: always
  type: list
  elements: str
  sample: ["ip netns exec host1 iptables -t nat -N LNT-POSTROUTING"]
'''

import ipaddress

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils import conntrack
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables as ipt
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_nftables as nft
from ansible_collections.linuxnet.netns.plugins.module_utils.common import (
    acquire_state_lock,
    COMMAND_ENVIRON,
    Report,
    Rollback,
    collect_items,
    fail_from_exception,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.nat_model import (
    RULE_KEYS,
    conntrack_cleanups,
    iptables_entries,
    managed_ids,
    nft_entries,
    parse_rules,
    plan_entries,
    stale_entries,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import iproute, require_pyroute2
from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import NetnsRunner
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError

RULE_OPTIONS = tuple(key for key in RULE_KEYS if key != 'state')


def argument_spec():
    rule = dict(
        kind=dict(type='str', choices=['masquerade', 'snat', 'dnat']),
        source=dict(type='str'),
        destination=dict(type='str'),
        out_interface=dict(type='str'),
        in_interface=dict(type='str'),
        to_source=dict(type='str'),
        protocol=dict(type='str', choices=['tcp', 'udp', 'sctp']),
        port=dict(type='raw'),
        to_address=dict(type='str'),
        to_port=dict(type='int'),
        forward=dict(type='str', choices=['scoped', 'both', 'none']),
        hairpin=dict(type='bool'),
    )
    item = dict(rule, namespace=dict(type='str'), state=dict(type='str', choices=['present', 'absent']))
    item['kind'] = dict(type='str', choices=['masquerade', 'snat', 'dnat'], required=True)
    spec = dict(rule)
    spec.update(
        namespace=dict(type='str'),
        backend=dict(type='str', choices=['auto', 'iptables', 'nftables'], default='auto'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        rules=dict(type='list', elements='dict', options=item),
        purge=dict(type='bool', default=False),
        forward_policy=dict(type='str', choices=['accept', 'drop']),
        conntrack_cleanup=dict(type='bool', default=True),
    )
    return spec


class NamespacePlan(object):
    """Everything one namespace needs: its runner, the backend chosen, the state read,
    the transactions to apply, and what they add and remove."""

    def __init__(self, namespace, runner):
        self.namespace = namespace
        self.runner = runner
        self.backend = None
        self.views = {}
        self.table = None
        self.transactions = []
        self.before = []
        self.removed_entries = []
        self.added_entries = []
        self.kept_entries = []
        self.cleanups = []
        self.conntrack_deleted = 0
        self.applied = False

    @property
    def rules_added(self):
        return [line for tx in self.transactions for line in tx.added]

    @property
    def rules_removed(self):
        return [line for tx in self.transactions for line in tx.removed]

    def commands(self):
        return [self.runner.describe_text(cmd) for tx in self.transactions for cmd in tx.commands]


def wanted_items(params):
    """The (field, item) pairs of the call; none when only policy/purge are asked for."""
    if params.get('rules') is None and params.get('kind') is None:
        return []
    return collect_items(params, 'rules', RULE_KEYS + ('namespace',), defaults_from_top=('state', 'namespace'))


def call_namespaces(rules, params):
    names = []
    for rule in rules:
        if rule.namespace not in names:
            names.append(rule.namespace)
    if not names:
        names.append(params.get('namespace'))
    return names


def choose_backend(requested, plan, nft_ok, warnings):
    ours_in_iptables = any(view.our_chains() for view in plan.views.values())
    if requested == 'nftables':
        if not nft_ok:
            raise ValidationError('backend', requested, 'nft is not installed or cannot list the ruleset '
                                                        'in namespace %s' % (plan.namespace or '(own)'))
        if ours_in_iptables and not plan.table.exists:
            warnings.append('namespace %s has rules of ours in iptables chains (LNT-*); they are left as '
                            'they are' % (plan.namespace or '(own)'))
        return 'nftables'
    if requested == 'iptables':
        if not plan.views:
            raise ValidationError('backend', requested, 'iptables-save/iptables-restore are not installed')
        if plan.table is not None and plan.table.exists:
            warnings.append('namespace %s has rules of ours in the nftables table %s; they are left as '
                            'they are' % (plan.namespace or '(own)', nft.TABLE_REF))
        return 'iptables'
    if plan.table is not None and plan.table.exists:
        return 'nftables'
    if ours_in_iptables or not nft_ok:
        if not plan.views:
            raise ValidationError('backend', requested, 'neither nft nor iptables-restore can be used')
        return 'iptables'
    if any(view.variant == 'legacy' and view.has_content() for view in plan.views.values()):
        return 'iptables'
    return 'nftables'


def plan_namespace(plan, rules, params, warnings):
    runner = plan.runner
    plan.views = ipt.read_views(runner)
    nft_ok = nft.nft_available(runner)
    plan.table = nft.read_table(runner) if nft_ok else None
    plan.backend = choose_backend(params['backend'], plan, nft_ok, warnings)
    mine = [rule for rule in rules if rule.namespace == plan.namespace]
    policy = params.get('forward_policy')
    if plan.backend == 'iptables':
        _plan_iptables(plan, mine, rules, params, policy)
    else:
        _plan_nftables(plan, mine, rules, params, policy)
    if nft_ok:
        for where in nft.foreign_forward_drops(runner):
            warnings.append('namespace %s: the nft chain %s drops forwarded packets by policy; accepts of '
                            'ours cannot override it' % (plan.namespace or '(own)', where))
    # Policies show in the diff only when they change.
    plan.before.extend(change[0] for tx in plan.transactions for change in tx.policies)


def _plan_iptables(plan, mine, rules, params, policy):
    chosen = dict((family, ipt.choose_view(plan.views, family)) for family in (4, 6))
    current = [entry for view in chosen.values() if view for entry in view.entries()]
    desired = iptables_entries(mine)
    ids = managed_ids(rules, current, params['purge'], plan.namespace)
    keep, remove, add = plan_entries(current, desired, ids)
    plan.kept_entries, plan.removed_entries, plan.added_entries = keep, remove, add
    for family in (4, 6):
        view = chosen[family]
        pick = [e for e in add if e.family == family]
        if view is None:
            if pick:
                raise ValidationError('backend', 'iptables', '%s is not installed'
                                      % ipt.tool(family, None, 'restore'))
            continue
        plan.before.extend(ipt.current_lines(view))
        plan.transactions.extend(ipt.plan_view(
            view, [e for e in keep if e.family == family], [e for e in remove if e.family == family], pick,
            policy=policy.upper() if policy else None))


def _plan_nftables(plan, mine, rules, params, policy):
    state = plan.table
    current = state.entries
    desired = nft_entries(mine)
    ids = managed_ids(rules, current, params['purge'], plan.namespace)
    keep, remove, add = plan_entries(current, desired, ids)
    plan.kept_entries, plan.removed_entries, plan.added_entries = keep, remove, add
    plan.before.extend(nft.current_lines(state))
    plan.transactions.extend(nft.plan_table(state, keep, remove, add, policy))
    plan.transactions.extend(_mirror_forward(plan, mine, rules, params, policy))


def _mirror_forward(plan, mine, rules, params, policy):
    """FORWARD accepts written into iptables where its FORWARD chain can drop (and removed
    where it no longer can): an accept in our nft table alone would not let packets through."""
    transactions = []
    wanted = iptables_entries(mine, roles=('forward',))
    for (family, variant), view in sorted(plan.views.items(), key=ipt.view_order):
        filter_table = view.table('filter')
        view_policy = None
        if policy == 'accept' and 'FORWARD' in filter_table['chains'] and view.policy() != 'ACCEPT':
            view_policy = 'ACCEPT'
        restrictive = 'FORWARD' in filter_table['chains'] and view.forward_restrictive(view_policy)
        current = [entry for entry in view.entries() if entry.table == 'filter']
        if not restrictive and not current and not view_policy:
            continue
        desired = [entry for entry in wanted if entry.family == family] if restrictive else []
        ids = managed_ids(rules, current, params['purge'], plan.namespace)
        keep, remove, add = plan_entries(current, desired, ids)
        plan.before.extend(line for line in ipt.current_lines(view) if ' filter: ' in line)
        transactions.extend(ipt.plan_view(view, keep, remove, add, policy=view_policy, tables=('filter',)))
    return transactions


def local_addresses(namespace):
    """Addresses of the namespace's interfaces (a DNAT without destination publishes on them)."""
    result = set()
    with iproute(namespace) as ipr:
        for msg in ipr.get_addr():
            value = msg.get_attr('IFA_LOCAL') or msg.get_attr('IFA_ADDRESS')
            if value:
                result.add(ipaddress.ip_address(value.split('%')[0]))
    return result


def clean_conntrack(plan, rules):
    """Delete the conntrack entries the applied change made stale; returns the count."""
    plan.cleanups = conntrack_cleanups(rules, plan.removed_entries, plan.added_entries, plan.namespace,
                                       kept=plan.kept_entries)
    if not plan.cleanups:
        return 0
    locals_ = local_addresses(plan.namespace) if any(c.destination is None for c in plan.cleanups) else set()
    deleted = 0
    done = set()
    for family in sorted(set(c.family for c in plan.cleanups)):
        entries = conntrack.list_entries(plan.namespace, family)
        for cleanup in (c for c in plan.cleanups if c.family == family):
            for entry in stale_entries(cleanup, entries, locals_):
                orig, reply = entry['original'], entry['reply']
                key = (cleanup.protocol, orig['dst'], orig['dport'], reply['src'], reply.get('sport'))
                if key in done:
                    continue
                done.add(key)
                deleted += conntrack.delete_entries(plan.namespace, family, protocol=cleanup.protocol,
                                                    orig_dst=orig['dst'], orig_dport=orig['dport'],
                                                    reply_src=reply['src'], reply_sport=reply.get('sport'))
    return deleted


def restore_namespace(plan):
    """Undo an applied plan: re-read and write the lines and policies found before."""
    views = ipt.read_views(plan.runner)
    for (family, variant), old in plan.views.items():
        new = views.get((family, variant))
        if new is None:
            continue
        current = new.entries()
        before = old.entries()
        ids = set(e.rule_id for e in current + before)
        keep, remove, add = plan_entries(current, before, ids)
        policy = old.policy() if new.policy() != old.policy() else None
        for tx in ipt.plan_view(new, keep, remove, add, policy=policy):
            if tx.guard is None or tx.guard(plan.runner):
                plan.runner.run(tx.argv, data=tx.data)
    if plan.table is not None and plan.backend == 'nftables':
        state = nft.read_table(plan.runner)
        ids = set(e.rule_id for e in state.entries + plan.table.entries)
        keep, remove, add = plan_entries(state.entries, plan.table.entries, ids)
        policy = plan.table.policy() if plan.table.exists else 'accept'
        for tx in nft.plan_table(state, keep, remove, add, policy):
            plan.runner.run(tx.argv, data=tx.data)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[('rules', option) for option in RULE_OPTIONS],
        required_by=dict((option, 'kind') for option in RULE_OPTIONS if option != 'kind'),
        supports_check_mode=True,
    )
    module.run_command_environ_update = COMMAND_ENVIRON
    require_pyroute2(module)
    params = module.params

    try:
        rules = parse_rules(wanted_items(params), default_namespace=params.get('namespace'))
    except ValidationError as exc:
        errors = getattr(exc, 'errors', [exc])
        fail_from_exception(module, exc, errors=[str(error) for error in errors])

    acquire_state_lock(module)
    warnings = []
    plans = []
    try:
        runners = [(name, NetnsRunner(module, name)) for name in call_namespaces(rules, params)]
        for name, runner in runners:
            plan = NamespacePlan(name, runner)
            plan_namespace(plan, rules, params, warnings)
            plans.append(plan)
    except Exception as exc:  # nothing has been changed yet
        fail_from_exception(module, exc)

    rollback = Rollback()
    if not module.check_mode:
        try:
            for plan in plans:
                for tx in plan.transactions:
                    if tx.guard is not None and not tx.guard(plan.runner):
                        continue
                    plan.runner.run(tx.argv, data=tx.data)
                    if not plan.applied:
                        plan.applied = True
                        rollback.register('restore the rules of namespace %s' % (plan.namespace or '(own)'),
                                          restore_namespace, plan)
        except Exception as exc:
            fail_from_exception(module, exc, rollback)
        if params['conntrack_cleanup']:
            for plan in plans:
                try:
                    plan.conntrack_deleted = clean_conntrack(plan, rules)
                except Exception as exc:  # the rules are right; report, do not undo them
                    warnings.append('namespace %s: deleting stale conntrack entries failed: %s'
                                    % (plan.namespace or '(own)', exc))

    for warning in warnings:
        module.warn(warning)
    module.exit_json(**build_result(module, plans))


def build_result(module, plans):
    report = Report()
    for plan in plans:
        after = list(plan.before)
        for line in plan.rules_removed + [policy[0] for tx in plan.transactions for policy in tx.policies]:
            if line in after:
                after.remove(line)
        after.extend(plan.rules_added + [policy[1] for tx in plan.transactions for policy in tx.policies])
        report.before.extend(plan.before)
        report.after.extend(after)
        report.command(*plan.commands())
    backends = []
    for plan in plans:
        if plan.backend not in backends:
            backends.append(plan.backend)
    return report.result(
        module, header='nat rules',
        backend=','.join(backends),
        rules_added=[line for plan in plans for line in plan.rules_added],
        rules_removed=[line for plan in plans for line in plan.rules_removed],
        conntrack_deleted=sum(plan.conntrack_deleted for plan in plans),
        namespaces=[dict(namespace=plan.namespace, backend=plan.backend, changed=bool(plan.transactions),
                         rules_added=plan.rules_added, rules_removed=plan.rules_removed,
                         conntrack_deleted=plan.conntrack_deleted) for plan in plans],
    )


if __name__ == '__main__':
    main()
