# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The conntrack table of a namespace: read it, filter it, delete stale entries.

Everything goes through ctnetlink with pyroute2's low-level ``NFCTSocket`` opened
inside the namespace (``netns_session.entered``), which behaves the same on pyroute2
0.7.2 and 0.9.x for the three calls used here: ``dump()``, ``entry('del', ...)`` and
``close()``. The messages are decoded here rather than through pyroute2's
``ConntrackEntry`` because that class differs between the versions (0.7.2 names the
TCP state from the wrong table and has no zone). Deleting through pyroute2 works on
both versions (checked against the kernel), so no ``conntrack`` CLI fallback is needed.

Note: a namespace tracks connections only once a rule there uses conntrack (NAT, or a
``-m conntrack``/``ct state`` match); until then the table is empty.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import ipaddress
import socket

# pyroute2's ctnetlink classes, imported on first kernel access by _load_ctnetlink(): the
# import costs ~0.2 s, which a nat_rule call that has no entry to clean up need not pay.
NetlinkError = None
NFCTAttrTuple = None
NFCTSocket = None

from ansible.module_utils.six import string_types

from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import entered
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import (
    ValidationError,
    check_network,
    check_port,
)

FAMILIES = {'ipv4': socket.AF_INET, 'ipv6': socket.AF_INET6}
FAMILY_NAMES = {socket.AF_INET: 'ipv4', socket.AF_INET6: 'ipv6'}

# IP protocol numbers, named as the conntrack tool prints them.
PROTOCOLS = {
    'icmp': 1,
    'tcp': 6,
    'udp': 17,
    'dccp': 33,
    'gre': 47,
    'icmpv6': 58,
    'sctp': 132,
    'udplite': 136,
}
PROTOCOL_NAMES = dict((number, name) for name, number in PROTOCOLS.items())
PORT_PROTOCOLS = ('tcp', 'udp', 'dccp', 'sctp', 'udplite')
ICMP_PROTOCOLS = ('icmp', 'icmpv6')

# include/uapi/linux/netfilter/nf_conntrack_common.h, enum ip_conntrack_status.
# Bit 12 was IPS_UNTRACKED; kernels since 5.x reuse it as IPS_NAT_CLASH.
STATUS_BITS = (
    'EXPECTED', 'SEEN_REPLY', 'ASSURED', 'CONFIRMED', 'SRC_NAT', 'DST_NAT', 'SEQ_ADJUST',
    'SRC_NAT_DONE', 'DST_NAT_DONE', 'DYING', 'FIXED_TIMEOUT', 'TEMPLATE', 'NAT_CLASH',
    'HELPER', 'OFFLOAD', 'HW_OFFLOAD',
)

# enum tcp_conntrack (nf_conntrack_tcp.h); the conntrack tool prints these names.
TCP_STATES = ('NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT',
              'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2')
# enum sctp_conntrack (nf_conntrack_sctp.h).
SCTP_STATES = ('NONE', 'CLOSED', 'COOKIE_WAIT', 'COOKIE_ECHOED', 'ESTABLISHED',
               'SHUTDOWN_SENT', 'SHUTDOWN_RECD', 'SHUTDOWN_ACK_SENT', 'HEARTBEAT_SENT',
               'HEARTBEAT_ACKED')

NAT_KINDS = ('any', 'snat', 'dnat', 'both', 'none')

_ADDRESS_FIELDS = ('src', 'dst', 'reply_src', 'reply_dst')
_PORT_FIELDS = ('sport', 'dport', 'reply_sport', 'reply_dport')


# --- decoding -------------------------------------------------------------------------

def status_names(status):
    """Names of the set bits of CTA_STATUS, lowest bit first (unknown bits as BIT_n)."""
    names = []
    for bit in range(32):
        if status & (1 << bit):
            names.append(STATUS_BITS[bit] if bit < len(STATUS_BITS) else 'BIT_%d' % bit)
    return names


def protocol_name(number):
    return PROTOCOL_NAMES.get(number, str(number))


def _normal_address(text):
    return str(ipaddress.ip_address(text)) if text is not None else None


def decode_tuple(family, nla):
    """One CTA_TUPLE_ORIG/CTA_TUPLE_REPLY as {src, dst, sport, dport} or {src, dst, id, type, code}."""
    if nla is None:
        return {}
    ip = nla.get_attr('CTA_TUPLE_IP')
    proto = nla.get_attr('CTA_TUPLE_PROTO')
    prefix = 'CTA_IP_V6_' if family == socket.AF_INET6 else 'CTA_IP_V4_'
    result = {
        'src': _normal_address(ip.get_attr(prefix + 'SRC')) if ip is not None else None,
        'dst': _normal_address(ip.get_attr(prefix + 'DST')) if ip is not None else None,
    }
    if proto is None:
        return result
    name = protocol_name(proto.get_attr('CTA_PROTO_NUM'))
    if name in ICMP_PROTOCOLS:
        icmp = 'CTA_PROTO_ICMPV6_' if name == 'icmpv6' else 'CTA_PROTO_ICMP_'
        result['id'] = proto.get_attr(icmp + 'ID')
        result['type'] = proto.get_attr(icmp + 'TYPE')
        result['code'] = proto.get_attr(icmp + 'CODE')
    elif name in PORT_PROTOCOLS:
        result['sport'] = proto.get_attr('CTA_PROTO_SRC_PORT')
        result['dport'] = proto.get_attr('CTA_PROTO_DST_PORT')
    return result


def _protocol_state(msg, name):
    """The protocol's own state machine (TCP, SCTP); None for udp/icmp, which have none."""
    info = msg.get_attr('CTA_PROTOINFO')
    if info is None:
        return None
    if name == 'tcp':
        tcp = info.get_attr('CTA_PROTOINFO_TCP')
        state = tcp.get_attr('CTA_PROTOINFO_TCP_STATE') if tcp is not None else None
        table = TCP_STATES
    elif name == 'sctp':
        sctp = info.get_attr('CTA_PROTOINFO_SCTP')
        state = sctp.get_attr('CTA_PROTOINFO_SCTP_STATE') if sctp is not None else None
        table = SCTP_STATES
    else:
        return None
    if state is None:
        return None
    return table[state] if state < len(table) else str(state)


def decode_entry(msg):
    """A ctnetlink message (pyroute2 nfct_msg) as the dict conntrack_info returns."""
    family = msg['nfgen_family']
    orig = msg.get_attr('CTA_TUPLE_ORIG')
    proto = orig.get_attr('CTA_TUPLE_PROTO') if orig is not None else None
    name = protocol_name(proto.get_attr('CTA_PROTO_NUM')) if proto is not None else 'unknown'
    return {
        'family': FAMILY_NAMES.get(family, str(family)),
        'protocol': name,
        'state': _protocol_state(msg, name),
        'timeout': msg.get_attr('CTA_TIMEOUT'),
        'status': status_names(msg.get_attr('CTA_STATUS') or 0),
        'original': decode_tuple(family, orig),
        'reply': decode_tuple(family, msg.get_attr('CTA_TUPLE_REPLY')),
        'mark': msg.get_attr('CTA_MARK') or 0,
        'zone': msg.get_attr('CTA_ZONE') or 0,
    }


def entry_sort_key(entry):
    """Kernel dump order is hash order; sort for stable, readable output."""
    orig = entry['original']

    def address_key(text):
        if text is None:
            return (0, 0)
        address = ipaddress.ip_address(text)
        return (address.version, int(address))

    return (entry['family'], entry['protocol'], address_key(orig.get('src')),
            address_key(orig.get('dst')), orig.get('sport') or orig.get('id') or 0,
            orig.get('dport') or 0, entry['zone'])


# --- filtering ------------------------------------------------------------------------

def normalize_family(family):
    """'ipv4'/'ipv6' from 'ipv4', 'ipv6', 4, 6, AF_INET, AF_INET6; None stays None (both)."""
    if family is None:
        return None
    if isinstance(family, string_types):
        key = family.strip().lower()
        aliases = {'ipv4': 'ipv4', 'inet': 'ipv4', '4': 'ipv4', 'ipv6': 'ipv6', 'inet6': 'ipv6', '6': 'ipv6'}
        if key in aliases:
            return aliases[key]
    elif family in (4, socket.AF_INET):
        return 'ipv4'
    elif family in (6, socket.AF_INET6):
        return 'ipv6'
    raise ValidationError('family', family, "must be 'ipv4' or 'ipv6'")


def compile_filter(protocol=None, family=None, src=None, dst=None, sport=None, dport=None,
                   reply_src=None, reply_dst=None, reply_sport=None, reply_dport=None, nat='any'):
    """A predicate over decoded entries; every criterion left None matches anything.

    Addresses may be a single address or a CIDR network (``192.168.45.0/24``). Port
    criteria match only entries that have ports (never an ICMP entry). Raises
    ValidationError naming the option for a bad value, before anything is read.
    """
    if protocol is not None:
        protocol = str(protocol).lower()
        if protocol not in PROTOCOLS:
            raise ValidationError('protocol', protocol, 'must be one of %s' % ', '.join(sorted(PROTOCOLS)))
    family = normalize_family(family)
    nat = 'any' if nat is None else nat
    if nat not in NAT_KINDS:
        raise ValidationError('nat', nat, 'must be one of %s' % ', '.join(NAT_KINDS))
    given = dict(src=src, dst=dst, reply_src=reply_src, reply_dst=reply_dst)
    networks = dict((field, check_network(field, value, strict=False))
                    for field, value in given.items() if value is not None)
    for field, network in networks.items():
        if family is not None and network.version != (4 if family == 'ipv4' else 6):
            raise ValidationError(field, str(given[field]), 'is not an %s address (family=%s)' % (family, family))
    given = dict(sport=sport, dport=dport, reply_sport=reply_sport, reply_dport=reply_dport)
    ports = dict((field, check_port(field, value)) for field, value in given.items() if value is not None)

    def matches(entry):
        if protocol is not None and entry['protocol'] != protocol:
            return False
        if family is not None and entry['family'] != family:
            return False
        if not _nat_matches(entry['status'], nat):
            return False
        for field, network in networks.items():
            address = _tuple_value(entry, field)
            if address is None:
                return False
            address = ipaddress.ip_address(address)
            if address.version != network.version or address not in network:
                return False
        for field, port in ports.items():
            if _tuple_value(entry, field) != port:
                return False
        return True

    return matches


def _tuple_value(entry, field):
    """'reply_sport' -> entry['reply']['sport'], 'dst' -> entry['original']['dst']."""
    if field.startswith('reply_'):
        return entry['reply'].get(field[len('reply_'):])
    return entry['original'].get(field)


def _nat_matches(status, nat):
    snat = 'SRC_NAT' in status
    dnat = 'DST_NAT' in status
    return {
        'any': True,
        'snat': snat,
        'dnat': dnat,
        'both': snat and dnat,
        'none': not snat and not dnat,
    }[nat]


# --- kernel access --------------------------------------------------------------------

def _load_ctnetlink():
    """Fill in the pyroute2 names above that are still unset (tests may preset some)."""
    global NetlinkError, NFCTAttrTuple, NFCTSocket
    if NetlinkError is None:
        from pyroute2.netlink.exceptions import NetlinkError
    if NFCTAttrTuple is None or NFCTSocket is None:
        from pyroute2.netlink.nfnetlink import nfctsocket
        NFCTAttrTuple = NFCTAttrTuple or nfctsocket.NFCTAttrTuple
        NFCTSocket = NFCTSocket or nfctsocket.NFCTSocket


def _dump_messages(family_name):
    """Every entry of one family (None: all families) of the current namespace."""
    sock = NFCTSocket(nfgen_family=FAMILIES.get(family_name, socket.AF_UNSPEC))
    try:
        # Materialise the dump before anything else: pyroute2 0.9 closes its event loop
        # after each request, so a second request made while a dump is still being
        # iterated breaks the iteration ("Event loop is closed").
        return list(sock.dump())
    finally:
        sock.close()


def list_entries(namespace, family=None):
    """The decoded conntrack entries of ``namespace`` (None: the current one), sorted.

    ``family``: 'ipv4', 'ipv6' (also 4/6/AF_INET/AF_INET6), or None for both.
    """
    family_name = normalize_family(family)
    _load_ctnetlink()
    with entered(namespace):
        messages = _dump_messages(family_name)
    entries = [decode_entry(msg) for msg in messages]
    if family_name is not None:
        entries = [entry for entry in entries if entry['family'] == family_name]
    return sorted(entries, key=entry_sort_key)


def original_tuple(entry):
    """The NFCTAttrTuple that names ``entry`` in a delete request (its original tuple)."""
    orig = entry['original']
    kwargs = dict(family=FAMILIES[entry['family']], saddr=orig['src'], daddr=orig['dst'],
                  proto=PROTOCOLS[entry['protocol']])
    if entry['protocol'] in ICMP_PROTOCOLS:
        kwargs.update(icmp_id=orig.get('id'), icmp_type=orig.get('type'), icmp_code=orig.get('code'))
    else:
        kwargs.update(sport=orig.get('sport'), dport=orig.get('dport'))
    return NFCTAttrTuple(**kwargs)


def is_deletable(entry):
    """Entries whose original tuple we can express: ports or ICMP ids (not GRE keys)."""
    return entry['family'] in FAMILIES and (
        entry['protocol'] in PORT_PROTOCOLS or entry['protocol'] in ICMP_PROTOCOLS)


def _delete_one(sock, entry):
    """Delete one entry; False when it had already gone (expired or deleted meanwhile)."""
    kwargs = {'tuple_orig': original_tuple(entry)}
    if entry['zone']:
        kwargs['zone'] = entry['zone']
    try:
        sock.entry('del', **kwargs)
    except NetlinkError as exc:
        if exc.code == errno.ENOENT:
            return False
        raise
    return True


def delete_listed(namespace, entries):
    """Delete ``entries`` (as list_entries returned them) by their original tuple, one socket
    per family; return how many the kernel still had (one may have expired meanwhile)."""
    deletable = [entry for entry in entries if is_deletable(entry)]
    if not deletable:
        return 0
    deleted = 0
    _load_ctnetlink()
    with entered(namespace):
        for name in sorted(set(entry['family'] for entry in deletable)):
            sock = NFCTSocket(nfgen_family=FAMILIES[name])
            try:
                deleted += sum(1 for entry in deletable if entry['family'] == name and _delete_one(sock, entry))
            finally:
                sock.close()
    return deleted
