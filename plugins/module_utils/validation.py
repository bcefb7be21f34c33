# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Input checks that run before anything touches the kernel.

Every check raises ValidationError naming the field (with its list index when the
value came from a list) and the offending value, so the user knows what to fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible.module_utils.six import text_type

IFNAMSIZ = 16  # kernel buffer, including the trailing NUL
# Interface names: the kernel forbids '/', ':' (alias syntax), whitespace and NUL, and
# the names '.' and '..'. We are stricter: a conservative charset that is safe in every
# tool's argv and in nft/iptables comments.
_IFNAME_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.@+-]*\Z')
_NETNS_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.+-]*\Z')
NETNS_NAME_MAX = 64


class ValidationError(ValueError):
    """Bad user input: ``field`` holds ``value``, which is wrong because ``reason``."""

    def __init__(self, field, value, reason):
        self.field = field
        self.value = value
        self.reason = reason
        super(ValidationError, self).__init__('%s=%r: %s' % (field, value, reason))


def check_netns_name(field, value):
    """A namespace name is one path component under /run/netns."""
    if not isinstance(value, (str, text_type)) or not value:
        raise ValidationError(field, value, 'a namespace name must be a non-empty string')
    if value in ('.', '..') or '/' in value:
        raise ValidationError(field, value, "a namespace name must be a single path component (no '/', not '.' or '..')")
    if len(value.encode('utf-8')) > NETNS_NAME_MAX:
        raise ValidationError(field, value, 'a namespace name is at most %d bytes' % NETNS_NAME_MAX)
    if not _NETNS_RE.match(value):
        raise ValidationError(field, value, 'a namespace name may contain only letters, digits and _ . + - '
                                            '(and must not start with . + or -)')
    return value


def check_ifname(field, value):
    """Linux interface names: 1 to 15 bytes, no '/', ':', whitespace; safe characters only."""
    if not isinstance(value, (str, text_type)) or not value:
        raise ValidationError(field, value, 'an interface name must be a non-empty string')
    if len(value.encode('utf-8')) > IFNAMSIZ - 1:
        raise ValidationError(field, value, 'an interface name is at most %d bytes (it has %d)'
                              % (IFNAMSIZ - 1, len(value.encode('utf-8'))))
    if value in ('.', '..') or not _IFNAME_RE.match(value):
        raise ValidationError(field, value, 'an interface name may contain only letters, digits and _ . @ + - '
                                            '(no /, :, whitespace or shell characters)')
    return value


def check_interface_address(field, value):
    """An address with prefix length, e.g. 192.168.45.2/24 or fd00::1/64."""
    text = _as_text(field, value, 'an address with prefix length such as 192.168.45.2/24')
    if '/' not in text:
        raise ValidationError(field, value, 'needs a prefix length, e.g. %s/24' % text)
    try:
        return ipaddress.ip_interface(text)
    except ValueError as exc:
        raise ValidationError(field, value, 'is not a valid address/prefix (%s)' % exc)


def check_network(field, value, strict=True):
    """A network in CIDR form; strict means host bits must be zero."""
    text = _as_text(field, value, 'a network in CIDR form such as 192.168.45.0/24')
    try:
        return ipaddress.ip_network(text, strict=strict)
    except ValueError as exc:
        raise ValidationError(field, value, 'is not a valid CIDR network (%s)' % exc)


def check_ip(field, value):
    """A single IPv4 or IPv6 address without prefix length."""
    text = _as_text(field, value, 'an IP address')
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValidationError(field, value, 'is not a valid IPv4 or IPv6 address')


def check_port(field, value):
    """A TCP/UDP/SCTP port, 1..65535."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValidationError(field, value, 'a port must be an integer from 1 to 65535')
    if isinstance(value, bool) or str(port) != str(value).strip():
        raise ValidationError(field, value, 'a port must be an integer from 1 to 65535')
    if not 1 <= port <= 65535:
        raise ValidationError(field, value, 'a port must be from 1 to 65535')
    return port


def check_port_range(field, value):
    """One port (8080) or a range ("8080-8090"); returns (first, last)."""
    text = str(value).strip()
    if '-' in text:
        first, last = text.split('-', 1)
        lo = check_port(field, first.strip())
        hi = check_port(field, last.strip())
        if lo > hi:
            raise ValidationError(field, value, 'the first port of a range must not exceed the last')
        return lo, hi
    port = check_port(field, value)
    return port, port


def check_unique(field, items, key):
    """No two list items share ``key``."""
    seen = {}
    for index, item in enumerate(items):
        value = item.get(key)
        if value is None:
            continue
        if value in seen:
            raise ValidationError('%s[%d].%s' % (field, index, key), value,
                                  'duplicates %s[%d].%s' % (field, seen[value], key))
        seen[value] = index


def same_family(field, *addresses):
    versions = set(a.version for a in addresses if a is not None)
    if len(versions) > 1:
        raise ValidationError(field, [str(a) for a in addresses], 'mixes IPv4 and IPv6')


def _as_text(field, value, expected):
    """An address, network or address/prefix as text: nothing around it (a trailing newline
    would end up in rules and reports) and no IPv6 scope id (fe80::1%eth0)."""
    if not isinstance(value, (str, text_type)) or not value.strip():
        raise ValidationError(field, value, 'expected %s' % expected)
    if value != value.strip() or any(char.isspace() or ord(char) < 32 for char in value):
        raise ValidationError(field, value, 'must not contain whitespace or control characters')
    if '%' in value:
        raise ValidationError(field, value, 'an IPv6 scope id (%NAME) is not accepted here')
    return value
