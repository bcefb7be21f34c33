# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What netns_topology created on a host, and how a run converges that to the desired list.

The record (one JSON file per host, named after the host's netns cookie) lists the
namespaces the collection created or adopted (each with the key of the namespace it was,
so a later namespace of the same name is never mistaken for it), the veth pairs and routes
it made, the NAT backends it wrote rules with, and what the host's firewall looked like
before the first run (which iptables-nft tables existed, the FORWARD policies). Each run:

- refuses a desired namespace or host-side link that exists and is not in the record
  (someone else's), unless the namespace is listed in ``adopt``;
- removes what the record holds and the desired list no longer does (a namespace, a pair,
  a route), purges our rules that are no longer wanted, and moves our rules off a backend
  that is no longer used;
- once nothing is desired any more (``state=absent``, or an empty list), also puts back
  the forwarding sysctls, the FORWARD policies and the firewall tables it found, and
  deletes the record.

Objects that are not in the record are never deleted; adopted namespaces are never
deleted, only what was added to them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import socket
import tempfile

from ansible_collections.linuxnet.netns.plugins.module_utils.links import read_namespace_state
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    entered, namespace_exists, namespace_key, pids_by_namespace)
from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import XTABLES_WAIT

RECORD_FORMAT = 1
WRITTEN_BY = 'linuxnet.netns.netns_topology'

# The tables iptables-nft makes on first use; the ones that did not exist before us go again.
IPTABLES_NFT_TABLES = (('ip', 'nat'), ('ip', 'filter'), ('ip6', 'nat'), ('ip6', 'filter'))
OUR_NFT_TABLE = ('inet', 'linuxnet_netns')
BACKENDS = ('iptables', 'nftables')


class OwnershipError(Exception):
    """Input that would make the run touch objects that are not ours; nothing was changed."""

    def __init__(self, errors):
        super(OwnershipError, self).__init__('; '.join(errors))
        self.errors = errors


def record_path(record_dir):
    return os.path.join(record_dir, 'owned-%s.json' % namespace_key(None).replace(':', '-'))


def empty_record():
    return {'format': RECORD_FORMAT, 'written_by': WRITTEN_BY, 'namespaces': {}, 'pairs': {},
            'routes': [], 'backends': [], 'firewall_before': None}


def read_record(path):
    """The record at ``path`` (an empty one when there is none); raises ValueError for a file
    that is not a record of ours."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (IOError, OSError):
        return empty_record()
    if not isinstance(data, dict) or data.get('written_by') != WRITTEN_BY:
        raise ValueError('%s is not an ownership record of linuxnet.netns; remove it or use another '
                         'record_dir' % path)
    record = empty_record()
    record.update(data)
    return record


def write_record(path, record):
    """Atomically replace the record (write a temporary file beside it, then rename)."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    handle, tmp = tempfile.mkstemp(dir=directory, prefix='.owned.')
    with os.fdopen(handle, 'w') as stream:
        json.dump(record, stream, indent=1, sort_keys=True)
        stream.write('\n')
    os.rename(tmp, path)


def remove_record(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def link_index(name):
    """The ifindex of link ``name`` in this thread's namespace, or None."""
    try:
        return socket.if_nametoindex(name)
    except (OSError, ValueError):
        return None


def current_namespace_key(name):
    """The key of namespace ``name`` now, or None when there is none of that name."""
    if not namespace_exists(name):
        return None
    return namespace_key(name)


def namespace_addresses(namespace):
    """{ifname: set of 'address/prefix'} of every link of ``namespace`` (None: this one), read
    in-process through netlink; IPv6 link-local addresses are the kernel's and left out."""
    with entered(namespace):
        state = read_namespace_state()
    return dict((name, set(str(address) for address in state.addresses_of(name))) for name in state.links)


def remove_addresses(runner_for, removals, check_mode=False):
    """Delete (namespace, ifname, address) entries; returns the commands run (would run)."""
    commands = []
    for namespace, ifname, address in removals:
        argv = ['ip', 'addr', 'del', address, 'dev', ifname]
        if not check_mode:
            runner_for(namespace).run(argv, check=False)
        commands.append((['ip', '-n', namespace] + argv[1:]) if namespace else argv)
    return commands


# --- the firewall as we found it -----------------------------------------------------------------

def read_firewall(runner):
    """Which iptables-nft tables exist and the FORWARD policy of each filter table, read
    once before the first run changes anything (nft -j list tables, iptables-save -t filter)."""
    state = {'tables': [], 'chains': [], 'policies': {}}
    if runner.which('nft') is not None:
        state['tables'] = ['%s %s' % (family, name) for family, name in nft_objects(runner, 'tables')]
        # iptables-nft adds base chains to a table that exists (nat OUTPUT, say) as it needs them
        state['chains'] = ['%s %s %s' % entry for entry in nft_objects(runner, 'chains')
                           if (entry[0], entry[1]) in IPTABLES_NFT_TABLES]
    state['policies'] = forward_policies(runner)
    return state


def forward_policies(runner):
    """{'4': policy, '6': policy} of the iptables FORWARD chains (a family without the tool
    is left out)."""
    policies = {}
    for family, tool in (('4', 'iptables-save'), ('6', 'ip6tables-save')):
        if runner.which(tool) is None:
            continue
        rc, out = runner.run([tool, '-t', 'filter'], check=False)[:2]
        for line in out.splitlines() if rc == 0 else []:
            if line.startswith(':FORWARD '):
                policies[family] = line.split()[1]
    return policies


def nft_objects(runner, kind):
    """``nft -j list tables|chains`` as sorted (family, table) or (family, table, chain)."""
    rc, out = runner.run(['nft', '-j', 'list', kind], check=False)[:2]
    try:
        items = json.loads(out).get('nftables', []) if rc == 0 else []
    except (ValueError, AttributeError):
        items = []
    key = kind[:-1]
    found = []
    for item in items:
        if key not in item:
            continue
        obj = item[key]
        found.append((obj['family'], obj['table'], obj['name']) if key == 'chain' else (obj['family'], obj['name']))
    return sorted(found)


def restore_firewall(runner, before, check_mode=False):
    """Put the FORWARD policies back and delete the iptables-nft tables and our nft table that
    did not exist before and hold no rule now; returns the commands it ran. In check mode only
    the policies that would be put back are listed (our rules are still in the tables then, so
    which tables would end up empty cannot be told)."""
    commands = []
    if before is None:
        return [] if check_mode else drop_table_if_empty(runner, *OUR_NFT_TABLE)
    now = forward_policies(runner)
    for family, tool in (('4', 'iptables'), ('6', 'ip6tables')):
        wanted = before['policies'].get(family)
        if wanted is not None and now.get(family, wanted) != wanted:
            argv = [tool, '-w', str(XTABLES_WAIT), '-P', 'FORWARD', wanted]
            if not check_mode:
                runner.run(argv)
            commands.append(argv)
    if check_mode or runner.which('nft') is None:
        return commands
    existed = set(before['tables'])
    for family, name in IPTABLES_NFT_TABLES + (OUR_NFT_TABLE,):
        if '%s %s' % (family, name) not in existed:
            commands.extend(drop_table_if_empty(runner, family, name))
    chains_before = set(before.get('chains') or [])
    if before.get('chains') is not None:
        for family, table, chain in nft_objects(runner, 'chains'):
            if '%s %s' % (family, table) in existed and (family, table) in IPTABLES_NFT_TABLES \
                    and '%s %s %s' % (family, table, chain) not in chains_before:
                commands.extend(drop_chain_if_empty(runner, family, table, chain))
    return commands


def drop_chain_if_empty(runner, family, table, chain):
    """Delete a base chain iptables-nft added for us to a table that existed, when it holds
    no rule and accepts by policy (what iptables-save shows of it: nothing)."""
    rc, out = runner.run(['nft', '-j', 'list', 'chain', family, table, chain], check=False)[:2]
    try:
        items = json.loads(out).get('nftables', []) if rc == 0 else []
    except (ValueError, AttributeError):
        return []
    chains = [item['chain'] for item in items if 'chain' in item]
    if not chains or any('rule' in item for item in items) or chains[0].get('policy', 'accept') != 'accept':
        return []
    argv = ['nft', 'delete', 'chain', family, table, chain]
    # a chain something else still jumps to stays: it is not ours to break
    return [argv] if runner.run(argv, check=False)[0] == 0 else []


def drop_table_if_empty(runner, family, name):
    """Delete nft table ``family name`` when it exists and holds no rule (only base chains
    with their policies, which is all a purge of ours can leave); returns the commands run."""
    if runner.which('nft') is None:
        return []
    rc, out = runner.run(['nft', '-j', 'list', 'table', family, name], check=False)[:2]
    if rc != 0:
        return []  # not there
    try:
        items = json.loads(out).get('nftables', [])
    except (ValueError, AttributeError):
        return []
    if any('rule' in item for item in items):
        return []  # rules live there (someone else's, or ours still wanted)
    argv = ['nft', 'delete', 'table', family, name]
    runner.run(argv)
    return [argv]


def normal_address(text):
    """'10.0.0.1/24' as ip(8) prints it (no leading zeros, IPv6 compressed)."""
    try:
        return str(ipaddress.ip_interface(text))
    except ValueError:
        return text


def route_family(route):
    """ipv4 or ipv6, as the route's own family, gateway or destination says."""
    if route.get('family'):
        return route['family']
    return 'ipv6' if ':' in (route.get('gateway') or route.get('dest') or '') else 'ipv4'


# --- converging ---------------------------------------------------------------------------------------

class Convergence(object):
    """The desired parts of one netns_topology call turned into the parts that reach exactly
    that state from what the record says we made, plus what to do after them."""

    def __init__(self, record, state, adopt, path=None, read_addresses=None, host_addresses=None, check_mode=False):
        self.record = record
        self.state = state
        self.adopt = set(adopt or ())
        self.path = path
        self.given = {}
        # (namespace or None, ifname) -> set of 'address/prefix': the addresses a link has now
        self.read_addresses = read_addresses or (lambda namespace, ifname: set())
        self.adopted_before = {}  # adopted pair -> {'host': set, 'peer': set} before this run
        self.address_removals = []  # (namespace or None, ifname, 'address/prefix')
        # () -> {ifname: set of 'address/prefix'} of the host's links (its own namespace)
        self.host_addresses = host_addresses or (lambda: {})
        self.check_mode = check_mode
        self.pids_of = pids_by_namespace()
        self.warnings = []
        self.owned = {}  # name -> record entry of the namespaces that are still ours
        self.existed = {}  # name -> True for desired namespaces / links that exist before the run
        self.links_before = {}
        self.last_gone = False
        self.cleanup_backends = []
        self.errors = []

    # -- reading the host --

    def check_owned_namespaces(self):
        """Keep the recorded namespaces that are still the very namespace we made."""
        for name, entry in sorted(self.record['namespaces'].items()):
            if current_namespace_key(name) == entry.get('key'):
                self.owned[name] = entry

    def refuse_foreign(self, namespaces, pairs):
        for name in namespaces:
            exists = namespace_exists(name)
            self.existed[name] = exists
            if exists and name not in self.owned and name not in self.adopt:
                self.errors.append(
                    'namespace %s already exists and was not created by linuxnet.netns on this host; '
                    'nothing was changed. Set adopt: true in its entry to manage it (adopt never '
                    'deletes it), or pick another name' % name)
        for pair in pairs:
            name, peer_ns = pair['name'], pair.get('peer_namespace')
            index = link_index(name)
            self.links_before[name] = index
            recorded = self.record['pairs'].get(name)
            ours = recorded is not None and recorded.get('ifindex') == index
            if index is not None and not ours and peer_ns not in self.adopt:
                self.errors.append(
                    'interface %s already exists on the host and was not created by linuxnet.netns; '
                    'nothing was changed. Rename host_interface, remove that link, or set adopt: true '
                    'on namespace %s' % (name, peer_ns))

    def check_host(self, pairs, parts):
        """What only the host can tell: an inner subnet must not overlap a network the host is
        on (it would take over the host's own routes, the SSH path among them), the egress
        interfaces must exist and a fixed SNAT address must be one of the host's."""
        ours = set(pair['name'] for pair in pairs) | set(self.record['pairs'])
        our_indexes = set(entry.get('ifindex') for entry in self.record['pairs'].values()) - set([None])
        host = self.host_addresses()
        networks = [(ifname, ipaddress.ip_interface(text).network) for ifname, texts in sorted(host.items())
                    if ifname not in ours and ifname != 'lo' and link_index(ifname) not in our_indexes
                    for text in sorted(texts)]
        for pair in pairs:
            for text in pair.get('addresses') or []:
                try:
                    subnet = ipaddress.ip_interface(text).network
                except ValueError:
                    continue  # the veth part names it
                clash = [(ifname, net) for ifname, net in networks if net.version == subnet.version
                         and net.overlaps(subnet)]
                for ifname, net in clash:
                    self.errors.append('the inner subnet %s of %s overlaps %s of the host\'s interface %s; '
                                       'nothing was changed. Pick a subnet the host is not on'
                                       % (subnet, pair['name'], net, ifname))
        addresses = set(str(ipaddress.ip_interface(text).ip) for texts in host.values() for text in texts)
        for rule in (parts.get('nat_rule') or {}).get('rules') or []:
            towards = rule.get('source') if rule.get('kind') != 'dnat' else 'port %s' % rule.get('port')
            egress_checked = rule.get('kind') in ('masquerade', 'snat') or rule.get('endpoints')
            if egress_checked and rule.get('out_interface') and link_index(rule['out_interface']) is None:
                message = ('the egress interface %s (out_interface of the %s rule for %s) does not exist on '
                           'the host' % (rule['out_interface'], rule['kind'], towards))
                if self.check_mode:
                    self.warnings.append(message + ' (yet: check mode goes on, a real run fails)')
                else:
                    self.errors.append(message + '; nothing was changed')
            if rule.get('kind') in ('snat', 'dnat') and rule.get('to_source') and rule['to_source'] not in addresses:
                self.errors.append('snat_address %s (to_source of the %s rule for %s) is not an address of the '
                                   'host (it has: %s); replies could never come back. Nothing was changed'
                                   % (rule['to_source'], rule['kind'], towards, ', '.join(sorted(addresses)) or 'none'))

    # -- the parts --

    def converge(self, parts):
        """The parts to run (a new dict), given the desired ``parts`` (part -> options)."""
        self.given = parts
        namespaces = [item['name'] for item in (parts.get('netns') or {}).get('namespaces') or []
                      if item.get('state', 'present') == 'present']
        pairs = [pair for pair in (parts.get('veth') or {}).get('pairs') or []
                 if pair.get('state', 'present') == 'present' and not pair.get('namespace')]
        self.check_owned_namespaces()
        if self.state == 'absent':
            namespaces, pairs = [], []
        self.refuse_foreign(namespaces, pairs)
        if pairs or (parts.get('nat_rule') or {}).get('rules'):
            self.check_host(pairs, parts)
        if self.errors:
            raise OwnershipError(self.errors)
        # Services (DNATs to endpoints on other hosts) keep the host ours without any namespace.
        rules = [rule for rule in (parts.get('nat_rule') or {}).get('rules') or []
                 if rule.get('state', 'present') == 'present']
        self.last_gone = not namespaces and not (rules and self.state != 'absent')
        wanted_names = set(namespaces)
        result = {}
        netns = dict(parts.get('netns') or {})
        netns['namespaces'] = [{'name': name, 'state': 'absent'} for name in sorted(self.owned)
                               if name not in wanted_names and not self.owned[name].get('adopted')] + \
            [item for item in netns.get('namespaces') or [] if item['name'] in wanted_names]
        if netns['namespaces']:
            result['netns'] = netns
        result.update(self.converge_pairs(parts, pairs, wanted_names))
        routes = self.converge_routes(parts, wanted_names)
        if routes:
            result['netns_route'] = routes
        result.update(self.converge_sysctl(parts))
        result.update(self.converge_rules(parts))
        return result

    def converge_pairs(self, parts, pairs, wanted_names):
        wanted = set(pair['name'] for pair in pairs)
        removed = []
        for name, entry in sorted(self.record['pairs'].items()):
            if name in wanted or entry.get('adopted'):
                continue
            if entry.get('namespace') in self.owned and entry['namespace'] not in wanted_names \
                    and not self.owned[entry['namespace']].get('adopted') \
                    and not self.pids_of(entry['namespace']):
                # goes with its namespace; one that processes keep alive after its name is
                # removed would keep the pair too, so that pair is deleted by name
                continue
            if link_index(name) == entry.get('ifindex'):
                removed.append({'name': name, 'state': 'absent'})
        self.plan_address_removals(pairs)
        kept = []
        for pair in pairs:
            pair = dict(pair)
            peer_ns = pair.get('peer_namespace')
            adopted_ns = peer_ns in self.adopt or (self.owned.get(peer_ns) or {}).get('adopted')
            recorded = self.record['pairs'].get(pair['name'])
            pair_is_ours = self.links_before.get(pair['name']) is None or (
                recorded is not None and not recorded.get('adopted'))
            if not pair_is_ours:
                self.adopted_before[pair['name']] = {
                    'host': self.read_addresses(None, pair['name']),
                    'peer': self.read_addresses(peer_ns, pair.get('peer')) if pair.get('peer') else set()}
            if pair_is_ours:
                pair.setdefault('purge_addresses', True)
                # Drift in what we own (a renamed or half-deleted end) is repaired, never
                # refused; conflicts with foreign links were refused above.
                if not adopted_ns:
                    pair.setdefault('recreate', True)
            kept.append(pair)
        veth = dict(parts.get('veth') or {})
        veth['pairs'] = removed + kept
        return {'veth': veth} if veth['pairs'] else {}

    def plan_address_removals(self, pairs):
        """An adopted pair keeps its own addresses; the ones the role added and no longer wants
        (or all of them once the pair leaves the list) are removed."""
        desired = dict((pair['name'], pair) for pair in pairs)
        for name, entry in sorted(self.record['pairs'].items()):
            if not entry.get('adopted') or link_index(name) != entry.get('ifindex'):
                continue
            pair = desired.get(name) or {}
            for side, namespace, ifname, key in (('host', None, name, 'addresses'),
                                                 ('peer', entry.get('namespace'), entry.get('peer'), 'peer_addresses')):
                wanted = set(normal_address(a) for a in pair.get(key) or [])
                for address in (entry.get('added') or {}).get(side) or []:
                    if address not in wanted and ifname:
                        self.address_removals.append((namespace, ifname, address))

    def converge_routes(self, parts, wanted_names):
        given = dict(parts.get('netns_route') or {})
        routes = [route for route in given.get('routes') or [] if route.get('namespace') in wanted_names]
        wanted = set((route.get('namespace'), route.get('dest')) for route in routes)
        stale = []
        for route in self.record['routes']:
            namespace = route.get('namespace')
            key = (namespace, route.get('dest'))
            if key in wanted or namespace not in self.owned:
                continue
            going = namespace not in wanted_names and not self.owned[namespace].get('adopted')
            if not going and namespace_exists(namespace):
                stale.append({'namespace': namespace, 'dest': route['dest'], 'family': route_family(route),
                              'state': 'absent'})
        given['routes'] = stale + routes
        return given if given['routes'] else None

    def converge_sysctl(self, parts):
        given = parts.get('sysctl_forward')
        if self.last_gone:
            record_dir = (given or {}).get('record_dir') or self.record.get('sysctl_record_dir')
            return {'sysctl_forward': {'restore': True, 'record_dir': record_dir}} if record_dir else {}
        return {'sysctl_forward': given} if given else {}

    def converge_rules(self, parts):
        """Our rules are purged to exactly the desired list; a backend the record holds rules
        in and that is no longer asked for is emptied first (``cleanup_backends``), so that
        an old rule can never shadow a new one in the other backend."""
        given = dict(parts.get('nat_rule') or {})
        recorded = [backend for backend in self.record['backends'] if backend in BACKENDS]
        if self.last_gone:
            backends = recorded or [given.get('backend', 'auto')]
            self.cleanup_backends = backends[1:]
            return {'nat_rule': {'backend': backends[0], 'rules': [], 'purge': True}}
        if not given:
            return {}
        requested = given.get('backend', 'auto')
        if requested != 'auto':  # auto keeps to the backend that already holds our rules
            self.cleanup_backends = [backend for backend in recorded if backend != requested]
        given['purge'] = True
        return {'nat_rule': given}

    def added_addresses(self, pair, recorded):
        """The addresses of an adopted pair that the role added: what it had added before and
        still wants, and what it wants now that the pair did not have before this run."""
        before = self.adopted_before.get(pair['name']) or {'host': set(), 'peer': set()}
        previous = (recorded or {}).get('added') or {}
        added = {}
        for side, key in (('host', 'addresses'), ('peer', 'peer_addresses')):
            wanted = set(normal_address(a) for a in pair.get(key) or [])
            added[side] = sorted((set(previous.get(side) or []) & wanted) | (wanted - before[side]))
        return added

    # -- the record after a successful run --

    def next_record(self, used_backend, firewall_before):
        parts = self.given
        if self.last_gone:
            return None
        record = empty_record()
        record['firewall_before'] = firewall_before if firewall_before is not None else self.record['firewall_before']
        sysctl = parts.get('sysctl_forward') or {}
        record['sysctl_record_dir'] = sysctl.get('record_dir') or self.record.get('sysctl_record_dir')
        for item in (parts.get('netns') or {}).get('namespaces') or []:
            name = item['name']
            if item.get('state', 'present') != 'present':
                continue
            previous = self.owned.get(name)
            adopted = previous.get('adopted') if previous else bool(self.existed.get(name))
            record['namespaces'][name] = {'key': namespace_key(name), 'adopted': bool(adopted)}
        for pair in (parts.get('veth') or {}).get('pairs') or []:
            if pair.get('state', 'present') != 'present' or pair.get('namespace'):
                continue
            name = pair['name']
            recorded = self.record['pairs'].get(name)
            if recorded is not None:
                adopted = recorded.get('adopted', False)
            else:
                adopted = self.links_before.get(name) is not None
            record['pairs'][name] = {'namespace': pair.get('peer_namespace'), 'ifindex': link_index(name),
                                     'adopted': bool(adopted)}
            if adopted:
                record['pairs'][name].update(peer=pair.get('peer'), added=self.added_addresses(pair, recorded))
        record['routes'] = [{'namespace': route.get('namespace'), 'dest': route.get('dest'),
                             'family': route.get('family') or route_family(route)}
                            for route in (parts.get('netns_route') or {}).get('routes') or []
                            if route.get('state', 'present') == 'present']
        record['backends'] = [used_backend] if used_backend in BACKENDS else list(self.record['backends'])
        return record
