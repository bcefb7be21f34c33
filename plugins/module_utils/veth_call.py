# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the veth module does, callable in-process: validate, read, plan and apply veth pairs
(plugins/modules/veth.py and plugins/modules/netns_topology.py run it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os

from ansible_collections.linuxnet.netns.plugins.module_utils.common import (
    KindError, Report, check_errors, collect_items)
from ansible_collections.linuxnet.netns.plugins.module_utils.links import (
    IPV6_MIN_MTU, REQUEST_WINDOW, VETH_DEFAULT_MTU, LinkOperationError, LinkState, RouteSocket,
    address_add_command, address_changes, address_del_command, address_request, delete_links,
    describe_errno, ip_command, is_link_local, link_set_commands, link_set_request, netnsid_of,
    read_links, read_namespace_state, sorted_addresses, veth_create_request)
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    entered, list_namespaces, namespace_exists, namespace_path)
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import (
    ValidationError, check_ifname, check_interface_address, check_netns_name)

ITEM_KEYS = ('name', 'peer', 'namespace', 'peer_namespace', 'addresses', 'peer_addresses', 'mtu',
             'up', 'state', 'purge_addresses', 'recreate')
# Top-level options that act as defaults for list items.
TOP_DEFAULTS = ('namespace', 'peer_namespace', 'mtu', 'up', 'state', 'purge_addresses', 'recreate')
MTU_MIN = 68
MTU_MAX = 65535
OWN_NS_PATH = '/proc/self/ns/net'


def argument_spec():
    item = dict(
        name=dict(type='str', required=True),
        peer=dict(type='str'),
        namespace=dict(type='str'),
        peer_namespace=dict(type='str'),
        addresses=dict(type='list', elements='str'),
        peer_addresses=dict(type='list', elements='str'),
        mtu=dict(type='int'),
        up=dict(type='bool'),
        state=dict(type='str', choices=['present', 'absent']),
        purge_addresses=dict(type='bool'),
        recreate=dict(type='bool'),
    )
    return dict(
        pairs=dict(type='list', elements='dict', options=item),
        name=dict(type='str'),
        peer=dict(type='str'),
        namespace=dict(type='str'),
        peer_namespace=dict(type='str'),
        addresses=dict(type='list', elements='str'),
        peer_addresses=dict(type='list', elements='str'),
        mtu=dict(type='int'),
        up=dict(type='bool', default=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        purge_addresses=dict(type='bool', default=False),
        recreate=dict(type='bool', default=False),
    )


# --- input -------------------------------------------------------------------------

class PairSpec(object):
    """One pair as the user asked for it, validated."""

    def __init__(self, field, name, peer, namespace, peer_namespace, addresses=None,
                 peer_addresses=None, mtu=None, up=True, state='present', purge=False,
                 recreate=False):
        self.field = field  # 'pairs[3].' or '' (top-level options)
        self.name = name
        self.peer = peer
        self.namespace = namespace
        self.peer_namespace = peer_namespace
        self.addresses = addresses
        self.peer_addresses = peer_addresses
        self.mtu = mtu
        self.up = up
        self.state = state
        self.purge = purge
        self.recreate = recreate


def validate_pairs(params):
    """(pairs, errors): every pair of the call validated, and every ValidationError
    found (all of them, so one run tells the user everything to fix)."""
    errors = []
    specs = []
    for prefix, item in collect_items(params, 'pairs', ITEM_KEYS, defaults_from_top=TOP_DEFAULTS):
        spec, item_errors = validate_pair(prefix, item)
        errors.extend(item_errors)
        if spec is not None:
            specs.append(spec)
    if not errors:
        errors.extend(duplicate_ends(specs))
    return specs, errors


def validate_pair(prefix, item):
    """(PairSpec or None, errors) for one item."""
    errors = []

    def check(func, field, *args):
        try:
            return func(prefix + field, *args)
        except ValidationError as exc:
            errors.append(exc)
            return None

    state = item.get('state') or 'present'
    name = check(check_ifname, 'name', item.get('name'))
    peer = item.get('peer')
    if peer is not None:
        peer = check(check_ifname, 'peer', peer)
    elif state == 'present':
        errors.append(ValidationError(prefix + 'peer', None, 'the peer name is required when state is present'))
    namespace = item.get('namespace')
    if namespace is not None:
        namespace = check(check_netns_name, 'namespace', namespace)
    peer_namespace = item.get('peer_namespace')
    if peer_namespace is not None:
        peer_namespace = check(check_netns_name, 'peer_namespace', peer_namespace)
    else:
        peer_namespace = namespace
    addresses = check(check_address_list, 'addresses', item.get('addresses'))
    peer_addresses = check(check_address_list, 'peer_addresses', item.get('peer_addresses'))
    mtu = check(check_mtu, 'mtu', item.get('mtu'), (addresses or set()) | (peer_addresses or set()))
    if name is not None and name == peer and namespace == peer_namespace:
        errors.append(ValidationError(prefix + 'peer', peer, 'both ends of a pair in one namespace need different names'))
    if errors:
        return None, errors
    return PairSpec(prefix, name, peer, namespace, peer_namespace, addresses, peer_addresses, mtu,
                    True if item.get('up') is None else item['up'], state,
                    bool(item.get('purge_addresses')), bool(item.get('recreate'))), []


def check_address_list(field, values):
    """A list of addresses with prefix length; None (not managed) stays None."""
    if values is None:
        return None
    result = set()
    by_ip = {}
    for index, value in enumerate(values):
        item_field = '%s[%d]' % (field, index)
        iface = check_interface_address(item_field, value)
        if is_link_local(iface):
            raise ValidationError(item_field, value, 'IPv6 link-local addresses (fe80::/10) are managed by the kernel')
        if iface.ip in by_ip and by_ip[iface.ip] != iface:
            raise ValidationError(item_field, value, 'the same address is already listed as %s' % by_ip[iface.ip])
        by_ip[iface.ip] = iface
        result.add(iface)
    return result


def check_mtu(field, value, addresses):
    if value is None:
        return None
    if not MTU_MIN <= value <= MTU_MAX:
        raise ValidationError(field, value, 'the MTU must be from %d to %d' % (MTU_MIN, MTU_MAX))
    if value < IPV6_MIN_MTU and any(a.version == 6 for a in addresses):
        raise ValidationError(field, value, 'IPv6 needs an MTU of at least %d (the pair has IPv6 addresses)' % IPV6_MIN_MTU)
    return value


def duplicate_ends(specs):
    """An interface (namespace, name) may be named by one pair end only."""
    errors = []
    seen = {}
    for spec in specs:
        ends = [('name', spec.namespace, spec.name)]
        if spec.peer is not None:
            ends.append(('peer', spec.peer_namespace, spec.peer))
        for field, namespace, ifname in ends:
            key = (namespace, ifname)
            if key in seen:
                errors.append(ValidationError(spec.field + field, ifname, 'interface %s is already named by %s'
                                              % (end_label(ifname, namespace), seen[key])))
            else:
                seen[key] = spec.field + field
    return errors


# --- labels and views --------------------------------------------------------------

def end_label(ifname, namespace):
    """``veth1@ns-a``; an end in the module's own namespace is just ``veth1``."""
    return '%s@%s' % (ifname, namespace) if namespace else ifname


def pair_view(name, namespace, peer, peer_namespace, mtu, peer_mtu, up, peer_up, addresses, peer_addresses):
    return dict(name=name, namespace=namespace, kind='veth', peer=peer, peer_namespace=peer_namespace,
                mtu=mtu, peer_mtu=peer_mtu, up=up, peer_up=peer_up,
                addresses=[str(a) for a in sorted_addresses(addresses)],
                peer_addresses=[str(a) for a in sorted_addresses(peer_addresses)])


def pair_line(view):
    """One diff line per pair:
    ``veth1@ns-a <-> veth2@ns-b mtu=1500 up addresses=[...] peer_addresses=[...]``.
    Values that differ between the ends are shown as ``name-end/peer-end``."""
    if view.get('kind') != 'veth':
        return '%s (%s, not a veth)' % (end_label(view['name'], view['namespace']), view.get('kind') or 'device')

    def both(a, b):
        return '%s' % a if a == b or b is None else '%s/%s' % (a, b)

    def updown(up):
        return None if up is None else ('up' if up else 'down')

    peer = end_label(view['peer'], view['peer_namespace']) if view['peer'] else '?'
    line = '%s <-> %s mtu=%s %s addresses=[%s]' % (
        end_label(view['name'], view['namespace']), peer, both(view['mtu'], view['peer_mtu']),
        both(updown(view['up']), updown(view['peer_up'])), ', '.join(view['addresses']))
    if view['peer_addresses'] is not None:
        line += ' peer_addresses=[%s]' % ', '.join(view['peer_addresses'])
    return line


def link_view(link, namespace, state):
    """A link found under a requested name that is not (or not only) the wanted pair.

    A veth whose peer sits in the same namespace is shown as the full pair; for a peer
    elsewhere only this end is known here.
    """
    if not link.is_veth:
        return dict(name=link.name, namespace=namespace, kind=link.kind or 'device')
    peer = state.by_index.get(link.peer_index) if link.peer_netnsid is None else None
    if peer is not None:
        return pair_view(link.name, namespace, peer.name, namespace, link.mtu, peer.mtu, link.up, peer.up,
                         state.addresses_of(link.name), state.addresses_of(peer.name))
    return dict(name=link.name, namespace=namespace, kind='veth', peer=None, peer_namespace=None,
                mtu=link.mtu, peer_mtu=None, up=link.up, peer_up=None,
                addresses=[str(a) for a in sorted_addresses(state.addresses_of(link.name))],
                peer_addresses=None)


# --- namespaces --------------------------------------------------------------------

class Namespaces(object):
    """The namespaces a call names: which are the module's own, which exist, their fds.

    Keys: None is the module's own namespace; a named namespace that happens to be
    the module's own (a task run through the netns connection plugin) maps to None too,
    so both spellings of one namespace compare equal.
    """

    def __init__(self, names):
        self.own_fd = os.open(OWN_NS_PATH, os.O_RDONLY)
        own = os.fstat(self.own_fd)
        self.own_id = (own.st_dev, own.st_ino)
        self.missing = set()
        self._keys = {}
        for name in set(names):
            if name is None:
                continue
            if not namespace_exists(name):
                self.missing.add(name)
                self._keys[name] = name
                continue
            st = os.stat(namespace_path(name))
            self._keys[name] = None if (st.st_dev, st.st_ino) == self.own_id else name

    def key(self, name):
        return None if name is None else self._keys.get(name, name)

    @contextlib.contextmanager
    def fd(self, key):
        """An fd of namespace ``key`` (for IFLA_NET_NS_FD / RTM_GETNSID), closed after use."""
        if key is None:
            yield self.own_fd
            return
        fd = os.open(namespace_path(key), os.O_RDONLY)
        try:
            yield fd
        finally:
            os.close(fd)

    def peer_fd(self, key, creator_key):
        """The fd to put a new peer into namespace ``key``; None when it stays in the
        creator's namespace."""
        if key == creator_key:
            return _nothing()
        return self.fd(key)

    def close(self):
        os.close(self.own_fd)


@contextlib.contextmanager
def _nothing():
    yield None


# --- planning ----------------------------------------------------------------------

class EndChange(object):
    """What to do to one existing (or just created) end of a pair."""

    def __init__(self, key, namespace, ifname, mtu=None, up=None, remove=(), add=(), created=False):
        self.key = key
        self.namespace = namespace
        self.ifname = ifname
        self.mtu = mtu
        self.up = up
        self.remove = list(remove)
        self.add = list(add)
        self.created = created

    @property
    def empty(self):
        return self.mtu is None and self.up is None and not self.remove and not self.add

    def commands(self):
        commands = link_set_commands(self.namespace, self.ifname, mtu=self.mtu, up=self.up)
        commands += [address_del_command(self.namespace, self.ifname, a) for a in self.remove]
        commands += [address_add_command(self.namespace, self.ifname, a) for a in self.add]
        return commands


class PairPlan(object):
    def __init__(self, spec, key, peer_key):
        self.spec = spec
        self.key = key
        self.peer_key = peer_key
        self.before = None
        self.after = None
        self.conflict = None
        self.delete = []      # (key, namespace label, Link) to delete first
        self.create = False
        self.ends = []        # EndChange
        self.commands = []

    @property
    def changed(self):
        return bool(self.commands)

    def lines(self):
        return (pair_line(self.before) if self.before else None,
                pair_line(self.after) if self.after else None)


def veth_paired(link, peer_link, same_namespace, expected_netnsid):
    """Whether ``link`` and ``peer_link`` are the two ends of one veth pair.

    Each end's IFLA_LINK names the other's ifindex. Indexes are per namespace, so the
    namespace is checked too: a peer in the same namespace carries no netnsid, a peer
    elsewhere carries the id the peer's namespace has in ours (``expected_netnsid``).
    """
    if link is None or peer_link is None or not (link.is_veth and peer_link.is_veth):
        return False
    if link.peer_index != peer_link.index or peer_link.peer_index != link.index:
        return False
    if same_namespace:
        return link.peer_netnsid is None
    return link.peer_netnsid is not None and link.peer_netnsid == expected_netnsid


def plan_pair(spec, key, peer_key, state, peer_state, netnsid, locate_peer=None):
    """Compare one wanted pair with the namespaces' state; return a PairPlan.

    ``state``/``peer_state`` are the LinkState of the two namespaces, ``netnsid``
    the id of the peer namespace as seen from the first (None if unassigned or the
    same). ``locate_peer(key, link)`` says where a veth's actual peer is, as
    (ifname, namespace), for conflict messages.
    """
    plan = PairPlan(spec, key, peer_key)
    link = state.link(spec.name)
    peer_link = peer_state.link(spec.peer) if spec.peer is not None else None
    if spec.state == 'absent':
        return plan_absent(plan, link, state, peer_link, peer_state, netnsid)
    if link is not None and veth_paired(link, peer_link, key == peer_key, netnsid):
        return plan_update(plan, link, peer_link, state, peer_state)
    if link is None and peer_link is None:
        return plan_create(plan)
    return plan_conflict(plan, link, peer_link, state, peer_state, locate_peer)


def plan_conflict(plan, link, peer_link, state, peer_state, locate_peer):
    """The name or the peer name is taken by something that is not this pair: fail,
    or with recreate delete what is in the way and create the pair."""
    spec = plan.spec
    if link is not None:
        found, found_key, found_namespace, found_state = link, plan.key, spec.namespace, state
    else:
        found, found_key, found_namespace, found_state = peer_link, plan.peer_key, spec.peer_namespace, peer_state
    where = locate_peer(found_key, found) if found.is_veth and locate_peer is not None else None
    plan.before = link_view(found, found_namespace, found_state)
    if where:
        plan.before['peer'], plan.before['peer_namespace'] = where
    if not spec.recreate and not orphaned_by_unnamed_namespace(link, peer_link, where):
        plan.conflict = describe_conflict(spec, link, found, where)
        plan.after = plan.before
        return plan
    if link is not None:
        plan.delete.append((plan.key, spec.namespace, link))
        plan.commands.append(ip_command(spec.namespace, 'link', 'del', link.name))
    if peer_link is not None:
        plan.delete.append((plan.peer_key, spec.peer_namespace, peer_link))
        plan.commands.append(ip_command(spec.peer_namespace, 'link', 'del', peer_link.name))
    return plan_create(plan)


def orphaned_by_unnamed_namespace(link, peer_link, where):
    """Our end exists but its peer lives in a namespace no name in /run/netns points to
    (the namespace was deleted by name while a process keeps it alive), and the wanted
    peer name is free. Nothing anyone can still address is harmed by replacing it, so
    this is repaired without O(recreate)."""
    return link is not None and link.is_veth and peer_link is None and where is None


def describe_conflict(spec, link, found, where):
    """What is in the way, in words: ``found`` is ``link`` if the first end exists,
    else the link holding the peer name; ``where`` its actual peer if it is a veth."""
    name = end_label(spec.name, spec.namespace)
    peer = end_label(spec.peer, spec.peer_namespace)
    kind = found.kind or 'device without a link kind'
    actual = end_label(*where) if where else 'an interface in another namespace'
    if link is not None:
        if not found.is_veth:
            return '%s exists and is a %s, not a veth' % (name, kind)
        return '%s exists but its peer is %s, not %s' % (name, actual, peer)
    if not found.is_veth:
        return '%s does not exist but the peer name %s is taken by a %s' % (name, peer, kind)
    return '%s does not exist but %s is already a veth paired with %s' % (name, peer, actual)


def plan_absent(plan, link, state, peer_link=None, peer_state=None, netnsid=None):
    """Delete the first end if it is a veth (its peer goes with it); a link of another
    kind under that name is not ours to delete."""
    spec = plan.spec
    if link is None:
        return plan
    if not link.is_veth:
        plan.before = plan.after = link_view(link, spec.namespace, state)
        plan.conflict = '%s is a %s, not a veth; refusing to delete it' % (
            end_label(spec.name, spec.namespace), link.kind or 'device without a link kind')
        return plan
    if peer_state is not None and veth_paired(link, peer_link, plan.key == plan.peer_key, netnsid):
        plan.before = pair_view(spec.name, spec.namespace, spec.peer, spec.peer_namespace, link.mtu,
                                peer_link.mtu, link.up, peer_link.up, state.addresses_of(link.name),
                                peer_state.addresses_of(peer_link.name))
    else:
        plan.before = link_view(link, spec.namespace, state)
    plan.delete.append((plan.key, spec.namespace, link))
    plan.commands.append(ip_command(spec.namespace, 'link', 'del', link.name))
    return plan


def plan_create(plan):
    """Create the pair; the end in the creating namespace comes up with the creation
    request itself, the other end is configured in its own namespace afterwards."""
    spec = plan.spec
    plan.create = True
    plan.commands.append(create_command(plan))
    mtu = spec.mtu if spec.mtu is not None else VETH_DEFAULT_MTU
    addresses = spec.addresses or set()
    peer_addresses = spec.peer_addresses or set()
    local_is_peer = mirrored(plan)
    for is_peer, key, namespace, ifname, addrs in (
            (False, plan.key, spec.namespace, spec.name, addresses),
            (True, plan.peer_key, spec.peer_namespace, spec.peer, peer_addresses)):
        up = True if spec.up and is_peer != local_is_peer else None
        end = EndChange(key, namespace, ifname, up=up, add=sorted_addresses(addrs), created=True)
        if not end.empty:
            plan.ends.append(end)
            plan.commands.extend(end.commands())
    plan.after = pair_view(spec.name, spec.namespace, spec.peer, spec.peer_namespace, mtu, mtu,
                           spec.up, spec.up, addresses, peer_addresses)
    return plan


def create_command(plan):
    """``ip link add`` as an operator would type it (mirrored like creator_of)."""
    spec = plan.spec
    local, remote = creator_of(plan)[1:3]
    if mirrored(plan):
        creator_ns, remote_ns = spec.peer_namespace, spec.namespace
    else:
        creator_ns, remote_ns = spec.namespace, spec.peer_namespace
    mtu = ['mtu', spec.mtu] if spec.mtu is not None else []
    args = ['link', 'add', local] + (['up'] if spec.up else []) + mtu
    args += ['type', 'veth', 'peer', 'name', remote] + mtu
    if plan.peer_key != plan.key:
        args += ['netns', remote_ns]
    return ip_command(creator_ns, *args)


def plan_update(plan, link, peer_link, state, peer_state):
    spec = plan.spec
    current = state.addresses_of(link.name)
    peer_current = peer_state.addresses_of(peer_link.name)
    plan.before = pair_view(spec.name, spec.namespace, spec.peer, spec.peer_namespace, link.mtu,
                            peer_link.mtu, link.up, peer_link.up, current, peer_current)
    after = {}
    for role, key, namespace, end_link, addrs, wanted in (
            ('name', plan.key, spec.namespace, link, current, spec.addresses),
            ('peer', plan.peer_key, spec.peer_namespace, peer_link, peer_current, spec.peer_addresses)):
        remove, add = address_changes(addrs, wanted, spec.purge)
        end = EndChange(key, namespace, end_link.name,
                        mtu=spec.mtu if spec.mtu is not None and spec.mtu != end_link.mtu else None,
                        up=spec.up if spec.up != end_link.up else None,
                        remove=remove, add=add)
        after[role] = ((end.mtu or end_link.mtu), spec.up, (set(addrs) - set(remove)) | set(add))
        if not end.empty:
            plan.ends.append(end)
            plan.commands.extend(end.commands())
    plan.after = pair_view(spec.name, spec.namespace, spec.peer, spec.peer_namespace,
                           after['name'][0], after['peer'][0], after['name'][1], after['peer'][1],
                           after['name'][2], after['peer'][2])
    return plan


# --- reading the kernel ------------------------------------------------------------

class KernelState(object):
    """Each namespace of the call read once: links, addresses, and the netnsids needed
    to tell where a veth's peer lives."""

    def __init__(self, namespaces):
        self.namespaces = namespaces
        self.states = {}
        self.netnsids = {}

    def read(self, specs):
        keys = []
        for spec in specs:
            # An absent pair without a peer name only needs its first end's namespace.
            wanted = [spec.namespace] if spec.peer is None else [spec.namespace, spec.peer_namespace]
            for key in (self.namespaces.key(name) for name in wanted):
                if key not in keys:
                    keys.append(key)
        roots = {}
        for spec in specs:
            roots.setdefault(self.namespaces.key(spec.namespace), []).append(spec)
        for key in keys:
            if key is not None and key in self.namespaces.missing:
                self.states[key] = LinkState()
                continue
            with entered(key), RouteSocket() as rtnl:
                state = read_namespace_state(rtnl)
                self.states[key] = state
                self._read_netnsids(rtnl, key, state, roots.get(key, ()))

    def _read_netnsids(self, rtnl, key, state, specs):
        """For every pair rooted here whose first end is a veth with a peer elsewhere:
        the id of the requested peer namespace, as this namespace sees it."""
        for spec in specs:
            link = state.link(spec.name)
            peer_key = self.namespaces.key(spec.peer_namespace)
            if (spec.peer is None or link is None or not link.is_veth or link.peer_netnsid is None
                    or peer_key == key or (key, peer_key) in self.netnsids
                    or peer_key in self.namespaces.missing):
                continue
            with self.namespaces.fd(peer_key) as fd:
                self.netnsids[(key, peer_key)] = netnsid_of(fd, rtnl)

    def state(self, key):
        return self.states.get(key) or LinkState()

    def netnsid(self, key, peer_key):
        return self.netnsids.get((key, peer_key))

    def locate_peer(self, key, link):
        """(ifname, namespace) of the actual peer of veth ``link`` in namespace ``key``.

        Searches every named namespace for the one whose netnsid matches; only used
        for conflict messages, so its cost does not matter.
        """
        if link.peer_netnsid is None:
            peer = self.state(key).by_index.get(link.peer_index)
            return (peer.name, key) if peer else None
        candidates = [name for name in [None] + list_namespaces() if self.namespaces.key(name) != key]
        with entered(key), RouteSocket() as rtnl:
            matches = [name for name in candidates if self._has_netnsid(rtnl, name, link.peer_netnsid)]
        if not matches:
            return None
        with entered(self.namespaces.key(matches[0])):
            for peer in read_links():
                if peer.index == link.peer_index:
                    return peer.name, matches[0]
        return None

    def close(self):
        self.namespaces.close()

    def _has_netnsid(self, rtnl, name, nsid):
        try:
            with self.namespaces.fd(self.namespaces.key(name)) as fd:
                return netnsid_of(fd, rtnl) == nsid
        except OSError:
            return False  # removed since it was listed


def make_plans(specs, namespaces, kernel):
    plans = []
    for spec in specs:
        key = namespaces.key(spec.namespace)
        peer_key = namespaces.key(spec.peer_namespace)
        plans.append(plan_pair(spec, key, peer_key, kernel.state(key), kernel.state(peer_key),
                               kernel.netnsid(key, peer_key), kernel.locate_peer))
    return plans


# --- writing -----------------------------------------------------------------------
#
# Every write goes through a raw NETLINK_ROUTE socket per namespace and phase, many
# requests per datagram (RouteSocket.run_requests): pyroute2 costs 2-5 ms per request
# on this machine, ten times what the kernel needs to create a veth pair.

def group_by(items, keyfunc):
    groups = []
    index = {}
    for item in items:
        key = keyfunc(item)
        if key not in index:
            index[key] = len(groups)
            groups.append((key, []))
        groups[index[key]][1].append(item)
    return groups


def chunks(items, size):
    return [items[start:start + size] for start in range(0, len(items), size)]


def first_failure(steps, codes):
    """LinkOperationError for the first request that failed, or None; ``steps`` holds
    what each request was doing, in words."""
    for what, code in zip(steps, codes):
        if code:
            return LinkOperationError('%s: %s' % (what, describe_errno(code)))
    return None


class Applier(object):
    """Applies the plans: deletions, creations, then per-end changes, one netlink
    socket per namespace and phase. Everything created is registered for rollback.

    The kernel runs a batch to its end even after a failed request; every request
    that succeeded is recorded before the first failure is raised, so rollback also
    removes what a batch created after the failing request."""

    def __init__(self, namespaces, rollback):
        self.namespaces = namespaces
        self.created = []          # (creator key, local ifname)
        self.added = []            # (key, ifname, address) on links that existed before
        rollback.register('delete the addresses this call added', self._undo_addresses)
        rollback.register('delete the veth pairs this call created', self._undo_pairs)

    def apply(self, plans):
        self._delete([item for plan in plans for item in plan.delete])
        self._create([plan for plan in plans if plan.create])
        self._configure([end for plan in plans for end in plan.ends])

    def _delete(self, deletions):
        for key, items in group_by(deletions, lambda item: item[0]):
            with entered(key), RouteSocket() as rtnl:
                current = dict((link.name, link) for link in read_links(rtnl))
                labels = {}
                targets = []
                for dummy_key, namespace, link in items:
                    now = current.get(link.name)
                    if now is None or now.index != link.index:
                        continue  # already gone, e.g. the peer of a pair deleted just before
                    labels[now.index] = end_label(link.name, namespace)
                    targets.append(now)
                failures = delete_links(rtnl, targets)
                if failures:
                    link, code = failures[0]
                    raise LinkOperationError('deleting %s: %s' % (labels[link.index], describe_errno(code)))

    def _create(self, plans):
        for creator, items in group_by(plans, lambda plan: creator_of(plan)[0]):
            with entered(creator), RouteSocket() as rtnl:
                for window in chunks(items, REQUEST_WINDOW):
                    self._create_window(rtnl, creator, window)

    def _create_window(self, rtnl, creator, plans):
        """One datagram of creation requests; the peer namespaces' fds stay open
        until the kernel has answered."""
        with contextlib.ExitStack() as stack:
            fds = {}
            requests = []
            for plan in plans:
                local, remote, remote_key = creator_of(plan)[1:]
                if remote_key not in fds:
                    fds[remote_key] = stack.enter_context(self.namespaces.peer_fd(remote_key, creator))
                requests.append(veth_create_request(local, remote, fds[remote_key], plan.spec.mtu, plan.spec.up))
            codes = rtnl.run_requests(requests)
        steps = []
        for plan, code in zip(plans, codes):
            if code == 0:
                self.created.append((creator, creator_of(plan)[1]))
            steps.append('creating %s <-> %s' % (end_label(plan.spec.name, plan.spec.namespace),
                                                 end_label(plan.spec.peer, plan.spec.peer_namespace)))
        failure = first_failure(steps, codes)
        if failure is not None:
            raise failure

    def _configure(self, ends):
        for key, items in group_by(ends, lambda end: end.key):
            with entered(key), RouteSocket() as rtnl:
                indexes = dict((link.name, link.index) for link in read_links(rtnl))
                for end in items:
                    if end.ifname not in indexes:
                        raise LinkOperationError('%s vanished while it was being configured'
                                                 % end_label(end.ifname, end.namespace))
                # Link settings and removals first, then additions: an address that
                # changes its prefix length must be gone before it is added again, and
                # a failed change stops the call before any address is added.
                self._run(rtnl, self._changes(items, indexes))
                self._run(rtnl, self._additions(key, items, indexes))

    @staticmethod
    def _changes(ends, indexes):
        for end in ends:
            label = end_label(end.ifname, end.namespace)
            index = indexes[end.ifname]
            if end.up is not None or end.mtu is not None:
                yield link_set_request(index, up=end.up, mtu=end.mtu), 'setting %s' % label, None
            for address in end.remove:
                yield (address_request(index, address, add=False),
                       'deleting %s from %s' % (address, label), None)

    @staticmethod
    def _additions(key, ends, indexes):
        for end in ends:
            label = end_label(end.ifname, end.namespace)
            for address in end.add:
                undo = None if end.created else (key, end.ifname, address)
                yield (address_request(indexes[end.ifname], address),
                       'adding %s to %s' % (address, label), undo)

    def _run(self, rtnl, steps):
        """Send (request, description, undo record) steps; record the undo records of
        those that succeeded, then raise for the first failure."""
        steps = list(steps)
        codes = rtnl.run_requests([request for request, dummy_what, dummy_undo in steps])
        for (dummy_request, dummy_what, undo), code in zip(steps, codes):
            if code == 0 and undo is not None:
                self.added.append(undo)
        failure = first_failure([what for dummy_request, what, dummy_undo in steps], codes)
        if failure is not None:
            raise failure

    def _undo_pairs(self):
        errors = []
        for key, items in group_by(self.created, lambda item: item[0]):
            names = set(ifname for dummy_key, ifname in items)
            with entered(key), RouteSocket() as rtnl:
                failures = delete_links(rtnl, [link for link in read_links(rtnl) if link.name in names])
            errors.extend('%s: %s' % (end_label(link.name, key), describe_errno(code)) for link, code in failures)
        if errors:
            raise LinkOperationError('could not delete %s' % ', '.join(errors))

    def _undo_addresses(self):
        for key, items in group_by(self.added, lambda item: item[0]):
            with entered(key), RouteSocket() as rtnl:
                indexes = dict((link.name, link.index) for link in read_links(rtnl))
                # A failure means the address is already gone: nothing left to undo.
                rtnl.run_requests([address_request(indexes[ifname], address, add=False)
                                   for dummy_key, ifname, address in items if ifname in indexes])


def mirrored(plan):
    """Whether the pair is created from the peer's namespace: ``netns`` in a creation
    request can name any namespace except the module's own, so a pair whose only
    local end is the peer is created from here, as an operator would too."""
    return plan.peer_key is None and plan.key is not None


def creator_of(plan):
    """(creator key, local name, remote name, remote key) for creating a pair: in the
    first end's namespace with the peer placed directly in the peer namespace
    (IFLA_NET_NS_FD), or the mirror image (see ``mirrored``)."""
    if mirrored(plan):
        return None, plan.spec.peer, plan.spec.name, plan.key
    return plan.key, plan.spec.name, plan.spec.peer, plan.peer_key


# --- module ------------------------------------------------------------------------

def pair_result(plan):
    spec = plan.spec
    return dict(name=spec.name, peer=spec.peer, namespace=spec.namespace, peer_namespace=spec.peer_namespace,
                state=spec.state, changed=plan.changed, before=plan.before, after=plan.after)


def build_report(plans):
    report = Report()
    for plan in plans:
        before, after = plan.lines()
        report.record(before, after, plan.commands)
    return report


def check_namespaces(context, specs, namespaces):
    """A missing namespace fails a present pair, except in check mode (an earlier task
    that check mode skipped may create it); an absent pair in a missing namespace is
    already absent."""
    for spec in specs:
        if spec.state != 'present':
            continue
        for field, name in (('namespace', spec.namespace), ('peer_namespace', spec.peer_namespace)):
            if name is None or name not in namespaces.missing:
                continue
            if not context.check_mode:
                raise ValidationError(spec.field + field, name, 'network namespace %s does not exist '
                                      '(create it first, e.g. with linuxnet.netns.netns)' % name)
            context.warn('%s%s: namespace %s does not exist; check mode assumes it will be created '
                         'before this task runs' % (spec.field, field, name))


def conflict_message(plans):
    conflicts = ['%sname: %s' % (plan.spec.field, plan.conflict) for plan in plans if plan.conflict]
    msg = '; '.join(conflicts) + '; nothing was changed'
    if any(plan.spec.state == 'present' for plan in plans if plan.conflict):
        msg += ' (recreate: true deletes the conflicting links and creates the pair anew)'
    return conflicts, msg


# The argument spec's rules besides the spec itself (AnsibleModule keywords).
ARGUMENT_RULES = dict(
    mutually_exclusive=[('pairs', 'name'), ('pairs', 'peer'), ('pairs', 'addresses'),
                        ('pairs', 'peer_addresses')],
    required_one_of=[('pairs', 'name')],
)


def validate(params):
    specs, errors = validate_pairs(params)
    check_errors(errors)
    return specs


def read(specs, context):
    """The KernelState of every namespace the pairs name; its close() releases their fds."""
    kernel = KernelState(Namespaces([s.namespace for s in specs] + [s.peer_namespace for s in specs]))
    try:
        check_namespaces(context, specs, kernel.namespaces)
        kernel.read(specs)
    except Exception:
        kernel.close()
        raise
    return kernel


class Plan(object):
    """Each pair's plan, the namespaces' fds they are applied through, the report."""

    def __init__(self, pairs, namespaces):
        self.pairs = pairs
        self.namespaces = namespaces
        self.report = build_report(pairs)


def plan(specs, kernel, context):
    pairs = make_plans(specs, kernel.namespaces, kernel)
    if any(pair.conflict for pair in pairs):
        conflicts, msg = conflict_message(pairs)
        raise KindError(msg, conflicts=conflicts, pairs=[pair_result(p) for p in pairs])
    return Plan(pairs, kernel.namespaces)


def apply(plan, context):
    if plan.report.changed:
        Applier(plan.namespaces, context.rollback).apply(plan.pairs)


def result(plan, context):
    return plan.report.result(context.diff, 'veth pairs', pairs=[pair_result(p) for p in plan.pairs])
