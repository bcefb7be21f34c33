# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The NAT rule model shared by the iptables and nftables backends.

A user rule (masquerade, snat, dnat) is validated into a ``NatRule``, expanded into
backend-neutral ``LogicalLine`` objects (the NAT line plus its hairpin and FORWARD
companions), and rendered into iptables or nft syntax. Every line we write carries
a tag ``lnt:<rule-id> <hash>`` (an iptables comment or an nft rule comment):

* ``<rule-id>`` names the user rule by what identifies it (for a DNAT: protocol,
  published address and port), so a later call finds, replaces or removes exactly
  the lines that rule made, and purge can tell our rules apart;
* ``<hash>`` is a digest of the line as we rendered it. iptables-save and nft print
  a rule in their own normalised form (they reorder matches, add ``-m tcp``, drop
  ``/32``), which differs between versions and between iptables-nft and -legacy;
  comparing our rendering with theirs would make idempotence depend on that. The
  comment survives every listing unchanged, so "is this line what we want" is a
  comparison of tags, and the listed text is used only for display and deletion.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
from collections import namedtuple

from ansible_collections.linuxnet.netns.plugins.module_utils.validation import (
    ValidationError,
    check_ifname,
    check_ip,
    check_netns_name,
    check_network,
    check_port,
    check_port_range,
    same_family,
)

KINDS = ('masquerade', 'snat', 'dnat', 'isolate')
PROTOCOLS = ('tcp', 'udp', 'sctp')
FORWARD_MODES = ('scoped', 'both', 'none')
STATES = ('present', 'absent')
FORWARD_POLICIES = ('accept', 'drop')

TAG_PREFIX = 'lnt:'
JUMP_TAG = 'lnt:jump'
# nft limits a rule comment to 128 bytes: 'lnt:' + id + ' ' + 8 hex digits must fit.
MAX_TAG_LENGTH = 128
MAX_ID_LENGTH = MAX_TAG_LENGTH - len('lnt:') - 9

# The four hooks our rules live in, as backend-neutral roles.
CHAIN_ROLES = ('prerouting', 'output', 'postrouting', 'forward')

RULE_KEYS = ('kind', 'source', 'destination', 'out_interface', 'in_interface', 'to_source',
             'protocol', 'port', 'to_address', 'to_port', 'forward', 'hairpin', 'random_fully', 'allow_from',
             'allow_ports', 'endpoints', 'balance', 'affinity_timeout', 'source_nat', 'state')
BALANCE_MODES = ('random', 'round_robin')
DNAT_SOURCE_NAT = ('none', 'masquerade', 'snat')
IDENTITY_WORDS = {
    'masquerade': 'source, destination and out_interface',
    'snat': 'family, source, destination and out_interface',
    'dnat': 'protocol, destination and port',
    'isolate': 'destination and out_interface',
}
_DNAT_ONLY = ('protocol', 'port', 'to_address', 'to_port', 'hairpin', 'endpoints', 'balance', 'affinity_timeout',
              'source_nat')


# One place a DNAT sends flows to: an address and its ports ((lo, hi), or None: the published ones).
Target = namedtuple('Target', 'address ports')


def family_name(family):
    return 'ipv4' if family == 4 else 'ipv6'


# --- the rule ----------------------------------------------------------------------------

class NatRule(object):
    """One validated user rule. Addresses are ipaddress objects, ports ints.

    ``family`` is 4 or 6, or None for an absent rule whose addresses do not tell
    (it then removes the rule of either family).
    """

    def __init__(self, field, namespace, kind, state='present', family=None, source=None,
                 destination=None, out_interface=None, in_interface=None, to_source=None,
                 protocol=None, port=None, to_address=None, to_port=None, forward='scoped',
                 hairpin=False, random_fully=False, allow_from=(), allow_ports=(), endpoints=(),
                 balance='random', affinity_timeout=None, source_nat='none'):
        self.field = field
        self.namespace = namespace
        self.kind = kind
        self.state = state
        self.family = family
        self.source = source
        self.destination = destination
        self.out_interface = out_interface
        self.in_interface = in_interface
        self.to_source = to_source
        self.protocol = protocol
        self.port = port
        self.to_address = to_address
        self.to_port = to_port
        self.forward = forward
        self.hairpin = hairpin
        self.random_fully = random_fully
        self.allow_from = tuple(allow_from)
        self.allow_ports = tuple(allow_ports)  # (protocol, (lo, hi), source network or None)
        self.endpoints = tuple(endpoints)  # Targets a DNAT spreads its flows over
        self.balance = balance
        self.affinity_timeout = affinity_timeout  # seconds a client sticks to its endpoint
        self.source_nat = source_nat  # of the DNAT'ed flows only

    @property
    def present(self):
        return self.state == 'present'

    def target_ports(self, endpoint):
        """The ports ``endpoint`` listens on: its own, or the published ports kept."""
        return endpoint.ports if endpoint.ports is not None else self.port

    def rule_ids(self):
        """The ids this rule is stored under (two when the family is unknown: absent only)."""
        families = [self.family] if self.family else [4, 6]
        return [rule_id(self, family) for family in families]


def port_text(ports):
    lo, hi = ports
    return str(lo) if lo == hi else '%d-%d' % (lo, hi)


def rule_id(rule, family):
    """What identifies a rule: the fields that choose which traffic it translates.

    The translation itself (to_source, to_address, to_port) and the companions
    (forward, hairpin, in_interface of a DNAT) are not part of the id: changing them
    changes the rule in place, which is what lets a DNAT target change be detected
    (and its stale conntrack entries deleted).
    """
    if rule.kind == 'masquerade':
        parts = ['masq', 's=%s' % rule.source, 'o=%s' % rule.out_interface]
        if rule.destination is not None:
            parts.append('d=%s' % rule.destination)
    elif rule.kind == 'snat':
        parts = ['snat', family_name(family)]
        for key, value in (('s', rule.source), ('d', rule.destination), ('o', rule.out_interface)):
            if value is not None:
                parts.append('%s=%s' % (key, value))
    elif rule.kind == 'isolate':
        parts = ['isolate', 'd=%s' % rule.destination, 'o=%s' % rule.out_interface]
    else:
        bound = rule.destination if rule.destination is not None else 'local-%s' % family_name(family)
        parts = ['dnat', 'p=%s' % rule.protocol, 'd=%s' % bound, 'port=%s' % port_text(rule.port)]
    text = ','.join(parts)
    if len(text) > MAX_ID_LENGTH:
        # Only a source NAT with long IPv6 networks and interface names gets here (a DNAT
        # id is at most ~70 bytes and stays readable, its cleanup parses it back).
        return '%s,h=%s' % (parts[0], hashlib.sha1(text.encode('utf-8')).hexdigest()[:16])
    return text


DnatKey = namedtuple('DnatKey', 'family protocol destination ports')


def parse_dnat_id(text):
    """The published side of a DNAT rule id (for conntrack cleanup after a purge)."""
    parts = text.split(',')
    if not parts or parts[0] != 'dnat':
        return None
    fields = dict(part.split('=', 1) for part in parts[1:] if '=' in part)
    try:
        lo, dummy, hi = fields['port'].partition('-')
        ports = (int(lo), int(hi or lo))
        bound = fields['d']
        if bound.startswith('local-'):
            family = 4 if bound == 'local-ipv4' else 6
            destination = None
        else:
            destination = ipaddress.ip_address(bound)
            family = destination.version
        return DnatKey(family, fields['p'], destination, ports)
    except (KeyError, ValueError):
        return None


# --- validation ---------------------------------------------------------------------------

def parse_rule(field, item, default_namespace=None):
    """Validate one user rule (a dict of RULE_KEYS, namespace, ...) into a NatRule.

    Raises ValidationError naming ``field`` + the option for the first problem.
    """
    def name(key):
        return '%s%s' % (field, key)

    kind = item.get('kind')
    if kind not in KINDS:
        raise ValidationError(name('kind'), kind, 'must be one of %s' % ', '.join(KINDS))
    state = item.get('state') or 'present'
    if state not in STATES:
        raise ValidationError(name('state'), state, 'must be one of %s' % ', '.join(STATES))
    namespace = item.get('namespace') or default_namespace
    if namespace is not None:
        check_netns_name(name('namespace'), namespace)
    forward = item.get('forward') or 'scoped'
    if forward not in FORWARD_MODES:
        raise ValidationError(name('forward'), forward, 'must be one of %s' % ', '.join(FORWARD_MODES))

    if kind == 'isolate':
        return _parse_isolate(field, item, namespace, state, name)
    for key in ('allow_from', 'allow_ports'):
        if item.get(key) is not None:
            raise ValidationError(name(key), item.get(key), 'applies only to kind isolate')
    if kind != 'dnat':
        for key in _DNAT_ONLY:
            if item.get(key) is not None:
                raise ValidationError(name(key), item.get(key), 'applies only to kind dnat (this rule is %s)' % kind)
    if kind not in ('snat', 'dnat') and item.get('to_source') is not None:
        raise ValidationError(name('to_source'), item.get('to_source'), 'applies only to kinds snat and dnat')
    if kind == 'dnat' and item.get('random_fully'):
        raise ValidationError(name('random_fully'), True, 'applies only to kinds masquerade and snat')

    interfaces = {}
    for key in ('in_interface', 'out_interface'):
        if item.get(key) is not None:
            interfaces[key] = check_ifname(name(key), item.get(key))

    rule = NatRule(field, namespace, kind, state=state, forward=forward,
                   in_interface=interfaces.get('in_interface'), out_interface=interfaces.get('out_interface'))
    if kind == 'dnat':
        _parse_dnat(rule, item, name)
    else:
        _parse_source_nat(rule, item, name)
    if forward == 'both' and rule.present and not (rule.in_interface and rule.out_interface):
        missing = 'in_interface' if not rule.in_interface else 'out_interface'
        raise ValidationError(name(missing), None,
                              "forward=both accepts traffic both ways between in_interface and out_interface, "
                              "so both must be set")
    return rule


def _parse_isolate(field, item, namespace, state, name):
    """kind isolate: forwarded packets to ``destination`` out of ``out_interface`` that no accept
    of ours let through are dropped; ``allow_from`` networks may reach it directly."""
    for key in RULE_KEYS:
        if key not in ('kind', 'destination', 'out_interface', 'allow_from', 'allow_ports', 'state') \
                and item.get(key) is not None:
            raise ValidationError(name(key), item.get(key), 'does not apply to kind isolate (it takes destination, '
                                                            'out_interface, allow_from and allow_ports)')
    if item.get('destination') is None:
        raise ValidationError(name('destination'), None, 'isolate needs destination (the inner network to protect)')
    if item.get('out_interface') is None:
        raise ValidationError(name('out_interface'), None,
                              'isolate needs out_interface (the host-side interface towards that network)')
    destination = check_network(name('destination'), item['destination'])
    out_interface = check_ifname(name('out_interface'), item['out_interface'])
    allow_from = []
    for index, value in enumerate(item.get('allow_from') or []):
        allowed = check_network('%sallow_from[%d]' % (field, index), value)
        same_family(name('allow_from'), destination, allowed)
        allow_from.append(allowed)
    allow_ports = [_parse_allowed_port('%sallow_ports[%d].' % (field, index), value, destination)
                   for index, value in enumerate(item.get('allow_ports') or [])]
    return NatRule(field, namespace, 'isolate', state=state, family=destination.version, destination=destination,
                   out_interface=out_interface, forward='none', allow_from=allow_from, allow_ports=allow_ports)


def _parse_allowed_port(field, value, destination):
    """One ``allow_ports`` item: new flows routed to a port of the network without DNAT (the remote
    endpoint of another node's NodePort), optionally only from ``source``."""
    if not isinstance(value, dict):
        raise ValidationError(field.rstrip('.'), value, 'must be a dictionary with protocol, port and source')
    unknown = sorted(set(value) - set(('protocol', 'port', 'source')))
    if unknown:
        raise ValidationError(field + unknown[0], value[unknown[0]], 'unknown key (allowed: protocol, port, source)')
    protocol = value.get('protocol') or 'tcp'
    if protocol not in PROTOCOLS:
        raise ValidationError(field + 'protocol', protocol, 'must be one of %s' % ', '.join(PROTOCOLS))
    if value.get('port') is None:
        raise ValidationError(field + 'port', None, 'the port (or "first-last") the network serves')
    ports = check_port_range(field + 'port', value['port'])
    source = None
    if value.get('source') is not None:
        source = check_network(field + 'source', value['source'])
        same_family(field + 'source', destination, source)
    return protocol, ports, source


def _parse_source_nat(rule, item, name):
    if item.get('source') is not None:
        rule.source = check_network(name('source'), item['source'])
    if item.get('destination') is not None:
        rule.destination = check_network(name('destination'), item['destination'])
    if item.get('to_source') is not None:
        rule.to_source = _check_unicast(name('to_source'), item['to_source'])
    rule.random_fully = bool(item.get('random_fully'))
    if rule.kind == 'masquerade':
        if rule.source is None:
            raise ValidationError(name('source'), None, 'masquerade needs source (the inner network, e.g. 192.168.45.0/24)')
        if rule.out_interface is None:
            raise ValidationError(name('out_interface'), None,
                                  'masquerade needs out_interface (it takes the address of that interface)')
    else:
        if rule.to_source is None and rule.present:
            raise ValidationError(name('to_source'), None, 'snat needs to_source (the address to translate to)')
        if rule.source is None and rule.destination is None and rule.out_interface is None:
            raise ValidationError(name('source'), None, 'snat needs at least one of source, destination or '
                                                        'out_interface to limit which traffic it translates')
    same_family(name('source'), rule.source, rule.destination, rule.to_source)
    versions = [a.version for a in (rule.source, rule.destination, rule.to_source) if a is not None]
    rule.family = versions[0] if versions else None
    if rule.family is None and rule.present:  # pragma: no cover - to_source is required when present
        raise ValidationError(name('to_source'), None, 'cannot tell IPv4 from IPv6')


def _parse_dnat(rule, item, name):
    protocol = item.get('protocol')
    if protocol is None:
        raise ValidationError(name('protocol'), None, 'dnat needs protocol (one of %s)' % ', '.join(PROTOCOLS))
    if protocol not in PROTOCOLS:
        raise ValidationError(name('protocol'), protocol, 'must be one of %s' % ', '.join(PROTOCOLS))
    rule.protocol = protocol
    if item.get('port') is None:
        raise ValidationError(name('port'), None, 'dnat needs port (the published port, e.g. 8080 or "8080-8090")')
    rule.port = check_port_range(name('port'), item['port'])
    if item.get('destination') is not None:
        rule.destination = _check_unicast(name('destination'), item['destination'])
    if item.get('endpoints') is not None:
        _parse_endpoints(rule, item, name)
    elif item.get('to_address') is not None:
        rule.to_address = _check_unicast(name('to_address'), item['to_address'])
        to_port = None
        if item.get('to_port') is not None:
            to_port = check_port(name('to_port'), item['to_port'])
            if rule.port[0] != rule.port[1]:
                raise ValidationError(name('to_port'), item['to_port'],
                                      'cannot be combined with a port range (port=%s): a range keeps its ports'
                                      % port_text(rule.port))
        rule.to_port = to_port
        rule.endpoints = (Target(rule.to_address, (to_port, to_port) if to_port else None),)
    elif rule.present:
        raise ValidationError(name('to_address'), None, 'dnat needs to_address (the address traffic is forwarded to) '
                                                        'or endpoints')
    for key in ('balance', 'affinity_timeout'):
        if item.get(key) is not None and item.get('endpoints') is None:
            raise ValidationError(name(key), item.get(key), 'applies only with endpoints')
    rule.balance = item.get('balance') or 'random'
    if rule.balance not in BALANCE_MODES:
        raise ValidationError(name('balance'), rule.balance, 'must be one of %s' % ', '.join(BALANCE_MODES))
    if item.get('affinity_timeout') is not None:
        rule.affinity_timeout = check_seconds(name('affinity_timeout'), item['affinity_timeout'])
    _parse_dnat_source_nat(rule, item, name)
    hairpin = item.get('hairpin')
    rule.hairpin = True if hairpin is None else bool(hairpin)
    rule.family = _dnat_family(rule, item, name)


def _dnat_family(rule, item, name):
    """The one family of a DNAT's addresses; a mix is reported on the option that differs."""
    named = [(name('destination'), item.get('destination'), rule.destination)]
    if item.get('endpoints') is not None:
        named += [(name('endpoints[%d].address' % index), ep.address, ep.address)
                  for index, ep in enumerate(rule.endpoints)]
    else:
        named.append((name('to_address'), item.get('to_address'), rule.to_address))
    named.append((name('to_source'), item.get('to_source'), rule.to_source))
    named = [entry for entry in named if entry[2] is not None]
    for field, value, address in named[1:]:
        if address.version != named[0][2].version:
            raise ValidationError(field, str(value), 'mixes IPv4 and IPv6: this is IPv%d, %s is IPv%d'
                                  % (address.version, named[0][0], named[0][2].version))
    return named[0][2].version if named else None


def _parse_endpoints(rule, item, name):
    """``endpoints``: the places a DNAT spreads new flows over (a NodePort's backends)."""
    if item.get('to_address') is not None or item.get('to_port') is not None:
        key = 'to_address' if item.get('to_address') is not None else 'to_port'
        raise ValidationError(name(key), item.get(key), 'is mutually exclusive with endpoints')
    listed = item['endpoints']
    if not isinstance(listed, (list, tuple)) or not listed:
        raise ValidationError(name('endpoints'), listed, 'must be a non-empty list of {address, port}')
    endpoints = []
    for index, value in enumerate(listed):
        field = name('endpoints[%d].' % index)
        if not isinstance(value, dict) or value.get('address') is None:
            raise ValidationError(field + 'address', value, 'each endpoint needs an address')
        unknown = sorted(set(value) - set(('address', 'port')))
        if unknown:
            raise ValidationError(field + unknown[0], value[unknown[0]], 'unknown key (allowed: address, port)')
        address = _check_unicast(field + 'address', value['address'])
        ports = None
        if value.get('port') is not None:
            port = check_port(field + 'port', value['port'])
            if rule.port[0] != rule.port[1]:
                raise ValidationError(field + 'port', value['port'], 'cannot be combined with a port range (port=%s): '
                                                                     'a range keeps its ports' % port_text(rule.port))
            ports = (port, port)
        endpoint = Target(address, ports)
        if any(other.address == address and (other.ports or rule.port) == (ports or rule.port) for other in endpoints):
            raise ValidationError(field + 'address', value['address'], 'the same endpoint is listed twice')
        endpoints.append(endpoint)
    rule.endpoints = tuple(endpoints)
    rule.to_address = endpoints[0].address


def _parse_dnat_source_nat(rule, item, name):
    """``source_nat`` of a DNAT: translate the source of the flows it DNAT'ed (and only those), so
    that a remote endpoint answers through this host."""
    rule.source_nat = item.get('source_nat') or 'none'
    if rule.source_nat not in DNAT_SOURCE_NAT:
        raise ValidationError(name('source_nat'), rule.source_nat, 'must be one of %s' % ', '.join(DNAT_SOURCE_NAT))
    if item.get('to_source') is not None:
        if rule.source_nat != 'snat':
            raise ValidationError(name('to_source'), item['to_source'],
                                  'applies to a dnat only with source_nat=snat (source_nat is %s)' % rule.source_nat)
        rule.to_source = _check_unicast(name('to_source'), item['to_source'])
    elif rule.source_nat == 'snat' and rule.present:
        raise ValidationError(name('to_source'), None, 'source_nat=snat needs to_source (the address to translate to)')


def check_seconds(field, value):
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        seconds = None
    if isinstance(value, float) and not value.is_integer():
        seconds = None
    if seconds is None or isinstance(value, bool) or not 1 <= seconds <= 86400 * 7:
        raise ValidationError(field, value, 'must be a number of seconds from 1 to 604800')
    return seconds


def _check_unicast(field, value):
    address = check_ip(field, value)
    if address.is_loopback:
        raise ValidationError(field, value, 'a loopback address cannot be translated to or from a namespace '
                                            '(packets would be martians)')
    if address.is_unspecified or address.is_multicast or address == ipaddress.ip_address('255.255.255.255'):
        raise ValidationError(field, value, 'must be a unicast address (not unspecified, multicast or broadcast)')
    return address


def parse_rules(items, default_namespace=None):
    """Validate every (field_prefix, item) pair; returns NatRules or raises the errors.

    All items are checked before anything runs; a list of every ValidationError is
    raised as one ValidationErrors so the user fixes them in one go.
    """
    rules = []
    errors = []
    for field, item in items:
        try:
            rules.append(parse_rule(field, item, default_namespace))
        except ValidationError as exc:
            errors.append(exc)
    if not errors:
        errors.extend(_conflicts(rules))
    if errors:
        raise ValidationErrors(errors)
    return rules


class ValidationErrors(ValidationError):
    """Several bad inputs; behaves like the first, its message names them all."""

    def __init__(self, errors):
        first = errors[0]
        super(ValidationErrors, self).__init__(first.field, first.value, first.reason)
        self.errors = list(errors)
        self.args = ('; '.join(str(e) for e in errors),)

    def __str__(self):
        return self.args[0]


def _conflicts(rules):
    """Two rules of one call with the same id, or DNATs whose published ports overlap."""
    errors = []
    seen = {}
    overlaps = _overlapping_dnats(rules)
    for index, rule in enumerate(rules):
        for rid in rule.rule_ids():
            key = (rule.namespace, rid)
            if key in seen:
                errors.append(ValidationError(rule.field.rstrip('.') or 'rule', rid,
                                              'the same rule as %s (same %s)' % (
                                                  seen[key].rstrip('.') or 'rule', IDENTITY_WORDS[rule.kind])))
            seen[key] = rule.field
        for earlier in overlaps.get(index, ()):
            other = rules[earlier]
            errors.append(ValidationError(rule.field + 'port', port_text(rule.port),
                                          'overlaps %sport=%s' % (other.field, port_text(other.port))))
    return errors


def _overlapping_dnats(rules):
    """{index of a DNAT: indexes of the earlier DNATs whose published ports overlap its own
    (same namespace, family, protocol and destination; equal ranges are the same rule)}.
    A sweep over the ports in order: 500 DNATs of one namespace were 125,000 comparisons."""
    groups = {}
    for index, rule in enumerate(rules):
        if rule.kind == 'dnat' and rule.present:
            key = (rule.namespace, rule.family, rule.protocol, rule.destination)
            groups.setdefault(key, []).append(index)
    overlaps = {}
    for indexes in groups.values():
        order = sorted(indexes, key=lambda n: rules[n].port[0])
        for position, first in enumerate(order):
            for other in order[position + 1:]:
                if rules[other].port[0] > rules[first].port[1]:
                    break
                if rules[other].port != rules[first].port:
                    overlaps.setdefault(max(first, other), []).append(min(first, other))
    for earlier in overlaps.values():
        earlier.sort()
    return overlaps


# --- logical lines ------------------------------------------------------------------------

class LogicalLine(object):
    """One rule line independent of the backend.

    Matches (all optional): src, dst (networks/addresses), dst_local (the packet is
    addressed to one of the namespace's own addresses), not_dst, in_if, out_if,
    proto, sport, dport ((lo, hi)), ctstate (tuple of 'RELATED', 'ESTABLISHED'),
    ct_dnat (the flow was DNAT'ed), ct_orig_dst, ct_orig_dport; pick ((mode, k): one in k of the
    flows that reach the line, at random or in turn); affinity ((name, 'check' or 'remember',
    seconds): the source was sent here within the timeout / remember it was).
    Actions: accept, masquerade, snat (to_addr), dnat (to_addr, to_ports or None); masquerade
    and snat with random_fully pick the translated port (or ICMP id) at random.
    """

    MATCHES = ('src', 'dst', 'not_dst', 'dst_local', 'in_if', 'out_if', 'proto', 'sport', 'dport',
               'ctstate', 'ct_dnat', 'ct_orig_dst', 'ct_orig_dport', 'pick', 'affinity')

    def __init__(self, chain, family, action, to_addr=None, to_ports=None, random_fully=False, **matches):
        unknown = set(matches) - set(self.MATCHES)
        if unknown:
            raise TypeError('unknown matches: %s' % ', '.join(sorted(unknown)))
        self.chain = chain
        self.family = family
        self.action = action
        self.to_addr = to_addr
        self.to_ports = to_ports
        self.random_fully = random_fully
        self.matches = dict((k, v) for k, v in matches.items() if v is not None and v is not False)
        # its place among the lines of its chain decides (a pick among endpoints): it stays a rule
        self.ordered = False

    def get(self, key):
        return self.matches.get(key)

    def __repr__(self):
        return 'LogicalLine(%s, %s, %s)' % (self.chain, self.action, self.matches)


def logical_lines(rule):
    """The lines a present rule needs, in order: NAT line(s), hairpin, FORWARD companions."""
    if rule.kind == 'isolate':
        # Replies to the network's own connections (to another namespace allowed in, say)
        # come back by conntrack state; new flows only from allow_from, or DNAT'ed by a rule.
        allowed = [LogicalLine('forward', rule.family, 'accept', src=source, dst=rule.destination,
                               out_if=rule.out_interface) for source in rule.allow_from]
        allowed += [LogicalLine('forward', rule.family, 'accept', src=source, dst=rule.destination,
                                out_if=rule.out_interface, proto=protocol, dport=ports)
                    for protocol, ports, source in rule.allow_ports]
        replies = LogicalLine('forward', rule.family, 'accept', dst=rule.destination, out_if=rule.out_interface,
                              ctstate=('RELATED', 'ESTABLISHED'))
        return allowed + [replies, LogicalLine('forward', rule.family, 'drop', dst=rule.destination,
                                               out_if=rule.out_interface)]
    if rule.kind == 'dnat':
        return _dnat_lines(rule) + _forward_lines(rule)
    action = 'masquerade' if rule.kind == 'masquerade' else 'snat'
    nat = LogicalLine('postrouting', rule.family, action, to_addr=rule.to_source, random_fully=rule.random_fully,
                      src=rule.source, dst=rule.destination, out_if=rule.out_interface)
    return [nat] + _forward_lines(rule)


def _published(rule, chain):
    """Matches for 'addressed to the published address' in ``chain``."""
    if rule.destination is not None:
        return dict(dst=rule.destination)
    if chain == 'output':
        # Locally generated traffic to 127.0.0.1 would leave with a loopback source
        # after DNAT and be dropped as a martian; leave loopback alone.
        loopback = ipaddress.ip_network('127.0.0.0/8' if rule.family == 4 else '::1/128')
        return dict(dst_local=True, not_dst=loopback)
    return dict(dst_local=True)


def _dnat_lines(rule):
    family = rule.family
    lines = _choice_lines(rule, 'prerouting', dict(in_if=rule.in_interface, **_published(rule, 'prerouting')))
    for endpoint in rule.endpoints:
        lines.extend(_source_nat_of_dnat(rule, endpoint))
    if rule.hairpin:
        if rule.in_interface:
            # An endpoint reaching its own published address arrives on the inner
            # interface, not on in_interface: translate it too.
            for endpoint in rule.endpoints:
                lines.extend(_choice_lines(rule, 'prerouting', dict(src=endpoint.address,
                                                                    **_published(rule, 'prerouting'))))
        # Hairpin: the target answering itself would reply directly (to its own
        # address) and bypass the reverse translation; masquerading makes the reply
        # come back through us.
        lines.extend(LogicalLine('postrouting', family, 'masquerade', src=endpoint.address, dst=endpoint.address,
                                 proto=rule.protocol, dport=rule.target_ports(endpoint), ct_dnat=True)
                     for endpoint in rule.endpoints)
        # Host-originated: locally generated packets skip PREROUTING.
        lines.extend(_choice_lines(rule, 'output', _published(rule, 'output')))
    return lines


def _choice_lines(rule, chain, matches):
    """The DNAT lines of ``chain`` that pick an endpoint for a new flow. One endpoint: one line.
    Several: with affinity, first one line per endpoint that sends a client seen within the
    timeout back to its endpoint; then one line per endpoint, each taking 1/k of the flows that
    reach it (k = endpoints left), the last one the rest: an even spread, random or in turn."""
    def dnat(endpoint, **extra):
        return LogicalLine(chain, rule.family, 'dnat', to_addr=endpoint.address, to_ports=endpoint.ports,
                           proto=rule.protocol, dport=rule.port, **dict(matches, **extra))

    lines = []
    if rule.affinity_timeout:
        lines.extend(dnat(endpoint, affinity=_affinity(rule, endpoint, 'check')) for endpoint in rule.endpoints)
    left = len(rule.endpoints)
    for endpoint in rule.endpoints:
        pick = (rule.balance, left) if left > 1 else None
        affinity = _affinity(rule, endpoint, 'remember') if rule.affinity_timeout else None
        lines.append(dnat(endpoint, pick=pick, affinity=affinity))
        left -= 1
    for line in lines:
        line.ordered = len(rule.endpoints) > 1  # the last one takes what the picks before it left
    return lines


def _affinity(rule, endpoint, operation):
    """(list name, operation, seconds): the clients recently sent to ``endpoint``. The name
    is derived from the rule, the endpoint and the timeout, so it changes with any of them."""
    key = '%s %s %s %d' % (rule.rule_ids()[0], endpoint.address, endpoint.ports, rule.affinity_timeout)
    name = 'lnt_aff_%d_%d_%s' % (rule.family, rule.affinity_timeout, hashlib.sha1(key.encode('utf-8')).hexdigest()[:12])
    return (name, operation, rule.affinity_timeout)


def _source_nat_of_dnat(rule, endpoint):
    """source_nat of a DNAT: only flows this rule DNAT'ed to ``endpoint`` (conntrack says so),
    not every flow to that address."""
    if rule.source_nat == 'none':
        return []
    return [LogicalLine('postrouting', rule.family, rule.source_nat, to_addr=rule.to_source, dst=endpoint.address,
                        proto=rule.protocol, dport=rule.target_ports(endpoint), ct_dnat=True,
                        ct_orig_dst=rule.destination, ct_orig_dport=rule.port)]


def _forward_lines(rule):
    family = rule.family
    if rule.forward == 'none':
        return []
    if rule.forward == 'both':
        # The article's step 9, literally: everything both ways between the two interfaces.
        return [LogicalLine('forward', family, 'accept', in_if=rule.in_interface, out_if=rule.out_interface),
                LogicalLine('forward', family, 'accept', in_if=rule.out_interface, out_if=rule.in_interface)]
    established = ('RELATED', 'ESTABLISHED')
    if rule.kind == 'dnat':
        lines = []
        for endpoint in rule.endpoints:
            ports = rule.target_ports(endpoint)
            lines.append(LogicalLine('forward', family, 'accept', in_if=rule.in_interface, out_if=rule.out_interface,
                                     dst=endpoint.address, proto=rule.protocol, dport=ports, ct_dnat=True,
                                     ct_orig_dst=rule.destination, ct_orig_dport=rule.port))
            lines.append(LogicalLine('forward', family, 'accept', src=endpoint.address, proto=rule.protocol,
                                     sport=ports, ctstate=established))
            if rule.hairpin and rule.in_interface:
                lines.append(LogicalLine('forward', family, 'accept', src=endpoint.address, dst=endpoint.address,
                                         proto=rule.protocol, dport=ports, ct_dnat=True,
                                         ct_orig_dst=rule.destination, ct_orig_dport=rule.port))
        return lines
    outbound = LogicalLine('forward', family, 'accept', src=rule.source, dst=rule.destination,
                           in_if=rule.in_interface, out_if=rule.out_interface)
    replies = LogicalLine('forward', family, 'accept', src=rule.destination, dst=rule.source,
                          in_if=rule.out_interface, out_if=rule.in_interface, ctstate=established)
    return [outbound, replies]


# --- rendering ----------------------------------------------------------------------------

def net_text(value, iptables):
    """An address or network as the backend writes it."""
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return '%s/%d' % (value, value.max_prefixlen) if iptables else str(value)
    return str(value)


def endpoint_text(address, ports):
    """A DNAT target as both backends write it: address, [v6 address], with :port or :lo-hi."""
    if ports is None:
        return str(address)
    host = '[%s]' % address if address.version == 6 else str(address)
    return '%s:%s' % (host, port_text(ports))


# --- batches ---------------------------------------------------------------------------------

class Transaction(object):
    """One atomic write: argv + input, the operator's equivalent commands, the rule lines
    it removes and adds, and the policy lines it changes (before, after) - for the diff.

    ``guard`` (optional): called with the runner at apply time; False skips the write.
    """

    def __init__(self, label, argv, lines, commands, removed, added, policies=(), guard=None):
        self.label = label
        self.argv = argv
        self.lines = lines
        self.commands = commands
        self.removed = removed
        self.added = added
        self.policies = list(policies)
        self.guard = guard

    @property
    def data(self):
        return '\n'.join(self.lines) + '\n' if self.lines else None


# --- tags and entries ---------------------------------------------------------------------

def make_tag(rid, rendered):
    """``lnt:<rule-id> <hash>``: who owns the line, and which rendering it is."""
    digest = hashlib.sha1(rendered.encode('utf-8')).hexdigest()[:8]
    tag = '%s%s %s' % (TAG_PREFIX, rid, digest)
    if len(tag) > MAX_TAG_LENGTH:  # pragma: no cover - ids are bounded well below this
        raise ValueError('rule tag too long: %s' % tag)
    return tag


def parse_tag(comment):
    """(rule_id, digest) of one of our tags; None for anything else (and for jumps)."""
    if not comment or not comment.startswith(TAG_PREFIX) or comment == JUMP_TAG:
        return None
    body = comment[len(TAG_PREFIX):]
    rid, sep, digest = body.rpartition(' ')
    if not sep or not rid:
        return None
    return rid, digest


class Entry(object):
    """One of our lines, wanted or found: where it lives, its tag, and its text.

    ``text`` is replayable: for iptables the rule spec after ``-A CHAIN`` (as
    iptables-save printed it, or as we rendered it), for nft the rule expression with
    its comment (as ``nft list`` printed it without the handle, or as we rendered
    it). ``handle`` is the nft rule handle of a listed rule.
    """

    def __init__(self, family, table, chain, tag, text, handle=None, role=None):
        self.family = family
        self.table = table
        self.chain = chain
        self.tag = tag
        self.text = text
        self.handle = handle
        self.role = role
        self.before = None  # for an entry to add: the kept entry it goes in front of
        # an element of a set or map (nft): no place in a chain, so no order to keep
        self.unordered = False
        self.container = None  # for a desired element: what its set/map and rule look like
        self.slot = None  # for an element: (set, key); a set holds one element per key
        parsed = parse_tag(tag)
        self.rule_id = parsed[0] if parsed else None

    @property
    def key(self):
        return (self.family, self.table, self.chain, self.tag)

    def __repr__(self):
        return 'Entry(%r, %r, %r, %r)' % (self.family, self.table, self.chain, self.text)


def plan_entries(current, desired, managed_ids):
    """Which current entries to keep/remove and which desired ones to add.

    Entries of rule ids outside ``managed_ids`` are kept untouched (rules this call
    does not name, unless purging). Entries compare by key (location + tag), as a
    multiset, so a duplicate of one of our lines is removed too.
    """
    wanted = {}
    containers = {}
    for entry in desired:
        wanted[entry.key] = wanted.get(entry.key, 0) + 1
        containers[entry.key] = entry.container
    keep, remove = [], []
    for entry in current:
        if entry.rule_id not in managed_ids:
            keep.append(entry)
        elif wanted.get(entry.key, 0) > 0:
            wanted[entry.key] -= 1
            # a kept element tells the backend which set/map (and rule) must stay
            entry.container = entry.container or containers[entry.key]
            keep.append(entry)
        else:
            remove.append(entry)
    kept = {}
    for entry in keep:
        kept[entry.key] = kept.get(entry.key, 0) + 1
    # An element another rule already put there serves this one too (two DNATs to one
    # endpoint share its FORWARD reply accept): the set holds one element per key.
    held = set(entry.slot for entry in keep if entry.slot is not None)
    add = []
    for entry in desired:
        if kept.get(entry.key, 0) > 0:
            kept[entry.key] -= 1
        elif entry.slot is None or entry.slot not in held:
            add.append(entry)
    return keep, remove, add


def in_desired_order(desired, keep, remove, add, managed_ids):
    """keep/remove/add that leave each of our chains in the order of ``desired``.

    Appending new entries would put them after the kept ones: the chain would differ from
    what a fresh apply writes, and an older entry of ours could decide before a newer one it
    overlaps. So each added entry gets ``before``: the kept entry it must be inserted in front
    of (None: appended), which the backends turn into a positioned insert. Where the kept
    entries of ours are themselves out of the desired order, every entry of ours in that
    chain is rewritten in order instead (one atomic transaction, as any other change)."""
    def location(entry):
        return (entry.family, entry.table, entry.chain)

    rank = {}
    for index, entry in enumerate(desired):
        rank.setdefault(location(entry), {}).setdefault(entry.key, index)
    kept_ours = {}
    for entry in keep:
        if entry.rule_id in managed_ids and not entry.unordered:
            kept_ours.setdefault(location(entry), []).append(entry)
    unordered = set()
    for where, entries in kept_ours.items():
        ranks = [rank.get(where, {}).get(entry.key) for entry in entries]
        if None in ranks or ranks != sorted(ranks):
            unordered.add(where)
    if unordered:
        moved = [entry for entry in keep if location(entry) in unordered and entry.rule_id in managed_ids]
        keep = [entry for entry in keep if entry not in moved]
        add = [entry for entry in add if location(entry) not in unordered] + \
            [entry for entry in desired if location(entry) in unordered and entry not in add]
        remove = remove + moved
    for entry in add:
        if entry.unordered:
            continue
        where = location(entry)
        mine = rank.get(where, {}).get(entry.key)
        later = [kept for kept in kept_ours.get(where, []) if where not in unordered
                 and mine is not None and rank[where].get(kept.key, -1) > mine]
        entry.before = later[0] if later else None
    add = sorted(add, key=lambda entry: (location(entry), rank.get(location(entry), {}).get(entry.key, len(desired))))
    return keep, remove, add


def managed_ids(rules, current, purge, namespace):
    """The rule ids a call decides about in ``namespace``: the ones it names, plus with
    ``purge`` every id of ours found there."""
    ids = set()
    for rule in rules:
        if rule.namespace == namespace:
            ids.update(rule.rule_ids())
    if purge:
        # None: a line in our chains/table without our tag; purge removes it too.
        ids.update(entry.rule_id for entry in current)
    return ids


def ordered_lines(rules):
    """(rule id, line) of the present ``rules`` in chain order: every drop (isolate) after
    every accept, so that an isolation never hides a published port of another rule."""
    lines = [(rule.rule_ids()[0], line) for rule in rules if rule.present for line in logical_lines(rule)]
    return [pair for pair in lines if pair[1].action != 'drop'] + [pair for pair in lines if pair[1].action == 'drop']
