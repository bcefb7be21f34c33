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
  - With nftables, the lines that differ only in per-flow values (a DNAT's published address and
    port with its target, the FORWARD accepts and source NAT of the flows it translated) are
    elements of one set or map per shape (C(lnt_<chain>_<digest>)), each element commented with
    its rule's tag, looked up by one rule at the top of its chain; the first packet of a flow
    costs the same at 10 and at thousands of published ports. Port ranges, networks and the picks
    among several O(rules[].endpoints) stay rules.
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
requirements:
  - pyroute2 >= 0.7.2 on the managed host (the conntrack cleanup reaches the conntrack table through it), Debian 12 C(python3-pyroute2) or PyPI
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
        namespace) and forwards it to O(to_address):O(to_port), or spreads the new flows over
        O(endpoints) (a Kubernetes NodePort).
      - V(isolate) drops forwarded packets to the network O(destination) leaving through
        O(out_interface) that no accept of ours let through (published ports, replies, the
        source NAT companions, O(allow_from)), whatever the host's FORWARD policy. Its drop is
        written after every accept of ours, in the same chain (iptables C(LNT-FORWARD), nft
        C(inet linuxnet_netns forward)). This is how an inner network stays reachable only
        through its published ports.
      - Required unless O(rules) is given or only O(forward_policy)/O(purge) are used.
    type: str
    choices: [masquerade, snat, dnat, isolate]
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
    description: Address to translate the source to (V(snat), required there; V(dnat) with O(source_nat=snat)).
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
  allow_from:
    description:
      - For V(isolate), networks (CIDR) that may still open connections to O(destination)
        directly (for example another inner namespace's subnet). Not part of the rule's identity.
    type: list
    elements: str
  endpoints:
    description:
      - For V(dnat), instead of O(to_address) and O(to_port), several places the new flows are
        spread over, as kube-proxy does for a NodePort (see O(balance) and O(affinity_timeout)).
        Only the first packet of a flow is balanced; later packets follow its conntrack entry.
      - Changing the list replaces the rule's lines in place; the conntrack entries of an
        endpoint that left the list are deleted (with O(conntrack_cleanup)).
    type: list
    version_added: 0.3.0
    elements: dict
    suboptions:
      address:
        description: Address of the endpoint (on this host or another one).
        type: str
        required: true
      port:
        description: Port on the endpoint; when omitted, the published port. Not allowed with a port range.
        type: int
  balance:
    description:
      - How O(endpoints) share the new flows. V(random) (the default) picks one at random
        (iptables C(statistic --mode random), nft C(numgen random)); V(round_robin) takes them in
        turn (C(statistic --mode nth), C(numgen inc)). Either way each endpoint gets an even share.
    type: str
    version_added: 0.3.0
    choices: [random, round_robin]
  affinity_timeout:
    description:
      - For O(endpoints), client-IP affinity, in seconds. A client that got an endpoint within this
        time gets the same one again (iptables C(recent) lists, nft dynamic sets with a timeout).
        Unset, every new flow is balanced.
    type: int
    version_added: 0.3.0
  source_nat:
    description:
      - For V(dnat), translate the source of the flows this rule DNAT'ed (and only those, by their
        conntrack status and original port), so that an endpoint on another host answers through
        this one. V(masquerade) takes the address of the interface towards the endpoint, V(snat)
        O(to_source).
      - V(none) (the default) keeps the client's address; the endpoint must then route its replies
        back through this host.
    type: str
    version_added: 0.3.0
    choices: [none, masquerade, snat]
  allow_ports:
    description:
      - For V(isolate), new flows routed to a port of O(destination) without DNAT that are let
        through (for example the endpoint of another node's NodePort); optionally only from
        C(source). Not part of the rule's identity.
    type: list
    version_added: 0.3.0
    elements: dict
    suboptions:
      protocol:
        description: Protocol of the port.
        type: str
        choices: [tcp, udp, sctp]
        default: tcp
      port:
        description: The port, or a range C("lo-hi").
        type: raw
        required: true
      source:
        description: Only from this network (CIDR); when omitted, from anywhere.
        type: str
  random_fully:
    description:
      - For V(masquerade) and V(snat), pick the translated source port (ICMP id) at random
        (iptables C(--random-fully), nftables C(fully-random)) instead of keeping the original
        one where it is free.
      - Makes it rarer that two new flows from different inner addresses, translated at the
        same instant on two CPUs, get the same translated tuple; the kernel then drops one of
        them when it confirms the conntrack entry (C(conntrack -S) counts C(insert_failed)).
      - Not part of the rule's identity; changing it replaces the rule in place. Unset means
        V(false).
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
        description: V(masquerade), V(snat), V(dnat) or V(isolate), as O(kind).
        type: str
        choices: [masquerade, snat, dnat, isolate]
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
      random_fully:
        description: As O(random_fully).
        type: bool
      allow_from:
        description: As O(allow_from).
        type: list
        elements: str
      endpoints:
        description: As O(endpoints).
        type: list
        elements: dict
        suboptions:
          address:
            description: As O(endpoints[].address).
            type: str
            required: true
          port:
            description: As O(endpoints[].port).
            type: int
      balance:
        description: As O(balance).
        type: str
        choices: [random, round_robin]
      affinity_timeout:
        description: As O(affinity_timeout).
        type: int
      source_nat:
        description: As O(source_nat).
        type: str
        choices: [none, masquerade, snat]
      allow_ports:
        description: As O(allow_ports).
        type: list
        elements: dict
        suboptions:
          protocol:
            description: As O(allow_ports[].protocol).
            type: str
            choices: [tcp, udp, sctp]
            default: tcp
          port:
            description: As O(allow_ports[].port).
            type: raw
            required: true
          source:
            description: As O(allow_ports[].source).
            type: str
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
      - Set the policy of the host's FORWARD chain, the built-in C(FORWARD) chain of iptables
        (C(ip filter) / C(ip6 filter)) where Docker, kube-proxy and administrators put their
        accepts, in every namespace the call names. The same on both backends, for the address
        families of the call's rules (both when the call has none). Unset, the policy is left
        as it is.
      - With V(nftables), the collection's own table never has a drop policy (a drop there
        would stop traffic that other tables accept); our FORWARD companions are then also
        written into iptables, as for any restrictive FORWARD chain. Needs iptables (nft or
        legacy variant) on the host.
      - Traffic to inner networks is isolated by V(isolate) rules, not by this policy.
    type: str
    choices: [accept, drop]
  conntrack_cleanup:
    description:
      - Delete the conntrack entries a DNAT change made stale (see the description). Needs the
        namespace's conntrack table (ctnetlink), which pyroute2 reaches.
    type: bool
    default: true
notes:
  - Needs C(iptables-save)/C(iptables-restore) (iptables 1.8) or C(nft) (nftables 0.9.7 or later
    for set element comments, tested with 1.0.6; Linux 5.2 or later for NAT in an inet table), and
    C(nsenter) (util-linux) to run them inside a namespace.
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

- name: Several guests behind one address - random translated ports, fewer conntrack clashes
  linuxnet.netns.nat_rule:
    namespace: host1
    kind: masquerade
    source: 192.168.45.0/24
    out_interface: eth0
    random_fully: true

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

- name: NodePort - node B spreads :30000 over two pods on other hosts; only those flows are SNATed
  linuxnet.netns.nat_rule:
    namespace: nodeb
    kind: dnat
    protocol: tcp
    port: 30000
    endpoints:
      - address: 172.26.0.3
        port: 8080
      - address: 172.27.0.3
        port: 8080
    balance: random
    affinity_timeout: 10800
    source_nat: masquerade

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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils import kind, nat_rule_call as call


def main():
    kind.run_module(AnsibleModule(argument_spec=call.argument_spec(), supports_check_mode=True, **call.ARGUMENT_RULES), call)


if __name__ == '__main__':
    main()
