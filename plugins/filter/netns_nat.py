# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The netns_nat role's plan: its input checked as a whole and turned into one list per module.

This replaced a Jinja template that took about 30 s for 500 namespaces (its cross checks
compared every pair of namespaces and of port forwards). The result is the template's, to the
byte: the same keys in the same order, the same error messages in the same order, the same
quirks (values are checked in their string form, as Jinja's ``string`` filter makes it, and
``re.match`` with ``$`` accepted one trailing newline, which the filter no longer does).
tests/unit/test_netns_nat_plan.py compares it with the template's plans, recorded in
tests/unit/fixtures/netns_nat_plans.json. What was added since (``random_fully``, ``adopt``,
``reachable_from``, ``allow_inbound``, the isolate rules, ``services``) is compared apart.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import re
from collections.abc import Mapping

# The same conversions the template's filters used, so that odd values behave alike.
from ansible.plugins.filter.core import to_bool, to_json

from ansible_collections.linuxnet.netns.plugins.module_utils.validation import IFNAMSIZ, NETNS_NAME_MAX

VAR = 'netns_nat_namespaces'

_OCTET = r'(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
_IPV4_RE = re.compile(r'%s(\.%s){3}\Z' % (_OCTET, _OCTET))
_PREFIX_RE = re.compile(r'([0-9]|[12][0-9]|3[0-2])\Z')
_IFNAME_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,%d}\Z' % (IFNAMSIZ - 2))
_NETNS_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.+-]{0,%d}\Z' % (NETNS_NAME_MAX - 1))
_SERVICE_RE = re.compile(r'[a-z0-9][a-z0-9-]{0,39}\Z')
_PORT_RANGE_RE = re.compile(r'[0-9]{1,5}(-[0-9]{1,5})?\Z')

_IFNAME_HINT = ': an interface name is 1 to 15 letters, digits, _ . @ + -'
_ADDRESS_HINT = ': expected an IPv4 address with prefix length, such as 192.168.45.2/24'
_PORT_HINT = ': expected a port 1-65535 or a range "first-last"'


def _text(value):
    """Jinja's ``string`` filter: strings stay as they are, anything else goes through str()."""
    return value if isinstance(value, str) else str(value)


def _is_list(value):
    """The template's `is sequence and is not string and is not mapping`."""
    if isinstance(value, (str, Mapping)):
        return False
    try:
        len(value)
        value.__getitem__  # pylint: disable=pointless-statement
    except Exception:  # pylint: disable=broad-except
        return False
    return True


def _matches(regex, text):
    # The whole text: the patterns end in \Z, so a trailing newline does not pass.
    return regex.match(text) is not None


def _ipv4_int(text):
    return int(ipaddress.IPv4Address(text))


def _ipv4_text(number):
    return str(ipaddress.IPv4Address(number))


def _port_text(first, last):
    return first if first == last else '%d-%d' % (first, last)


def _jinja_int(value):
    """Jinja's ``int`` filter (0 when the value is not a number)."""
    try:
        return int(value, 10) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return 0


class _Plan(object):
    """Checks and normalises the namespaces one by one, then across them, then builds the lists."""

    def __init__(self, egress_interface, forward_mode):
        self.default_egress = egress_interface
        self.default_mode = forward_mode
        self.errors = []
        self.namespaces = []
        self.services = []

    def error(self, message):
        self.errors.append(message)

    # --- one namespace -------------------------------------------------------------------

    def check_namespace(self, field, ns):
        name = _text(ns.get('name', ''))
        if not _matches(_NETNS_RE, name) or name in ('.', '..'):
            self.error('%s.name=%s: a namespace name is 1 to 64 letters, digits, _ . + - '
                       '(not starting with . + -)' % (field, to_json(name)))
        egress = _text(ns.get('egress_interface') or self.default_egress)
        for key in ('host_interface', 'inner_interface'):
            value = _text(ns.get(key, ''))
            if not _matches(_IFNAME_RE, value):
                self.error('%s.%s=%s%s' % (field, key, to_json(value), _IFNAME_HINT))
        if not _matches(_IFNAME_RE, egress):
            self.error('%s.egress_interface=%s%s' % (field, to_json(egress), _IFNAME_HINT))
        if ns.get('host_interface', '') == egress:
            self.error('%s.host_interface=%s: is the egress interface; the veth end must have its own name'
                       % (field, to_json(egress)))

        host = self.parse_address(field, ns, 'host_address')
        inner = self.parse_address(field, ns, 'inner_address')
        if host is None or inner is None or not self.check_address_pair(field, ns, host, inner):
            return
        subnet = '%s/%d' % (_ipv4_text(host['net']), host['prefix'])

        want_route = to_bool(ns.get('default_route', True))
        gateway = _text(ns.get('gateway') or host['ip'])
        if want_route:
            self.check_gateway(field, gateway, host, inner, subnet)
        source_nat = _text(ns.get('source_nat') or 'masquerade')
        snat_address = _text(ns.get('snat_address') or '')
        self.check_source_nat(field, source_nat, snat_address)
        random_fully = to_bool(ns.get('random_fully', False))
        if random_fully and source_nat == 'none':
            self.error('%s.random_fully=true: applies only to source_nat masquerade or snat (source_nat is none)'
                       % field)
        mode = _text(ns.get('forward_mode') or self.default_mode)
        if mode not in ('scoped', 'both', 'none'):
            self.error('%s.forward_mode=%s: must be one of scoped, both, none' % (field, to_json(mode)))

        forwards = self.check_port_forwards(field, ns, name, host, inner, subnet)
        self.namespaces.append({
            'field': field, 'name': name,
            'host_interface': ns.get('host_interface'), 'host_address': ns['host_address'], 'host_ip': host['ip'],
            'inner_interface': ns.get('inner_interface'), 'inner_address': ns['inner_address'],
            'inner_ip': inner['ip'],
            'subnet': subnet, 'net_first': host['net'], 'net_last': host['net'] + host['size'] - 1,
            'default_route': want_route, 'gateway': gateway if want_route else None,
            'egress_interface': egress, 'source_nat': source_nat,
            'snat_address': snat_address if source_nat == 'snat' else None,
            'forward_mode': mode, 'port_forwards': forwards})
        if random_fully:
            # Only when asked for: without it, the plan stays the template's to the byte.
            self.namespaces[-1]['random_fully'] = True
        if to_bool(ns.get('adopt', False)):
            self.namespaces[-1]['adopt'] = True
        allow_inbound = self.check_allow_inbound(field, ns, mode)
        if allow_inbound:
            self.namespaces[-1]['allow_inbound'] = allow_inbound
        reachable_from = ns.get('reachable_from') or []
        if not _is_list(reachable_from) or not all(isinstance(name, str) for name in reachable_from):
            self.error('%s.reachable_from: must be a list of namespace names' % field)
        elif reachable_from:
            self.namespaces[-1]['reachable_from'] = list(reachable_from)

    def check_allow_inbound(self, field, ns, mode):
        """allow_inbound: ports of the namespace that routed traffic may open without DNAT (the
        endpoint of a NodePort published on another node), each optionally from one network."""
        items = ns.get('allow_inbound') or []
        if not _is_list(items):
            self.error('%s.allow_inbound: must be a list of {protocol, port, source}' % field)
            return []
        if items and mode != 'scoped':
            self.error('%s.allow_inbound: applies only with forward_mode scoped (with %s nothing isolates '
                       'the namespace)' % (field, mode))
            return []
        result = []
        for index, item in enumerate(items):
            where = '%s.allow_inbound[%d]' % (field, index)
            if not isinstance(item, Mapping):
                self.error('%s must be a dictionary, got %s' % (where, to_json(item)))
                continue
            protocol = _text(item.get('protocol') or 'tcp')
            ports = self.check_ports(where, dict(item), 'port')
            source = _text(item.get('source') or '')
            ok = ports is not None
            if protocol not in ('tcp', 'udp', 'sctp'):
                self.error('%s.protocol=%s: must be one of tcp, udp, sctp' % (where, to_json(protocol)))
                ok = False
            if source and not _is_network(source):
                self.error('%s.source=%s: expected an IPv4 network such as 192.168.1.0/24 (no host bits set)'
                           % (where, to_json(source)))
                ok = False
            if ok:
                allowed = {'protocol': protocol, 'port': _port_text(*ports)}
                if source:
                    allowed['source'] = source
                result.append(allowed)
        return result

    def parse_address(self, field, ns, key):
        """An IPv4 address with prefix length, or None after recording the error."""
        value = _text(ns.get(key, ''))
        parts = value.split('/')
        if len(parts) != 2 or not _matches(_IPV4_RE, parts[0]) or not _matches(_PREFIX_RE, parts[1]):
            self.error('%s.%s=%s%s' % (field, key, to_json(value), _ADDRESS_HINT))
            return None
        prefix = int(parts[1])
        size = 2 ** (32 - prefix)
        number = _ipv4_int(parts[0])
        return {'ip': parts[0], 'int': number, 'prefix': prefix, 'net': number // size * size, 'size': size}

    def check_address_pair(self, field, ns, host, inner):
        """Both ends in one subnet, two different usable host addresses."""
        if host['prefix'] != inner['prefix'] or host['net'] != inner['net']:
            self.error('%s.inner_address=%s: must be in the subnet of host_address %s'
                       % (field, to_json(ns['inner_address']), _text(ns['host_address'])))
            return False
        if host['int'] == inner['int']:
            self.error('%s.inner_address=%s: is the same address as host_address'
                       % (field, to_json(ns['inner_address'])))
            return False
        if host['prefix'] > 30:
            self.error('%s.host_address=%s: the prefix must be /30 or shorter (two host addresses plus '
                       'network and broadcast)' % (field, to_json(ns['host_address'])))
            return False
        usable = True
        for key, address in (('host_address', host), ('inner_address', inner)):
            if address['int'] in (address['net'], address['net'] + address['size'] - 1):
                self.error('%s.%s=%s: is the network or broadcast address of its subnet'
                           % (field, key, to_json(ns[key])))
                usable = False
        return usable

    def check_gateway(self, field, gateway, host, inner, subnet):
        if not _matches(_IPV4_RE, gateway):
            self.error('%s.gateway=%s: expected an IPv4 address' % (field, to_json(gateway)))
        elif not _in_subnet(gateway, host):
            self.error('%s.gateway=%s: is outside the namespace subnet %s' % (field, to_json(gateway), subnet))
        elif gateway == inner['ip']:
            self.error("%s.gateway=%s: is the namespace's own address" % (field, to_json(gateway)))

    def check_source_nat(self, field, source_nat, snat_address):
        if source_nat not in ('masquerade', 'snat', 'none'):
            self.error('%s.source_nat=%s: must be one of masquerade, snat, none' % (field, to_json(source_nat)))
        elif source_nat == 'snat' and not _matches(_IPV4_RE, snat_address):
            self.error('%s.snat_address=%s: source_nat=snat needs snat_address, an IPv4 address of the host'
                       % (field, to_json(snat_address)))
        elif source_nat != 'snat' and snat_address:
            self.error('%s.snat_address=%s: is only used with source_nat=snat (source_nat is %s)'
                       % (field, to_json(snat_address), source_nat))

    # --- the port forwards of one namespace ------------------------------------------------

    def check_port_forwards(self, field, ns, name, host, inner, subnet):
        pf_list = ns.get('port_forwards') or []
        if not _is_list(pf_list):
            self.error('%s.port_forwards: must be a list' % field)
            pf_list = []
        forwards = []
        for index, pf in enumerate(pf_list):
            where = '%s.port_forwards[%d]' % (field, index)
            if not isinstance(pf, Mapping):
                self.error('%s must be a dictionary, got %s' % (where, to_json(pf)))
                continue
            forward = self.check_port_forward(where, dict(pf), name, host, inner, subnet)
            if forward is not None:
                forwards.append(forward)
        return forwards

    def check_port_forward(self, where, pf, name, host, inner, subnet):
        """One normalised port forward, or None when it has errors (all of them recorded)."""
        ok = True
        protocol = _text(pf.get('protocol') or 'tcp')
        if protocol not in ('tcp', 'udp', 'sctp'):
            self.error('%s.protocol=%s: must be one of tcp, udp, sctp' % (where, to_json(protocol)))
            ok = False
        published = self.check_ports(where, pf, 'published_port')
        target = self.check_ports(where, pf, 'target_port')
        ok = ok and published is not None and target is not None
        # nat_rule keeps the ports of a published range (8080-8090 goes to 8080-8090)
        if ok and published[0] != published[1] and target != published:
            self.error('%s.target_port=%s: a published range keeps its ports; leave target_port unset or '
                       'equal to published_port %s' % (where, to_json(pf.get('target_port')),
                                                       to_json(pf.get('published_port'))))
            ok = False
        target_address = _text(pf.get('target_address') or inner['ip'])
        if not _matches(_IPV4_RE, target_address):
            self.error('%s.target_address=%s: expected an IPv4 address' % (where, to_json(target_address)))
            ok = False
        elif not _in_subnet(target_address, host):
            self.error('%s.target_address=%s: is outside the subnet %s of namespace %s'
                       % (where, to_json(target_address), subnet, name))
            ok = False
        elif target_address == host['ip']:
            self.error('%s.target_address=%s: is the host-side address %s, not an address inside namespace %s'
                       % (where, to_json(target_address), host['ip'], name))
            ok = False
        published_address = _text(pf.get('published_address') or '')
        if published_address and not _matches(_IPV4_RE, published_address):
            self.error('%s.published_address=%s: expected an IPv4 address of the host'
                       % (where, to_json(published_address)))
            ok = False
        if not ok:
            return None
        return {
            'field': where, 'protocol': protocol,
            'published_port': _port_text(*published),
            'published_first': published[0], 'published_last': published[1],
            'published_address': published_address or None,
            'target_address': target_address,
            'target_port': _port_text(*target)}

    def check_ports(self, where, pf, key):
        """(first, last) of a port or range; None when invalid (recorded unless an unset target_port)."""
        raw = pf.get(key)
        if raw is None:
            # target_port defaults to published_port (even a null one)
            raw = pf.get('published_port', '') if key == 'target_port' else ''
        text = _text(raw).strip()
        bounds = [int(part) for part in text.split('-')] if _matches(_PORT_RANGE_RE, text) else []
        if isinstance(raw, bool) or not bounds or min(bounds) < 1 or max(bounds) > 65535 or bounds[0] > bounds[-1]:
            if key in ('published_port', 'port') or key in pf:
                self.error('%s.%s=%s%s' % (where, key, to_json(raw), _PORT_HINT))
            return None
        return bounds[0], bounds[-1]

    # --- services with remote endpoints (a Kubernetes NodePort) ---------------------------------

    def check_service(self, field, svc):
        """One published service whose endpoints may live on other hosts; None when invalid."""
        errors = len(self.errors)
        name = _text(svc.get('name', ''))
        if not _matches(_SERVICE_RE, name):
            self.error('%s.name=%s: a service name is 1 to 40 lower-case letters, digits and - '
                       '(starting with a letter or digit)' % (field, to_json(name)))
        protocol = _text(svc.get('protocol') or 'tcp')
        if protocol not in ('tcp', 'udp', 'sctp'):
            self.error('%s.protocol=%s: must be one of tcp, udp, sctp' % (field, to_json(protocol)))
        published = self.check_ports(field, svc, 'published_port')
        if published is not None and published[0] != published[1]:
            self.error('%s.published_port=%s: a service publishes one port' % (field, to_json(svc.get('published_port'))))
        published_address = _text(svc.get('published_address') or '')
        if published_address and not _is_unicast(published_address):
            self.error('%s.published_address=%s: expected a unicast IPv4 address of the host (not loopback)'
                       % (field, to_json(published_address)))
        endpoints = self.check_endpoints(field, svc, published)
        balance = _text(svc.get('balance') or 'random')
        if balance not in ('random', 'round_robin'):
            self.error('%s.balance=%s: must be one of random, round_robin' % (field, to_json(balance)))
        affinity = _text(svc.get('affinity') or 'none')
        if affinity not in ('none', 'client_ip'):
            self.error('%s.affinity=%s: must be one of none, client_ip' % (field, to_json(affinity)))
        timeout = _jinja_int(svc.get('affinity_timeout', 10800))
        if not 1 <= timeout <= 604800 or isinstance(svc.get('affinity_timeout'), bool):
            self.error('%s.affinity_timeout=%s: must be a number of seconds from 1 to 604800'
                       % (field, to_json(svc.get('affinity_timeout'))))
        source_nat = _text(svc.get('source_nat') or 'masquerade')
        snat_address = _text(svc.get('snat_address') or '')
        self.check_source_nat(field, source_nat, snat_address)
        egress = _text(svc.get('egress_interface') or '')
        if egress and not _matches(_IFNAME_RE, egress):
            self.error('%s.egress_interface=%s%s' % (field, to_json(egress), _IFNAME_HINT))
        if len(self.errors) > errors:
            return
        self.services.append({
            'field': field, 'name': name, 'protocol': protocol,
            'published_port': _port_text(*published), 'published_first': published[0],
            'published_last': published[1], 'published_address': published_address or None,
            'endpoints': endpoints, 'balance': balance, 'affinity': affinity,
            'affinity_timeout': timeout if affinity == 'client_ip' else None,
            'source_nat': source_nat, 'snat_address': snat_address if source_nat == 'snat' else None,
            'egress_interface': egress or None})

    def check_endpoints(self, field, svc, published):
        items = svc.get('endpoints')
        if not _is_list(items) or not items:
            self.error('%s.endpoints: must be a non-empty list of {address, port}' % field)
            return []
        endpoints = []
        for index, item in enumerate(items):
            where = '%s.endpoints[%d]' % (field, index)
            if not isinstance(item, Mapping):
                self.error('%s must be a dictionary, got %s' % (where, to_json(item)))
                continue
            address = _text(item.get('address', ''))
            if not _is_unicast(address):
                self.error('%s.address=%s: expected a unicast IPv4 address (not loopback)' % (where, to_json(address)))
                continue
            port = item.get('port')
            if port is None:
                if published is None:
                    continue  # published_port has its own error; this endpoint follows it
                port = published[0]
            ports = self.check_ports(where, {'port': port}, 'port')
            if ports is None:
                continue
            if ports[0] != ports[1]:
                self.error('%s.port=%s: an endpoint listens on one port' % (where, to_json(port)))
                continue
            endpoint = {'address': address, 'port': ports[0]}
            if endpoint in endpoints:
                self.error('%s: %s:%d is already an endpoint of this service' % (where, address, ports[0]))
                continue
            endpoints.append(endpoint)
        return endpoints

    # --- across namespaces ------------------------------------------------------------------

    def check_duplicates(self, items):
        """Unique names and host interfaces (both veth ends of every pair live on the host)."""
        found = []
        for key, suffix in (('name', ''), ('host_interface', ' (both ends live on the host)')):
            order = 0 if key == 'name' else 1
            for later, earlier in _equal_pairs(items, key):
                found.append((later, earlier, order, '%s[%d].%s=%s: duplicates %s[%d].%s%s' % (
                    VAR, later, key, to_json(items[later][key]), VAR, earlier, key, suffix)))
        self.errors.extend(found_error[3] for found_error in sorted(found, key=lambda f: f[:3]))

    def check_subnet_overlaps(self):
        namespaces = self.namespaces
        pairs = _overlapping_pairs([(ns['net_first'], ns['net_last']) for ns in namespaces])
        for later, earlier in pairs:
            a, b = namespaces[later], namespaces[earlier]
            self.error('%s: subnet %s (of %s) overlaps %s subnet %s; each namespace needs its own subnet'
                       % (a['field'], a['subnet'], _text(a['host_address']), b['field'], b['subnet']))

    def check_reachable_from(self):
        """Each name in reachable_from is another namespace of the list (its subnet is allowed in)."""
        subnets = dict((ns['name'], ns['subnet']) for ns in self.namespaces)
        for ns in self.namespaces:
            for name in ns.get('reachable_from', []):
                if name not in subnets or name == ns['name']:
                    self.error('%s.reachable_from: %s is not another namespace of %s' % (ns['field'], to_json(name), VAR))
            ns['allow_from'] = [subnets[name] for name in ns.get('reachable_from', [])
                                if name in subnets and name != ns['name']]

    def check_published_ports(self):
        forwards = [pf for ns in self.namespaces for pf in ns['port_forwards']] + self.services
        conflicts = []
        for protocol in sorted(set(pf['protocol'] for pf in forwards)):
            indexes = [n for n, pf in enumerate(forwards) if pf['protocol'] == protocol]
            spans = [(forwards[n]['published_first'], forwards[n]['published_last']) for n in indexes]
            for later, earlier in _overlapping_pairs(spans):
                a, b = forwards[indexes[later]], forwards[indexes[earlier]]
                # one address each, or the same one (no address means every address of the host)
                if not a['published_address'] or not b['published_address'] \
                        or a['published_address'] == b['published_address']:
                    conflicts.append((indexes[later], indexes[earlier]))
        for later, earlier in sorted(conflicts):
            a, b = forwards[later], forwards[earlier]
            self.error('%s.published_port=%s: %s port already published by %s (%s)'
                       % (a['field'], to_json(a['published_port']), a['protocol'], b['field'],
                          _text(b['published_port'])))

    # --- the module calls -----------------------------------------------------------------------

    def module_lists(self):
        netns, pairs, pairs_absent, routes, rules = [], [], [], [], []
        for ns in self.namespaces:
            netns.append({'name': ns['name']})
            pairs.append({'name': ns['host_interface'], 'peer': ns['inner_interface'], 'peer_namespace': ns['name'],
                          'addresses': [ns['host_address']], 'peer_addresses': [ns['inner_address']]})
            pairs_absent.append({'name': ns['host_interface']})
            if ns['default_route']:
                routes.append({'namespace': ns['name'], 'dest': 'default', 'gateway': ns['gateway']})
            rules.extend(_source_nat_rules(ns))
            rules.extend(_dnat_rule(ns, pf) for pf in ns['port_forwards'])
            if ns['forward_mode'] == 'scoped':
                rules.append(_isolate_rule(ns))
        rules.extend(_service_rule(svc, self.default_mode) for svc in self.services)
        return {'errors': self.errors, 'namespaces': self.namespaces, 'services': self.services,
                'netns': netns, 'pairs': pairs,
                'pairs_absent': pairs_absent, 'routes': routes, 'rules': rules}


def _is_network(text):
    """A network in CIDR form whose host bits are zero (what nat_rule accepts)."""
    address, sep, prefix = text.partition('/')
    if not (sep and _matches(_IPV4_RE, address) and _matches(_PREFIX_RE, prefix)):
        return False
    size = 2 ** (32 - int(prefix))
    return _ipv4_int(address) % size == 0


def _is_unicast(text):
    """An IPv4 address a DNAT may go to or be published on (what nat_rule accepts)."""
    if not _matches(_IPV4_RE, text):
        return False
    address = ipaddress.IPv4Address(text)
    return not (address.is_loopback or address.is_unspecified or address.is_multicast
                or address == ipaddress.IPv4Address('255.255.255.255'))


def _in_subnet(text, address):
    return _ipv4_int(text) // address['size'] * address['size'] == address['net']


def _equal_pairs(items, key):
    """(later, earlier) index pairs of mappings whose ``key`` is equal (a missing one counts as None
    on the earlier side, as the template's `default(none)` did), in the template's loop order."""
    earlier_by_value = {}
    unhashable = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        if key in item:
            value = item[key]
            try:
                candidates = earlier_by_value.get(value, [])
            except TypeError:
                candidates = [pair[0] for pair in unhashable]
            for earlier in candidates:
                # re-compare: a dict lookup also matches by identity (NaN)
                if value == items[earlier].get(key):
                    yield index, earlier
        value = item.get(key)
        try:
            earlier_by_value.setdefault(value, []).append(index)
        except TypeError:
            unhashable.append((index, value))


def _overlapping_pairs(spans):
    """(later, earlier) index pairs of overlapping inclusive spans, sorted; a sweep instead of the
    template's comparison of every pair, which was the bulk of its time."""
    order = sorted(range(len(spans)), key=lambda n: spans[n][0])
    pairs = []
    for position, first in enumerate(order):
        last = spans[first][1]
        for other in order[position + 1:]:
            if spans[other][0] > last:
                break
            pairs.append((max(first, other), min(first, other)))
    return sorted(pairs)


def _source_nat_rules(ns):
    """Source NAT with its FORWARD companions (scoped and both need the host-side veth)."""
    if ns['source_nat'] == 'masquerade':
        rule = {'kind': 'masquerade', 'source': ns['subnet'], 'out_interface': ns['egress_interface'],
                'in_interface': ns['host_interface'], 'forward': ns['forward_mode']}
    elif ns['source_nat'] == 'snat':
        rule = {'kind': 'snat', 'source': ns['subnet'], 'out_interface': ns['egress_interface'],
                'in_interface': ns['host_interface'], 'to_source': ns['snat_address'],
                'forward': ns['forward_mode']}
    else:
        return []
    if ns.get('random_fully'):
        rule['random_fully'] = True
    return [rule]


def _isolate_rule(ns):
    """Scoped: from outside and from the other namespaces only published ports (and replies)
    reach this subnet, whatever the host's FORWARD policy."""
    rule = {'kind': 'isolate', 'destination': ns['subnet'], 'out_interface': ns['host_interface']}
    if ns.get('allow_from'):
        rule['allow_from'] = ns['allow_from']
    if ns.get('allow_inbound'):
        rule['allow_ports'] = ns['allow_inbound']
    return rule


def _service_rule(svc, forward_mode):
    """One DNAT spreading the service's new flows over its endpoints; its source NAT (unless
    none, which keeps the client's address) applies only to the flows it DNAT'ed."""
    rule = {'kind': 'dnat', 'protocol': svc['protocol'], 'port': svc['published_port'],
            'endpoints': svc['endpoints'], 'balance': svc['balance'], 'source_nat': svc['source_nat'],
            # both would need one inner interface; the accepts of the DNAT'ed flows are what both opens
            'forward': 'none' if forward_mode == 'none' else 'scoped'}
    if svc['snat_address']:
        rule['to_source'] = svc['snat_address']
    if svc['affinity_timeout']:
        rule['affinity_timeout'] = svc['affinity_timeout']
    if svc['published_address']:
        rule['destination'] = svc['published_address']
    if svc['egress_interface']:
        rule['out_interface'] = svc['egress_interface']
    return rule


def _dnat_rule(ns, pf):
    rule = {'kind': 'dnat', 'protocol': pf['protocol'], 'port': pf['published_port'],
            'to_address': pf['target_address'], 'out_interface': ns['host_interface']}
    if pf['published_first'] == pf['published_last']:
        rule['to_port'] = _jinja_int(pf['target_port'])
    if pf['published_address']:
        rule['destination'] = pf['published_address']
    if ns['forward_mode'] != 'both':
        rule['forward'] = ns['forward_mode']
    elif ns['source_nat'] in ('masquerade', 'snat'):
        # the source NAT rule's pair already accepts everything between egress and veth
        rule['forward'] = 'none'
    else:
        rule.update({'forward': 'both', 'in_interface': ns['egress_interface']})
    return rule


def topology_parts(plan, settings):
    """The part options of linuxnet.netns.netns_topology for state present and absent, each
    as JSON text: Ansible templates, copies and converts a large argument or result value by
    value (seconds for 500 namespaces), and a string in one piece (milliseconds). With the
    ownership record the call converges to exactly these lists: what the record holds and
    the lists do not is removed, our rules are always purged to the list, and ``absent``
    removes what the record holds whatever the lists say."""
    present, absent = {}, {}
    if plan['netns']:
        present['netns'] = absent['netns'] = {'namespaces': plan['netns']}
    if plan['pairs']:
        present['veth'] = {'pairs': plan['pairs']}
        absent['veth'] = {'pairs': plan['pairs_absent']}
    if plan['routes']:
        present['netns_route'] = {'routes': plan['routes']}
    if to_bool(settings.get('forwarding', True)):
        present['sysctl_forward'] = {'ipv4': True, 'record_dir': settings.get('state_dir')}
    absent['sysctl_forward'] = {'restore': True, 'record_dir': settings.get('state_dir')}
    policy = settings.get('forward_policy')
    present['nat_rule'] = {'rules': plan['rules'], 'backend': settings.get('backend', 'auto'), 'purge': True}
    if policy:
        present['nat_rule']['forward_policy'] = policy
    absent['nat_rule'] = {'rules': [], 'backend': settings.get('backend', 'auto'), 'purge': True}
    return {
        'present': dict((part, json.dumps(options, sort_keys=True)) for part, options in present.items()),
        'absent': dict((part, json.dumps(options, sort_keys=True)) for part, options in absent.items()),
        'ownership': {'record_dir': settings.get('state_dir'),
                      'adopt': [ns['name'] for ns in plan['namespaces'] if ns.get('adopt')]},
    }


def netns_nat_plan(namespaces, egress_interface='eth0', forward_mode='scoped', topology=None, services=None):
    """The plan of the netns_nat role for one host: errors plus the list argument of each module
    and, with ``topology`` (the role's module settings), the netns_topology part options.
    ``services`` are ports published with endpoints that may live on other hosts."""
    plan = _Plan(egress_interface, forward_mode)
    if not _is_list(namespaces):
        plan.error(VAR + ' must be a list of namespaces')
        namespaces = []
    for index, ns in enumerate(namespaces):
        field = '%s[%d]' % (VAR, index)
        if isinstance(ns, Mapping):
            # one plain copy: every read of Ansible's lazy containers costs a templating check
            plan.check_namespace(field, dict(ns))
        else:
            plan.error('%s must be a dictionary, got %s' % (field, to_json(ns)))
    services = services or []
    if not _is_list(services):
        plan.error('netns_nat_services must be a list of services')
        services = []
    for index, svc in enumerate(services):
        field = 'netns_nat_services[%d]' % index
        if isinstance(svc, Mapping):
            plan.check_service(field, dict(svc))
        else:
            plan.error('%s must be a dictionary, got %s' % (field, to_json(svc)))
    for later, earlier in _equal_pairs([svc for svc in services if isinstance(svc, Mapping)], 'name'):
        plan.error('netns_nat_services[%d].name: duplicates netns_nat_services[%d].name' % (later, earlier))
    plan.check_duplicates(namespaces)
    plan.check_subnet_overlaps()
    plan.check_reachable_from()
    plan.check_published_ports()
    result = plan.module_lists()
    if topology is None:
        return result
    # Only what the role still reads, and large parts as text: every structure in a fact costs
    # Ansible time per item, and the role turns the namespaces into a structure once, to publish.
    return {'errors': result['errors'], 'namespaces_json': json.dumps(result['namespaces']),
            'services_json': json.dumps(result['services']),
            'topology': topology_parts(result, dict(topology))}


class FilterModule(object):
    """linuxnet.netns filters."""

    def filters(self):
        return {'netns_nat_plan': netns_nat_plan}
