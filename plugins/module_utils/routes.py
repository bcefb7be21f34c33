# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Routes inside a network namespace: the route a user wants (validated without the
kernel), the kernel's routes (read once with plain netlink dumps parsed here), a
comparison on only the fields the user set, and the netlink requests that apply the
difference.

The kernel identifies a route by family, destination, table and metric (and TOS,
which we never set); a second route with the same identity and another gateway is
refused (EEXIST) unless it replaces the first. Everything here follows that model.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import socket
import struct

from ansible_collections.linuxnet.netns.plugins.module_utils.common import format_command
from ansible_collections.linuxnet.netns.plugins.module_utils.links import (
    IFADDRMSG,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    RTM_GETADDR,
    RTM_NEWADDR,
    RouteSocket,
    align,
    attribute,
    describe_errno,
    iter_attributes,
    parse_address,
    read_links,
    route_socket,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import entered
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import (
    ValidationError,
    check_ifname,
    check_ip,
    check_netns_name,
    check_network,
)

FAMILIES = {'ipv4': 4, 'ipv6': 6}
FAMILY_NAMES = {4: 'ipv4', 6: 'ipv6'}
ADDRESS_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
VERSIONS = {socket.AF_INET: 4, socket.AF_INET6: 6}
IP_ADDRESSES = {4: ipaddress.IPv4Address, 6: ipaddress.IPv6Address}
IP_NETWORKS = {4: ipaddress.IPv4Network, 6: ipaddress.IPv6Network}
ADDRESS_LENGTHS = {4: 4, 6: 16}

MAIN_TABLE = 254
TABLE_NAMES = {253: 'default', 254: 'main', 255: 'local'}
UINT32_MAX = 2 ** 32 - 1
# What the kernel stores when a route is added without a metric.
DEFAULT_METRIC = {4: 0, 6: 1024}

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
RTNH_F_ONLINK = 4
RTPROT_KERNEL = 2
RTPROT_STATIC = 4
PROTO_NAMES = {1: 'redirect', 2: 'kernel', 3: 'boot', 4: 'static', 16: 'dhcp', 186: 'bgp', 188: 'ospf'}
TYPE_NAMES = {1: 'unicast', 2: 'local', 3: 'broadcast', 4: 'anycast', 5: 'multicast', 6: 'blackhole',
              7: 'unreachable', 8: 'prohibit', 9: 'throw', 10: 'nat'}

# struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTMSG = struct.Struct('=BBBBBBBBI')
# struct rtnexthop (one hop of RTA_MULTIPATH): len, flags, hops, ifindex
RTNEXTHOP = struct.Struct('=HBBi')
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RT_TABLE_UNSPEC = 0
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15
_U32 = struct.Struct('=I')

ITEM_KEYS = ('namespace', 'dest', 'gateway', 'device', 'metric', 'table', 'family', 'onlink', 'state')


# --- the wanted route ------------------------------------------------------------------

class WantedRoute(object):
    """A validated route request; ``field`` is the option prefix for error messages."""

    def __init__(self, field, namespace, state, version, dest, gateway=None, device=None,
                 metric=None, table=MAIN_TABLE, onlink=False):
        self.field = field
        self.namespace = namespace
        self.state = state
        self.version = version
        self.dest = dest
        self.gateway = gateway
        self.device = device
        self.metric = metric
        self.table = table
        self.onlink = onlink

    @property
    def identity(self):
        """What makes two requests address the same kernel route."""
        return (self.namespace, self.version, self.dest, self.table, self.metric)


def validate_route(field, item):
    """Check one route request without touching the kernel; returns a WantedRoute."""
    state = item.get('state') or 'present'
    namespace = item.get('namespace')
    if namespace is not None:
        check_netns_name(field + 'namespace', namespace)
    dest = _parse_dest(field + 'dest', item.get('dest'))
    gateway = _parse_gateway(field + 'gateway', item.get('gateway'))
    version = _resolve_version(field, item, dest, gateway)
    device = item.get('device')
    if device is not None:
        check_ifname(field + 'device', device)
    metric = _check_metric(field + 'metric', item.get('metric'), version)
    table = _check_table(field + 'table', item.get('table'))
    onlink = bool(item.get('onlink'))
    if dest is None:
        dest = ipaddress.ip_network('0.0.0.0/0' if version == 4 else '::/0')
    wanted = WantedRoute(field, namespace, state, version, dest, gateway, device, metric, table, onlink)
    if state == 'present':
        _check_present_route(wanted)
    return wanted


def _parse_dest(field, value):
    """``default`` (None: family decided later) or a CIDR network with zero host bits."""
    if value is None:
        raise ValidationError(field, value, 'dest is required: a CIDR network such as 10.1.0.0/24, or "default"')
    if str(value).strip().lower() == 'default':
        return None
    return check_network(field, value)


def _parse_gateway(field, value):
    if value is None:
        return None
    address = check_ip(field, value)
    if address.is_multicast or address.is_unspecified:
        raise ValidationError(field, value, 'a gateway must be a unicast address')
    return address


def _resolve_version(field, item, dest, gateway):
    """The IP version, from dest, gateway and family, which must agree."""
    family = item.get('family')
    if family is not None and family not in FAMILIES:
        raise ValidationError(field + 'family', family, 'must be ipv4 or ipv6')
    wanted = FAMILIES.get(family)
    if dest is not None and gateway is not None and dest.version != gateway.version:
        raise ValidationError(field + 'gateway', item.get('gateway'), 'is an IPv%d address but dest %s is IPv%d'
                              % (gateway.version, dest, dest.version))
    known = dest.version if dest is not None else (gateway.version if gateway is not None else None)
    if known is None:
        if wanted is None:
            raise ValidationError(field + 'family', family, 'is required when dest is "default" and no gateway is '
                                                            'given (ipv4 or ipv6)')
        return wanted
    if wanted is not None and wanted != known:
        raise ValidationError(field + 'family', family, 'contradicts dest/gateway, which are IPv%d' % known)
    return known


def _check_metric(field, value, version):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT32_MAX:
        raise ValidationError(field, value, 'a metric is an integer from 0 to %d' % UINT32_MAX)
    if version == 6 and value == 0:
        raise ValidationError(field, value, 'IPv6 has no metric 0 (the kernel stores 1024 instead); use 1 or more')
    return value


def _check_table(field, value):
    if value is None:
        return MAIN_TABLE
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= UINT32_MAX:
        raise ValidationError(field, value, 'a routing table is an integer from 1 to %d (254 is main)' % UINT32_MAX)
    return value


def _check_present_route(wanted):
    field = wanted.field
    if wanted.gateway is None and wanted.device is None:
        raise ValidationError(field + 'gateway', None, 'a route needs a gateway, a device, or both')
    if wanted.gateway is not None and wanted.gateway.is_link_local and wanted.version == 6 and not wanted.device:
        raise ValidationError(field + 'device', None, 'a link-local gateway (%s) is only meaningful with a device'
                              % wanted.gateway)
    if wanted.onlink and (wanted.gateway is None or wanted.device is None):
        raise ValidationError(field + 'onlink', True, 'onlink needs both a gateway and a device')


def check_duplicates(wanted_routes):
    """Two requests for the same kernel route, one of them `present`, would undo each
    other on every run. (Several `absent` requests for one destination are fine.)"""
    seen_any, seen_present = {}, {}
    errors = []
    for wanted in wanted_routes:
        earlier = (seen_any if wanted.state == 'present' else seen_present).get(wanted.identity)
        if earlier is not None:
            errors.append(ValidationError(wanted.field + 'dest', dest_text(wanted.dest),
                                          'the same route (namespace, dest, table, metric) is already given by %sdest'
                                          % earlier.field))
            continue
        seen_any.setdefault(wanted.identity, wanted)
        if wanted.state == 'present':
            seen_present[wanted.identity] = wanted
    return errors


# --- the kernel's routes ---------------------------------------------------------------

class Route(object):
    """One route as the kernel holds it (or as we are about to make it)."""

    def __init__(self, version, dest, table, metric, gateway=None, device=None, proto=RTPROT_STATIC,
                 scope=RT_SCOPE_UNIVERSE, rtype=RTN_UNICAST, onlink=False, nexthops=None):
        self.version = version
        self.dest = dest
        self.table = table
        self.metric = metric
        self.gateway = gateway
        self.device = device
        self.proto = proto
        self.scope = scope
        self.rtype = rtype
        self.onlink = onlink
        # Multipath routes: [(gateway, device), ...]; single-path routes leave it empty.
        self.nexthops = nexthops or []

    @property
    def multipath(self):
        return len(self.nexthops) > 1

    def same_identity(self, version, dest, table, metric=None):
        return (self.version == version and self.dest == dest and self.table == table
                and (metric is None or self.metric == metric))

    def as_dict(self):
        return {
            'dest': dest_text(self.dest),
            'family': FAMILY_NAMES[self.version],
            'gateway': str(self.gateway) if self.gateway is not None else None,
            'device': self.device,
            'metric': self.metric,
            'table': self.table,
            'proto': PROTO_NAMES.get(self.proto, str(self.proto)),
            'type': TYPE_NAMES.get(self.rtype, str(self.rtype)),
            'onlink': self.onlink,
            'nexthops': [{'gateway': str(gw) if gw is not None else None, 'device': dev}
                         for gw, dev in self.nexthops],
        }

    def text(self):
        """The route as `ip route` shows it, with metric and proto always spelled out."""
        words = route_words(self) + ['proto', PROTO_NAMES.get(self.proto, str(self.proto)), 'metric', str(self.metric)]
        if self.table != MAIN_TABLE:
            words.extend(['table', table_text(self.table)])
        return ' '.join(words)


def route_words(route):
    """Type, destination and paths of ``route`` as `ip route` spells them."""
    words = [] if route.rtype == RTN_UNICAST else [TYPE_NAMES.get(route.rtype, str(route.rtype))]
    words.append(dest_text(route.dest))
    words.extend(_path_words(route.gateway, route.device, route.onlink))
    for gateway, device in route.nexthops if route.multipath else ():
        words.append('nexthop')
        words.extend(_path_words(gateway, device, False))
    return words


def _path_words(gateway, device, onlink):
    words = []
    if gateway is not None:
        words.extend(['via', str(gateway)])
    if device is not None:
        words.extend(['dev', device])
    if onlink:
        words.append('onlink')
    return words


def dest_text(dest):
    return 'default' if dest.prefixlen == 0 else str(dest)


def table_text(table):
    return TABLE_NAMES.get(table, str(table))


class RoutingState(object):
    """Links, addresses and routes of one namespace, read once per call."""

    def __init__(self, namespace, links, addresses, routes, up=None, own=None):
        self.namespace = namespace
        self.links = links  # name -> ifindex
        self.up = set(links) if up is None else set(up)  # names of links that are administratively up
        self.addresses = addresses  # [(ip_interface, device name)]: connected subnets
        self.routes = routes  # [Route]
        # Our own addresses; they differ from ``addresses`` only on point-to-point links.
        self.own = set(address.ip for address, dummy in addresses) if own is None else set(own)

    @property
    def label(self):
        return 'namespace %s' % self.namespace if self.namespace else 'the current namespace'

    def own_addresses(self, version):
        return set(address for address in self.own if address.version == version)

    def connected_subnets(self, version, table=MAIN_TABLE):
        """(network, device) pairs a gateway can be reached through without another router:
        the subnets of the addresses, and device routes of link scope (IPv4) or without a
        gateway (IPv6) in the main table or the route's own table. Only links that are up
        count: the kernel refuses a gateway behind a link that is down."""
        subnets = [(address.network, device) for address, device in self.addresses
                   if address.version == version and device in self.up]
        for route in self.routes:
            if (route.version == version and route.table in (MAIN_TABLE, table) and route.gateway is None
                    and route.device in self.up and not route.multipath and route.rtype == RTN_UNICAST
                    and (version == 6 or route.scope == RT_SCOPE_LINK)):
                subnets.append((route.dest, route.device))
        return subnets


def read_namespace_state(namespace, versions=(4, 6), sock=None):
    """Links, addresses and routes of the namespace the caller has entered
    (``netns_session.entered``), for the IP versions in ``versions`` only.

    Plain NETLINK_ROUTE dumps parsed here: pyroute2 decodes every attribute of every
    message (about 1.5 ms a message on this machine, 6-8 ms a namespace), these parsers
    read the handful we compare. A request never looks at routes or addresses of
    another IP version, so the other version's dumps are skipped."""
    with route_socket(sock) as rtnl:
        links, up = _read_links(rtnl)
        names = dict((index, name) for name, index in links.items())
        addresses, own, routes = [], set(), []
        for version in sorted(set(versions)):
            family = ADDRESS_FAMILIES[version]
            for subnet, local, index in _read_addresses(rtnl, family):
                addresses.append((subnet, names.get(index)))
                own.add(local)
            routes.extend(_read_routes(rtnl, family, names))
    return RoutingState(namespace, links, addresses, routes, up, own)


def _read_links(rtnl):
    """name -> ifindex of every link, and the names of those administratively up."""
    links, up = {}, set()
    for link in read_links(rtnl):
        links[link.name] = link.index
        if link.up:
            up.add(link.name)
    return links, up


def _read_addresses(rtnl, family):
    """(connected subnet, own address, ifindex) of every address of one family; IPv6
    link-local addresses are kept: a link-local gateway is reached through them."""
    answers = rtnl.dump(RTM_GETADDR, IFADDRMSG.pack(family, 0, 0, 0, 0))
    parsed = (parse_address(body) for kind, body in answers if kind == RTM_NEWADDR)
    return [(connected, own.ip, index) for index, own, connected in filter(None, parsed)]


def _read_routes(rtnl, family, names):
    """Routes of every table (main, local and the others) of one family."""
    answers = rtnl.dump(RTM_GETROUTE, RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0))
    parsed = (parse_route_message(body, names) for kind, body in answers if kind == RTM_NEWROUTE)
    return [route for route in parsed if route is not None]


def parse_route_message(body, names):
    """A Route from the body of an RTM_NEWROUTE message (``names``: ifindex -> link
    name), or None for a family other than IPv4/IPv6."""
    (family, dst_len, dummy_src_len, dummy_tos, header_table, proto, scope, rtype,
     flags) = RTMSG.unpack_from(body, 0)
    version = VERSIONS.get(family)
    if version is None:
        return None
    dst = gateway = oif = table = None
    metric = 0
    nexthops = []
    for attr, offset, length in iter_attributes(body, RTMSG.size):
        if attr == RTA_DST:
            dst = bytes(body[offset:offset + length])
        elif attr == RTA_GATEWAY:
            gateway = _ip_address(version, body[offset:offset + length])
        elif attr == RTA_OIF:
            oif = _U32.unpack_from(body, offset)[0]
        elif attr == RTA_PRIORITY:
            metric = _U32.unpack_from(body, offset)[0]
        elif attr == RTA_TABLE:
            table = _U32.unpack_from(body, offset)[0]
        elif attr == RTA_MULTIPATH:
            nexthops = _parse_nexthops(body, offset, offset + length, version, names)
    network = IP_NETWORKS[version]
    dest = network((dst or bytes(ADDRESS_LENGTHS[version]), dst_len), strict=False)
    if len(nexthops) == 1:
        # A multipath attribute with one hop is a single-path route written another way.
        gateway, device = nexthops[0]
        nexthops = []
    else:
        device = names.get(oif) if oif is not None else None
    # RTA_TABLE carries tables above 255, which the one-byte header cannot hold.
    return Route(version, dest, table or header_table, metric, gateway=gateway, device=device, proto=proto,
                 scope=scope, rtype=rtype, onlink=bool(flags & RTNH_F_ONLINK), nexthops=nexthops)


def _parse_nexthops(body, offset, end, version, names):
    """[(gateway, device)] of an RTA_MULTIPATH attribute: a row of struct rtnexthop,
    each followed by its own attributes."""
    hops = []
    while offset + RTNEXTHOP.size <= end:
        length, dummy_flags, dummy_hops, index = RTNEXTHOP.unpack_from(body, offset)
        if length < RTNEXTHOP.size:
            break
        gateway = None
        for attr, value, size in iter_attributes(body, offset + RTNEXTHOP.size, offset + length):
            if attr == RTA_GATEWAY:
                gateway = _ip_address(version, body[value:value + size])
        hops.append((gateway, names.get(index)))
        offset += align(length)
    return hops


def _ip_address(version, packed):
    return IP_ADDRESSES[version](bytes(packed))


# --- checks against the namespace --------------------------------------------------------

def check_against_namespace(wanted, state):
    """The checks that need the namespace's links and addresses (before anything changes)."""
    if wanted.state != 'present':
        return
    if wanted.device is not None and wanted.device not in state.links:
        raise ValidationError(wanted.field + 'device', wanted.device, 'device %s does not exist in %s (it has: %s)'
                              % (wanted.device, state.label, ', '.join(sorted(state.links)) or 'no links'))
    if wanted.gateway is None:
        return
    if wanted.gateway in state.own_addresses(wanted.version):
        raise ValidationError(wanted.field + 'gateway', str(wanted.gateway),
                              'gateway %s is an address of %s itself' % (wanted.gateway, state.label))
    if not wanted.onlink and gateway_device(wanted, state) is None:
        where = 'device %s in %s' % (wanted.device, state.label) if wanted.device else state.label
        raise ValidationError(wanted.field + 'gateway', str(wanted.gateway),
                              'gateway %s is not in any connected subnet of %s (connected: %s%s); use an '
                              'address of a connected subnet, or set onlink: true to force it'
                              % (wanted.gateway, where, _subnets_text(state, wanted), _down_hint(state, wanted)))


def gateway_device(wanted, state):
    """The device through which the gateway is reachable (the requested one if set)."""
    for network, device in state.connected_subnets(wanted.version, wanted.table):
        if wanted.gateway in network and (wanted.device is None or device == wanted.device):
            return device
    return None


def _down_hint(state, wanted):
    """Name the links that would hold the gateway if they were up."""
    down = sorted(set(device for address, device in state.addresses
                      if device not in state.up and wanted.gateway in address.network))
    return '; %s holds it but is down' % ', '.join(down) if down else ''


def _subnets_text(state, wanted):
    subnets = sorted(set('%s on %s' % (network, device) for network, device
                         in state.connected_subnets(wanted.version, wanted.table)
                         if not network.is_link_local))
    return ', '.join(subnets) or 'none'


# --- comparing and planning ---------------------------------------------------------------

class RouteChange(object):
    """What one request does: action is added, replaced, removed or unchanged."""

    def __init__(self, wanted, action, before, after):
        self.wanted = wanted
        self.action = action
        self.before = before  # [Route] the kernel has now (the ones this request is about)
        self.after = after  # [Route] it will have

    @property
    def changed(self):
        return self.action != 'unchanged'

    def result(self):
        return {
            'namespace': self.wanted.namespace,
            'dest': dest_text(self.wanted.dest),
            'family': FAMILY_NAMES[self.wanted.version],
            'table': self.wanted.table,
            'state': self.wanted.state,
            'action': self.action,
            'changed': self.changed,
            'before': [route.as_dict() for route in self.before],
            'after': [route.as_dict() for route in self.after],
        }


def satisfies(route, wanted):
    """Does an existing route already give what the user asked for? Only the fields the
    user set are compared (never proto, scope or a metric the user left open)."""
    if route.rtype != RTN_UNICAST or route.multipath:
        return False
    if wanted.gateway is not None and route.gateway != wanted.gateway:
        return False
    if wanted.device is not None and route.device != wanted.device:
        return False
    return True


def matches_for_removal(route, wanted):
    """Routes an `absent` request removes: same identity, and gateway/device if given."""
    hops = route.nexthops or [(route.gateway, route.device)]
    if wanted.gateway is not None and wanted.gateway not in [hop[0] for hop in hops]:
        return False
    if wanted.device is not None and wanted.device not in [hop[1] for hop in hops]:
        return False
    return True


def plan_route(wanted, state):
    """Compare one request with the namespace and update ``state.routes`` to what it
    will hold afterwards, so later requests of the same call see earlier ones."""
    same = [route for route in state.routes
            if route.same_identity(wanted.version, wanted.dest, wanted.table, wanted.metric)]
    if wanted.state == 'absent':
        gone = [route for route in same if matches_for_removal(route, wanted)]
        for route in gone:
            state.routes.remove(route)
        return RouteChange(wanted, 'removed' if gone else 'unchanged', gone, [])
    for route in same:
        if satisfies(route, wanted):
            return RouteChange(wanted, 'unchanged', [route], [route])
    if not same:
        new = new_route(wanted, state, DEFAULT_METRIC[wanted.version])
        state.routes.append(new)
        return RouteChange(wanted, 'added', [], [new])
    # The route in effect is the one with the lowest metric: that is the one to fix.
    target = min(same, key=lambda route: route.metric)
    if target.proto == RTPROT_KERNEL:
        raise ValidationError(wanted.field + 'metric', wanted.metric,
                              'the existing route "%s" was made by the kernel for an address (proto kernel); '
                              'replacing it would cut that subnet off: set a different metric to add a route '
                              'beside it' % target.text())
    new = new_route(wanted, state, target.metric)
    state.routes[state.routes.index(target)] = new
    return RouteChange(wanted, 'replaced', [target], [new])


def new_route(wanted, state, default_metric):
    """The route the kernel will hold after we add it (pyroute2 marks it proto static)."""
    device = wanted.device
    if device is None and wanted.gateway is not None:
        device = gateway_device(wanted, state)
    scope = RT_SCOPE_LINK if wanted.version == 4 and wanted.gateway is None else RT_SCOPE_UNIVERSE
    return Route(wanted.version, wanted.dest, wanted.table,
                 wanted.metric if wanted.metric is not None else default_metric,
                 gateway=wanted.gateway, device=device, proto=RTPROT_STATIC, scope=scope,
                 onlink=wanted.onlink)


# --- applying ---------------------------------------------------------------------------------
#
# Writes go through the netlink codec of links.py, batched per namespace (one socket, every
# request of the namespace in one datagram, one ACK each): pyroute2's IPRoute cost about
# 2 ms per namespace to open and one asyncio round per request on 0.9.

# verb -> (message type, flags), as `ip route add|replace|del` sends them
_VERBS = {
    'add': (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL),
    'replace': (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE),
    'del': (RTM_DELROUTE, 0),
}


def route_message(verb, route, links):
    """The (type, flags, payload) request for RouteSocket.run_requests that adds, replaces
    or deletes exactly ``route`` (``links``: name -> ifindex in its namespace). A deletion
    names every field of the route as read, so it matches that route and no other."""
    kind, flags = _VERBS[verb]
    dest = route.dest
    header_table = route.table if route.table < 256 else RT_TABLE_UNSPEC  # RTA_TABLE carries the rest
    payload = RTMSG.pack(ADDRESS_FAMILIES[route.version], dest.prefixlen, 0, 0, header_table, route.proto,
                         route.scope, route.rtype, RTNH_F_ONLINK if route.onlink else 0)
    payload += attribute(RTA_TABLE, _U32.pack(route.table))
    if dest.prefixlen:
        payload += attribute(RTA_DST, dest.network_address.packed)
    payload += attribute(RTA_PRIORITY, _U32.pack(route.metric))
    if route.multipath:
        hops = b''.join(_hop_bytes(gateway, device, links) for gateway, device in route.nexthops)
        return kind, flags, payload + attribute(RTA_MULTIPATH, hops)
    if route.gateway is not None:
        payload += attribute(RTA_GATEWAY, route.gateway.packed)
    if route.device is not None and route.device in links:
        payload += attribute(RTA_OIF, _U32.pack(links[route.device]))
    return kind, flags, payload


def _hop_bytes(gateway, device, links):
    """One struct rtnexthop with its gateway attribute."""
    inner = attribute(RTA_GATEWAY, gateway.packed) if gateway is not None else b''
    return RTNEXTHOP.pack(RTNEXTHOP.size + len(inner), 0, 0, links.get(device, 0)) + inner


class RouteApplyError(Exception):
    """The kernel refused a change that passed validation (for example a device that
    is down); names the request and the command that failed."""


def change_steps(change, links):
    """[(request, undo request, undo description)] that make ``change`` and take it back."""
    if change.action == 'added':
        route = change.after[0]
        return [(route_message('add', route, links), route_message('del', route, links),
                 'delete route %s' % route.text())]
    if change.action == 'replaced':
        old, new = change.before[0], change.after[0]
        return [(route_message('replace', new, links), route_message('replace', old, links),
                 'restore route %s' % old.text())]
    if change.action == 'removed':
        return [(route_message('del', route, links), route_message('add', route, links),
                 're-add route %s' % route.text()) for route in change.before]
    return []


def apply_changes(namespace, changes, links, rollback):
    """Send every request of ``changes`` (all in ``namespace``) through one socket; register
    the undo of each one the kernel took, then raise RouteApplyError for the first refused."""
    steps = [(change, step) for change in changes for step in change_steps(change, links)]
    with entered(namespace), RouteSocket() as rtnl:
        codes = rtnl.run_requests([request for dummy_change, (request, dummy_undo, dummy_text) in steps])
    refused = None
    for (change, (dummy_request, undo, text)), code in zip(steps, codes):
        if code == 0:
            rollback.register(text, route_in, namespace, undo)
        elif refused is None:
            refused = (change, code)
    if refused is not None:
        change, code = refused
        raise RouteApplyError('%sdest=%s: "%s" failed: %s' % (
            change.wanted.field, dest_text(change.wanted.dest), '; '.join(change_commands(change)),
            os.strerror(code)))


def route_in(namespace, request):
    """One request through a socket of its own: undo actions run once the call's sockets
    are closed (netns_topology's rollback may run them after a later part failed)."""
    with entered(namespace), RouteSocket() as rtnl:
        code = rtnl.run_requests([request])[0]
    if code:
        raise OSError(code, describe_errno(code))


# --- reporting ----------------------------------------------------------------------------------

def change_commands(change):
    """What an operator would have typed for this change."""
    namespace = change.wanted.namespace
    if change.action == 'added':
        return [format_command(ip_route_argv(namespace, 'add', change.after[0]))]
    if change.action == 'replaced':
        return [format_command(ip_route_argv(namespace, 'replace', change.after[0]))]
    if change.action == 'removed':
        return [format_command(ip_route_argv(namespace, 'del', route)) for route in change.before]
    return []


def ip_route_argv(namespace, verb, route):
    argv = ['ip']
    if namespace:
        argv.extend(['-n', namespace])
    if route.version == 6:
        argv.append('-6')
    argv.extend(['route', verb] + route_words(route) + ['metric', str(route.metric)])
    if route.table != MAIN_TABLE:
        argv.extend(['table', str(route.table)])
    return argv


def report_lines(change):
    """Before/after lines for the diff: every route a request is about, prefixed with
    its namespace so a list spanning namespaces stays readable."""
    prefix = '%s: ' % change.wanted.namespace if change.wanted.namespace else ''
    return ([prefix + route.text() for route in change.before],
            [prefix + route.text() for route in change.after])
