# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the nat_rule module does, callable in-process: NAT and FORWARD rules through
iptables-restore or nft (plugins/modules/nat_rule.py and plugins/modules/netns_topology.py run it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from ansible_collections.linuxnet.netns.plugins.module_utils import conntrack
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables as ipt
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_nftables as nft
from ansible_collections.linuxnet.netns.plugins.module_utils.common import (
    Report,
    collect_items,
    failure,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.kind import check_pyroute2
from ansible_collections.linuxnet.netns.plugins.module_utils.links import read_addresses
from ansible_collections.linuxnet.netns.plugins.module_utils.nat_conntrack import conntrack_cleanups, parse_flows, stale_entries
from ansible_collections.linuxnet.netns.plugins.module_utils.nat_iptables import iptables_entries
from ansible_collections.linuxnet.netns.plugins.module_utils.nat_model import (
    RULE_KEYS,
    in_desired_order,
    managed_ids,
    parse_rules,
    plan_entries,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.nat_nftables import nft_entries
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import entered
from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import NetnsRunner
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError

RULE_OPTIONS = tuple(key for key in RULE_KEYS if key != 'state')


def argument_spec():
    rule = dict(
        kind=dict(type='str', choices=['masquerade', 'snat', 'dnat', 'isolate']),
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
        random_fully=dict(type='bool'),
        allow_from=dict(type='list', elements='str'),
        allow_ports=dict(type='list', elements='dict', options=dict(
            protocol=dict(type='str', choices=['tcp', 'udp', 'sctp'], default='tcp'),
            port=dict(type='raw', required=True),
            source=dict(type='str'))),
        endpoints=dict(type='list', elements='dict', options=dict(
            address=dict(type='str', required=True),
            port=dict(type='int'))),
        balance=dict(type='str', choices=['random', 'round_robin']),
        affinity_timeout=dict(type='int'),
        source_nat=dict(type='str', choices=['none', 'masquerade', 'snat']),
    )
    item = dict(rule, namespace=dict(type='str'), state=dict(type='str', choices=['present', 'absent']))
    item['kind'] = dict(type='str', choices=['masquerade', 'snat', 'dnat', 'isolate'], required=True)
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


class NamespaceState(object):
    """One namespace's rules as read: the iptables views, nft's chains and our nft table
    (None where nft cannot list the ruleset)."""

    def __init__(self, namespace, runner):
        self.namespace = namespace
        self.runner = runner
        self.views = ipt.read_views(runner)
        self.chains = nft.list_chains(runner)
        self.table = nft.read_table(runner) if self.chains is not None else None


class NamespacePlan(object):
    """Everything one namespace needs: its runner, the backend chosen, the state read,
    the transactions to apply, and what they add and remove."""

    def __init__(self, current):
        self.namespace = current.namespace
        self.runner = current.runner
        self.backend = None
        self.views = current.views
        self.chains = current.chains
        self.table = current.table
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
    nft_ok = plan.chains is not None
    plan.backend = choose_backend(params['backend'], plan, nft_ok, warnings)
    mine = [rule for rule in rules if rule.namespace == plan.namespace]
    policy = params.get('forward_policy')
    if plan.backend == 'iptables':
        _plan_iptables(plan, mine, rules, params, policy)
    else:
        _plan_nftables(plan, mine, rules, params, policy)
    if nft_ok:
        for where in nft.foreign_forward_drops(plan.chains):
            warnings.append('namespace %s: the nft chain %s drops forwarded packets by policy; accepts of '
                            'ours cannot override it' % (plan.namespace or '(own)', where))
    # Policies show in the diff only when they change.
    plan.before.extend(change[0] for tx in plan.transactions for change in tx.policies)


def policy_families(rules):
    """The address families forward_policy applies to: those of the call's rules in this
    namespace (an IPv4 topology leaves the ip6 FORWARD chain alone), both without rules."""
    return set(rule.family for rule in rules if rule.present and rule.family) or set([4, 6])


def _plan_iptables(plan, mine, rules, params, policy):
    chosen = dict((family, ipt.choose_view(plan.views, family)) for family in (4, 6))
    current = [entry for view in chosen.values() if view for entry in view.entries()]
    desired = iptables_entries(mine)
    ids = managed_ids(rules, current, params['purge'], plan.namespace)
    keep, remove, add = plan_entries(current, desired, ids)
    plan.kept_entries, plan.removed_entries, plan.added_entries = keep, remove, add
    keep, remove, add = in_desired_order(desired, keep, remove, add, ids)
    for family in (4, 6):
        view = chosen[family]
        pick = [e for e in add if e.family == family]
        if view is None:
            if pick:
                raise ValidationError('backend', 'iptables', '%s is not installed'
                                      % ipt.tool(family, None, 'restore'))
            continue
        plan.before.extend(ipt.current_lines(view))
        family_policy = policy.upper() if policy and family in policy_families(mine) else None
        plan.transactions.extend(ipt.plan_view(
            view, [e for e in keep if e.family == family], [e for e in remove if e.family == family], pick,
            policy=family_policy))


def _plan_nftables(plan, mine, rules, params, policy):
    state = plan.table
    current = state.entries
    desired = nft_entries(mine)
    ids = managed_ids(rules, current, params['purge'], plan.namespace)
    keep, remove, add = plan_entries(current, desired, ids)
    plan.kept_entries, plan.removed_entries, plan.added_entries = keep, remove, add
    keep, remove, add = in_desired_order(desired, keep, remove, add, ids)
    plan.before.extend(nft.current_lines(state))
    if policy and not plan.views:
        raise ValidationError('forward_policy', policy, 'sets the policy of the iptables FORWARD chain, and '
                                                        'iptables is not installed in namespace %s'
                              % (plan.namespace or '(own)'))
    # Our own table never drops by policy: a drop there would stop what other tables accept.
    # An accept policy is only written back over a drop left by an earlier version.
    own_policy = 'accept' if state.exists and state.policy() != 'accept' else None
    plan.transactions.extend(nft.plan_table(state, keep, remove, add, own_policy))
    plan.transactions.extend(_mirror_forward(plan, mine, rules, params, policy))


def _mirror_forward(plan, mine, rules, params, policy):
    """FORWARD accepts written into iptables where its FORWARD chain can drop (and removed
    where it no longer can): an accept in our nft table alone would not let packets through."""
    transactions = []
    wanted = iptables_entries(mine, roles=('forward',))
    families = policy_families(mine)
    chosen = dict((family, ipt.choose_view(plan.views, family)) for family in (4, 6))
    for (family, variant), view in sorted(plan.views.items(), key=ipt.view_order):
        filter_table = view.table('filter')
        view_policy = None
        if policy and family in families and view is chosen[family] and view.policy() != policy.upper():
            view_policy = policy.upper()
        has_forward = 'FORWARD' in filter_table['chains'] or view_policy is not None
        restrictive = has_forward and view.forward_restrictive(view_policy)
        current = [entry for entry in view.entries() if entry.table == 'filter']
        if not restrictive and not current and not view_policy:
            continue
        desired = [entry for entry in wanted if entry.family == family] if restrictive else []
        ids = managed_ids(rules, current, params['purge'], plan.namespace)
        keep, remove, add = in_desired_order(desired, *plan_entries(current, desired, ids), managed_ids=ids)
        plan.before.extend(line for line in ipt.current_lines(view) if ' filter: ' in line)
        transactions.extend(ipt.plan_view(view, keep, remove, add, policy=view_policy, tables=('filter',)))
    return transactions


def local_addresses(namespace):
    """Addresses of the namespace's interfaces (a DNAT without destination publishes on them)."""
    with entered(namespace):
        return set(iface.ip for ifaces in read_addresses().values() for iface in ifaces)


def clean_conntrack(plan, rules):
    """Delete the conntrack entries the applied change made stale; returns the count."""
    plan.cleanups = conntrack_cleanups(rules, plan.removed_entries, plan.added_entries, plan.namespace,
                                       kept=plan.kept_entries)
    if not plan.cleanups:
        return 0
    locals_ = local_addresses(plan.namespace) if any(c.destination is None for c in plan.cleanups) else set()
    stale = {}
    for family in sorted(set(c.family for c in plan.cleanups)):
        flows = parse_flows(conntrack.list_entries(plan.namespace, family))
        for cleanup in (c for c in plan.cleanups if c.family == family):
            stale.update((id(entry), entry) for entry in stale_entries(cleanup, flows, locals_))
    return conntrack.delete_listed(plan.namespace, list(stale.values()))


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


def build_result(diff, plans):
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
        diff, header='nat rules',
        backend=','.join(backends),
        rules_added=[line for plan in plans for line in plan.rules_added],
        rules_removed=[line for plan in plans for line in plan.rules_removed],
        conntrack_deleted=sum(plan.conntrack_deleted for plan in plans),
        namespaces=[dict(namespace=plan.namespace, backend=plan.backend, changed=bool(plan.transactions),
                         rules_added=plan.rules_added, rules_removed=plan.rules_removed,
                         conntrack_deleted=plan.conntrack_deleted) for plan in plans],
    )


# The argument spec's rules besides the spec itself (AnsibleModule keywords).
ARGUMENT_RULES = dict(
    mutually_exclusive=[('rules', option) for option in RULE_OPTIONS],
    required_by=dict((option, 'kind') for option in RULE_OPTIONS if option != 'kind'),
)


# The validated call, and its plan: the namespaces' plans and the warnings to give.
Spec = namedtuple('Spec', 'rules params')
Plan = namedtuple('Plan', 'rules params namespaces warnings')


def validate(params):
    check_pyroute2()
    try:
        rules = parse_rules(wanted_items(params), default_namespace=params.get('namespace'))
    except ValidationError as exc:
        errors = getattr(exc, 'errors', [exc])
        raise failure(exc, errors=[str(error) for error in errors])
    return Spec(rules, params)


def read(spec, context):
    return [NamespaceState(name, NetnsRunner(context.module, name)) for name in call_namespaces(spec.rules, spec.params)]


def plan(spec, current, context):
    call = Plan(spec.rules, spec.params, [NamespacePlan(state) for state in current], [])
    for namespace in call.namespaces:
        plan_namespace(namespace, spec.rules, spec.params, call.warnings)
    return call


def apply(plan, context):
    for namespace in plan.namespaces:
        for tx in namespace.transactions:
            if tx.guard is not None and not tx.guard(namespace.runner):
                continue
            namespace.runner.run(tx.argv, data=tx.data)
            if not namespace.applied:
                namespace.applied = True
                context.rollback.register('restore the rules of namespace %s' % (namespace.namespace or '(own)'),
                                          restore_namespace, namespace)
    if not plan.params['conntrack_cleanup']:
        return
    for namespace in plan.namespaces:
        try:
            namespace.conntrack_deleted = clean_conntrack(namespace, plan.rules)
        except Exception as exc:  # the rules are right; report, do not undo them
            plan.warnings.append('namespace %s: deleting stale conntrack entries failed: %s'
                                 % (namespace.namespace or '(own)', exc))


def result(plan, context):
    for warning in plan.warnings:
        context.warn(warning)
    return build_result(context.diff, plan.namespaces)
