# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Links and addresses: read a namespace's state once, compare it with what is
wanted, write only the difference.

The readers work in the namespace the caller entered (``netns_session.entered``) and
return plain Python objects, so the comparison functions can be unit-tested with
hand-made state. This file is also the collection's one netlink layer: the codec
(``attribute``, ``iter_attributes``, ``netlink_message``), the socket (``RouteSocket``:
dumps, and batches of write requests with one ACK each) and the link and address request
encoders; routes.py encodes its route requests with the same codec. No pyroute2 here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import ipaddress
import os
import socket
import struct

from ansible.module_utils.six import text_type

from ansible_collections.linuxnet.netns.plugins.module_utils.common import format_command

IFF_UP = 0x1
IFA_F_NODAD = 0x02
LOOPBACK_IFINDEX = 1  # the kernel gives lo index 1 in every namespace
# RTM_GETNSID answers this when the other namespace has no id in the asking one.
NETNSA_NSID_NOT_ASSIGNED = (-1, 4294967295)
IPV6_LINK_LOCAL = ipaddress.ip_network('fe80::/10')
IPV6_MIN_MTU = 1280
VETH_DEFAULT_MTU = 1500


class LinkOperationError(Exception):
    """A netlink request failed; the message says which object and why."""


class Link(object):
    """The properties of one network interface that our modules compare."""

    __slots__ = ('name', 'index', 'kind', 'up', 'mtu', 'peer_index', 'peer_netnsid', 'group')

    def __init__(self, name, index, kind=None, up=False, mtu=VETH_DEFAULT_MTU,
                 peer_index=None, peer_netnsid=None, group=0):
        self.name = name
        self.group = group  # IFLA_GROUP: lets many links be deleted in one request
        self.index = index
        self.kind = kind
        self.up = up
        self.mtu = mtu
        # For a veth: the peer's ifindex (in the peer's namespace) and, when the peer
        # lives in another namespace, that namespace's id as seen from this one.
        self.peer_index = peer_index
        self.peer_netnsid = peer_netnsid

    @property
    def is_veth(self):
        return self.kind == 'veth'

    def __repr__(self):
        return 'Link(%r, %r, kind=%r, up=%r, mtu=%r, peer_index=%r, peer_netnsid=%r)' % (
            self.name, self.index, self.kind, self.up, self.mtu, self.peer_index, self.peer_netnsid)


class LinkState(object):
    """Links (by name and index) and addresses (by ifindex) of one namespace."""

    def __init__(self, links=(), addresses=None):
        self.links = dict((link.name, link) for link in links)
        self.by_index = dict((link.index, link) for link in links)
        # IPv6 link-local addresses are the kernel's: never compared, shown or removed.
        self.addresses = dict((index, set(a for a in addrs if not is_link_local(a)))
                              for index, addrs in (addresses or {}).items())

    def link(self, name):
        return self.links.get(name)

    def addresses_of(self, name):
        link = self.links.get(name)
        if link is None:
            return set()
        return set(self.addresses.get(link.index, ()))


# --- reading -----------------------------------------------------------------------
#
# State is read with plain NETLINK_ROUTE dumps parsed here, in the namespace the
# caller has entered (netns_session.entered). Only a handful of attributes matter to
# us; pyroute2 decodes every attribute of every message, which on this machine costs
# about 1.5 ms per link (0.75 s for a namespace holding 500 veth ends, on 0.7 and 0.9
# alike), while skipping the unneeded ones costs microseconds. Writes: see below.

NLMSG_HDR = struct.Struct('=IHHII')       # len, type, flags, seq, pid
IFINFOMSG = struct.Struct('=BxHiII')      # family, type, index, flags, change
IFADDRMSG = struct.Struct('=BBBBI')       # family, prefixlen, flags, scope, index
RTGENMSG_LEN = 4                          # one byte, padded to NLMSG_ALIGNTO
NLA_HDR = struct.Struct('=HH')            # len, type
_U32 = struct.Struct('=I')
_S32 = struct.Struct('=i')

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x10, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWNSID, RTM_GETNSID = 88, 90
IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_LINKINFO, IFLA_EXT_MASK, IFLA_LINK_NETNSID = 3, 4, 5, 18, 29, 37
IFLA_GROUP, IFLA_NET_NS_FD = 27, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
NETNSA_NSID, NETNSA_FD = 1, 3
RTEXT_FILTER_SKIP_STATS = 1 << 3
NLA_TYPE_MASK = 0x3fff
_RECV_SIZE = 1 << 18
# Requests sent before their ACKs are read (see RouteSocket.run_requests): an ACK
# costs about 1 KiB of the receive buffer (default 208 KiB).
REQUEST_WINDOW = 64
_DUMP_ATTEMPTS = 5


class _DumpInterrupted(Exception):
    """The kernel says the dump saw concurrent changes; it must be repeated."""


def align(length):
    return (length + 3) & ~3


def attribute(kind, payload):
    return NLA_HDR.pack(NLA_HDR.size + len(payload), kind) + payload + b'\0' * (align(len(payload)) - len(payload))


def iter_attributes(data, offset, end=None):
    """(type, value offset, value length) of the netlink attributes in data[offset:end]."""
    end = len(data) if end is None else end
    while offset + NLA_HDR.size <= end:
        length, kind = NLA_HDR.unpack_from(data, offset)
        if length < NLA_HDR.size:
            break
        yield kind & NLA_TYPE_MASK, offset + NLA_HDR.size, length - NLA_HDR.size
        offset += align(length)


def iter_messages(data):
    """(type, flags, seq, body) of every netlink message in one datagram."""
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, kind, flags, seq, dummy_pid = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size:
            break
        yield kind, flags, seq, data[offset + NLMSG_HDR.size:offset + length]
        offset += align(length)


def netlink_message(kind, flags, seq, payload):
    """One netlink message: header (pid 0, the kernel fills in ours) and payload."""
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(payload), kind, flags, seq, 0) + payload


def _string(data, offset, length):
    return data[offset:offset + length].split(b'\0', 1)[0].decode('utf-8', 'replace')


def parse_link(body):
    """A Link from the body of an RTM_NEWLINK message."""
    index, flags = IFINFOMSG.unpack_from(body, 0)[2:4]
    name = kind = peer_index = peer_netnsid = None
    mtu = None
    group = 0
    for attr, offset, length in iter_attributes(body, IFINFOMSG.size):
        if attr == IFLA_IFNAME:
            name = _string(body, offset, length)
        elif attr == IFLA_MTU:
            mtu = _U32.unpack_from(body, offset)[0]
        elif attr == IFLA_LINK:
            peer_index = _U32.unpack_from(body, offset)[0]
        elif attr == IFLA_LINK_NETNSID:
            peer_netnsid = _S32.unpack_from(body, offset)[0]
        elif attr == IFLA_GROUP:
            group = _U32.unpack_from(body, offset)[0]
        elif attr == IFLA_LINKINFO:
            for inner, inner_offset, inner_length in iter_attributes(body, offset, offset + length):
                if inner == IFLA_INFO_KIND:
                    kind = _string(body, inner_offset, inner_length)
    return Link(name, index, kind=kind, up=bool(flags & IFF_UP), mtu=mtu,
                peer_index=peer_index, peer_netnsid=peer_netnsid, group=group)


_INTERFACES = {socket.AF_INET: ipaddress.IPv4Interface, socket.AF_INET6: ipaddress.IPv6Interface}


def parse_address(body, skip_link_local=False):
    """(ifindex, own, connected) from the body of an RTM_NEWADDR message, both
    ip_interface; None for a family other than IPv4/IPv6, and with ``skip_link_local``
    for an IPv6 link-local address (every up interface has one: skipped before any
    object is built).

    ``own`` is the interface's address: IFA_LOCAL for IPv4 (IFA_ADDRESS is the far end
    on point-to-point links), IFA_ADDRESS for IPv6, which usually sends only that.
    ``connected`` carries IFA_ADDRESS, whose subnet is the one the link reaches.
    """
    family, prefixlen, dummy_flags, dummy_scope, index = IFADDRMSG.unpack_from(body, 0)
    interface = _INTERFACES.get(family)
    if interface is None:
        return None
    local = address = None
    for attr, offset, length in iter_attributes(body, IFADDRMSG.size):
        if attr == IFA_LOCAL:
            local = bytes(body[offset:offset + length])
        elif attr == IFA_ADDRESS:
            address = bytes(body[offset:offset + length])
    packed = local or address
    if packed is None or (skip_link_local and _is_packed_link_local(packed)):
        return None
    own = interface((packed, prefixlen))
    if local is None or address is None or address == local:
        return index, own, own
    return index, own, interface((address, prefixlen))


def _is_packed_link_local(packed):
    return len(packed) == 16 and packed[0] == 0xfe and (packed[1] & 0xc0) == 0x80


class RouteSocket(object):
    """A NETLINK_ROUTE socket in the current namespace, for reading (dumps, queries)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def request(self, kind, payload, dump=False):
        """Bodies of the answers of ``kind`` to one request; raises OSError for an
        error answer and _DumpInterrupted when a dump must be repeated."""
        self.seq += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
        self.sock.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(payload), kind, flags, self.seq, 0) + payload)
        bodies = []
        interrupted = False
        while True:
            data = self.sock.recv(_RECV_SIZE)
            for answer, answer_flags, seq, body in iter_messages(data):
                if seq != self.seq:
                    continue  # a late answer to an earlier request
                if answer == NLMSG_ERROR:
                    code = _S32.unpack_from(body, 0)[0]
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return bodies
                if answer == NLMSG_DONE:
                    if interrupted or answer_flags & NLM_F_DUMP_INTR:
                        raise _DumpInterrupted()
                    return bodies
                interrupted = interrupted or bool(answer_flags & NLM_F_DUMP_INTR)
                bodies.append((answer, body))
                if not dump:
                    return bodies

    def dump(self, kind, payload):
        for dummy_attempt in range(_DUMP_ATTEMPTS):
            try:
                return self.request(kind, payload, dump=True)
            except _DumpInterrupted:
                continue
        return self.request(kind, payload, dump=True)

    def run_requests(self, requests, window=REQUEST_WINDOW):
        """Send write requests, each a (type, flags, payload) tuple as the *_request
        encoders below build them, and return the error code of each, in order
        (0: done, else a positive errno).

        Up to ``window`` requests go out in one datagram before their ACKs are read:
        the kernel runs them one after the other and answers each, also after a
        failure, so every code maps back to its request (by sequence number). The
        window keeps the ACKs far below the socket's receive buffer, which would
        otherwise drop some.
        """
        codes = []
        for start in range(0, len(requests), window):
            codes.extend(self._run_window(requests[start:start + window]))
        return codes

    def _run_window(self, requests):
        first = self.seq + 1
        chunks = []
        for kind, flags, payload in requests:
            self.seq += 1
            chunks.append(netlink_message(kind, flags | NLM_F_REQUEST | NLM_F_ACK, self.seq, payload))
        self.sock.sendall(b''.join(chunks))
        codes = [None] * len(requests)
        waiting = len(requests)
        while waiting:
            for answer, dummy_flags, seq, body in iter_messages(self.sock.recv(_RECV_SIZE)):
                position = seq - first
                if answer != NLMSG_ERROR or not 0 <= position < len(codes) or codes[position] is not None:
                    continue  # not an ACK of this window
                codes[position] = -_S32.unpack_from(body, 0)[0]
                waiting -= 1
        return codes


def read_links(sock=None):
    """Every link of the current namespace."""
    with route_socket(sock) as rtnl:
        payload = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attribute(
            IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS))
        return [parse_link(body) for kind, body in rtnl.dump(RTM_GETLINK, payload) if kind == RTM_NEWLINK]


def read_addresses(sock=None):
    """ifindex -> set of ip_interface of the current namespace, without IPv6
    link-local addresses."""
    result = {}
    with route_socket(sock) as rtnl:
        for kind, body in rtnl.dump(RTM_GETADDR, IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            parsed = parse_address(body, skip_link_local=True) if kind == RTM_NEWADDR else None
            if parsed is not None:
                result.setdefault(parsed[0], set()).add(parsed[1])
    return result


def read_namespace_state(sock=None, with_addresses=True):
    """Links and addresses of the current namespace, read once."""
    with route_socket(sock) as rtnl:
        links = read_links(rtnl)
        addresses = read_addresses(rtnl) if with_addresses else {}
    return LinkState(links, addresses)


def netnsid_of(fd, sock=None):
    """The id that the namespace behind ``fd`` has in the current namespace, or None
    (not assigned: no link here points into it)."""
    payload = b'\0' * RTGENMSG_LEN + attribute(NETNSA_FD, _U32.pack(fd))
    with route_socket(sock) as rtnl:
        for kind, body in rtnl.request(RTM_GETNSID, payload):
            if kind != RTM_NEWNSID:
                continue
            for attr, offset, dummy_length in iter_attributes(body, RTGENMSG_LEN):
                if attr == NETNSA_NSID:
                    nsid = _S32.unpack_from(body, offset)[0]
                    return None if nsid in NETNSA_NSID_NOT_ASSIGNED else nsid
    return None


@contextlib.contextmanager
def route_socket(sock=None):
    """Use the caller's RouteSocket (any object with ``dump``/``request``), or a new one
    closed afterwards."""
    if sock is not None:
        yield sock
        return
    with RouteSocket() as own:
        yield own


# --- comparing ---------------------------------------------------------------------

def is_link_local(iface):
    return iface.version == 6 and iface.ip in IPV6_LINK_LOCAL


def address_sort_key(iface):
    return (iface.version, int(iface.ip), iface.network.prefixlen)


def sorted_addresses(addresses):
    return sorted(addresses, key=address_sort_key)


def address_changes(current, wanted, purge=False):
    """(to_remove, to_add) that turn the set ``current`` into what the user wants.

    ``wanted`` None means the user does not manage this interface's addresses.
    An address listed with another prefix length than the one present replaces it
    (the kernel refuses the same IPv6 address twice on one device). Without
    ``purge`` other addresses stay; IPv6 link-local ones are never touched.
    """
    current = set(a for a in current if not is_link_local(a))
    if wanted is None:
        return [], []
    wanted = set(wanted)
    to_add = wanted - current
    wanted_ips = set(a.ip for a in wanted)
    if purge:
        to_remove = current - wanted
    else:
        to_remove = set(a for a in current - wanted if a.ip in wanted_ips)
    return sorted_addresses(to_remove), sorted_addresses(to_add)


# --- writing -----------------------------------------------------------------------

def describe_errno(code):
    """``File exists (EEXIST)`` for a positive errno."""
    return '%s (%s)' % (os.strerror(code), errno.errorcode.get(code, code))


# Batched writes. pyroute2's IPRoute pays its message encoding and, on 0.9, an asyncio
# round per request (2-5 ms each on this machine, 2.5 s for 500 veth pairs with addresses
# where the kernel needs 0.3 s). These encoders build the same requests as ``ip`` does,
# byte for byte, for RouteSocket.run_requests, which sends many at once and checks each ACK.

def _ifinfo(index=0, up=None):
    """struct ifinfomsg; ``up`` None leaves the administrative state alone."""
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def _string_attribute(kind, text):
    return attribute(kind, _ifname_bytes(text) + b'\0')


def veth_create_request(name, peer, peer_ns_fd=None, mtu=None, up=False):
    """RTM_NEWLINK creating veth ``name`` here and ``peer`` (in the namespace behind
    ``peer_ns_fd``, else here), as ``ip link add NAME [up] [mtu M] type veth peer name
    PEER [mtu M] [netns NS]`` sends it. The MTU goes to both ends; ``up`` only to
    ``name``: the kernel configures the peer before the pair is linked, so a peer
    asked to come up in this request fails the whole request (ENOTCONN)."""
    local = _ifinfo(up=True if up else None) + _string_attribute(IFLA_IFNAME, name)
    remote = _ifinfo() + _string_attribute(IFLA_IFNAME, peer)
    if mtu is not None:
        local += attribute(IFLA_MTU, _U32.pack(mtu))
        remote += attribute(IFLA_MTU, _U32.pack(mtu))
    if peer_ns_fd is not None:
        remote += attribute(IFLA_NET_NS_FD, _U32.pack(peer_ns_fd))
    info = _string_attribute(IFLA_INFO_KIND, 'veth') + attribute(
        IFLA_INFO_DATA, attribute(VETH_INFO_PEER, remote))
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, local + attribute(IFLA_LINKINFO, info)


def link_set_request(index, up=None, mtu=None, group=None):
    """RTM_NEWLINK changing MTU, administrative state and/or group of link ``index``."""
    payload = _ifinfo(index, up)
    if mtu is not None:
        payload += attribute(IFLA_MTU, _U32.pack(mtu))
    if group is not None:
        payload += attribute(IFLA_GROUP, _U32.pack(group))
    return RTM_NEWLINK, 0, payload


def link_delete_request(index):
    return RTM_DELLINK, 0, _ifinfo(index)


def group_delete_request(group):
    """RTM_DELLINK for every link of ``group`` (``ip link delete group N``): the kernel
    unregisters them all in one batch, with one RCU grace period instead of one per
    link (about 20 ms each on this machine)."""
    return RTM_DELLINK, 0, _ifinfo() + attribute(IFLA_GROUP, _U32.pack(group))


def address_request(index, iface, add=True):
    """RTM_NEWADDR/RTM_DELADDR for ``iface`` (an ip_interface) on link ``index``, as
    ``ip addr add|del`` sends it; an added IPv6 address skips duplicate address
    detection (see add_address)."""
    family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    flags = IFA_F_NODAD if add and iface.version == 6 else 0
    packed = iface.ip.packed
    payload = IFADDRMSG.pack(family, iface.network.prefixlen, flags, 0, index)
    if iface.version == 4:
        payload += attribute(IFA_LOCAL, packed)
    payload += attribute(IFA_ADDRESS, packed)
    if add:
        return RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, payload
    return RTM_DELADDR, 0, payload


def unused_group(links, seed=None):
    """A link group number that no link in ``links`` uses (never 0, the default)."""
    used = set(link.group for link in links)
    candidate = seed if seed is not None else (struct.unpack('=I', os.urandom(4))[0] | 0x40000000)
    while candidate in used or candidate == 0:
        candidate = (candidate + 1) & 0xffffffff
    return candidate


def delete_links(rtnl, links):
    """Delete ``links`` (Link objects as read now in rtnl's namespace) and return
    [(Link, errno)] for those that could not be deleted; a link already gone (the
    peer of a veth deleted just before) is not an error.

    Two or more veths are deleted in one request: they are moved into a group no
    other link of the namespace is in, and the group is deleted (see
    group_delete_request). If that fails, their groups are set back. Other kinds go
    one by one (a group delete refuses groups holding a device without ``dellink``).
    """
    links = list(links)
    veths = [link for link in links if link.is_veth]
    singles = [link for link in links if not link.is_veth]
    if len(veths) < 2:
        singles, veths = veths + singles, []
    failures = []
    if veths:
        failures.extend(_delete_as_group(rtnl, veths))
    codes = rtnl.run_requests([link_delete_request(link.index) for link in singles])
    failures.extend((link, code) for link, code in zip(singles, codes) if code not in (0, errno.ENODEV))
    return failures


def _delete_as_group(rtnl, veths):
    group = unused_group(read_links(rtnl))
    codes = rtnl.run_requests([link_set_request(link.index, group=group) for link in veths])
    grouped = [link for link, code in zip(veths, codes) if code == 0]
    failures = [(link, code) for link, code in zip(veths, codes) if code not in (0, errno.ENODEV)]
    if not grouped:
        return failures
    code = rtnl.run_requests([group_delete_request(group)])[0]
    if code in (0, errno.ENODEV):
        return failures
    rtnl.run_requests([link_set_request(link.index, group=link.group) for link in grouped])
    return failures + [(link, code) for link in grouped]


def loopback_is_up(sock=None):
    """Whether lo (index 1 in every namespace) of the current namespace is administratively up."""
    with route_socket(sock) as rtnl:
        return any(parse_link(body).up for kind, body in rtnl.request(RTM_GETLINK, _ifinfo(LOOPBACK_IFINDEX))
                   if kind == RTM_NEWLINK)


def set_loopback(up, sock=None):
    """Bring lo of the current namespace up or down."""
    with route_socket(sock) as rtnl:
        code = rtnl.run_requests([link_set_request(LOOPBACK_IFINDEX, up=up)])[0]
    if code:
        raise LinkOperationError('ip link set lo %s: %s' % ('up' if up else 'down', describe_errno(code)))


def _ifname_bytes(ifname):
    return ifname.encode('utf-8') if isinstance(ifname, text_type) else ifname


# --- reporting ---------------------------------------------------------------------

def ip_argv(namespace, *args):
    """The ``ip`` command an operator would type for the same change."""
    argv = ['ip']
    if namespace:
        argv += ['-n', namespace]
    return argv + [str(a) for a in args]


def ip_command(namespace, *args):
    return format_command(ip_argv(namespace, *args))


def address_add_command(namespace, ifname, iface):
    args = ['addr', 'add', str(iface), 'dev', ifname]
    if iface.version == 6:
        args.append('nodad')
    return ip_command(namespace, *args)


def address_del_command(namespace, ifname, iface):
    return ip_command(namespace, 'addr', 'del', str(iface), 'dev', ifname)


def link_set_commands(namespace, ifname, up=None, mtu=None):
    commands = []
    if mtu is not None:
        commands.append(ip_command(namespace, 'link', 'set', ifname, 'mtu', mtu))
    if up is not None:
        commands.append(ip_command(namespace, 'link', 'set', ifname, 'up' if up else 'down'))
    return commands
