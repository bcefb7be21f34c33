#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: netns_probe
short_description: Probe reachability from a network namespace, optionally observing the peer address
version_added: 0.1.0
description:
  - From inside the namespace O(namespace), reaches O(target) by ICMP echo, a TCP connection or a
    UDP datagram, O(count) times, and reports whether it answered and the round-trip times.
  - With O(listener), the module first starts a one-shot listener in another namespace, which
    answers the probe and reports the source address it saw. Behind a MASQUERADE or SNAT this is
    the NAT host's address, not the inner one, which is what one would otherwise read off
    C(tcpdump); through a DNAT it shows which client address reached the target.
  - Everything runs in-process (setns and plain sockets); no C(ping), C(nc) or C(tcpdump) binary is
    needed. ICMP uses a raw socket, so the module must run as root (it must anyway, to enter a
    namespace).
  - The module never fails because the target is unreachable; it reports RV(reachable=false)
    and why in RV(attempts). It fails for bad input, a missing namespace, or a listener that
    cannot bind.
extends_documentation_fragment:
  - linuxnet.netns.netns
  - linuxnet.netns.netns.ATTRIBUTES
attributes:
  check_mode:
    support: full
    details:
      - The probe also runs in check mode. It sends packets and may start a short-lived listener,
        but changes no configuration or other state, so verification tasks give real answers
        under C(--check). C(changed) is always false.
  diff_mode:
    support: none
    details: Nothing changes, so there is no diff.
options:
  namespace:
    description:
      - The namespace the probe is sent from. When omitted, the namespace the module runs in.
  target:
    description:
      - IPv4 or IPv6 address to reach (no host names; nothing is resolved inside the namespace).
      - IPv6 link-local addresses are not supported (they would need an interface scope).
    type: str
    required: true
  protocol:
    description:
      - C(icmp) sends echo requests (ICMPv6 for an IPv6 target) and waits for the echo reply.
      - C(tcp) connects to O(port); the round-trip time is the handshake. A closed port (RST) fails
        at once.
      - C(udp) sends a datagram to O(port) and waits for any answer. A closed port (ICMP port
        unreachable) fails at once; a silent service looks the same as a dropped datagram, so use a
        O(listener) (it echoes) or a service that answers.
    type: str
    choices: [icmp, tcp, udp]
    default: icmp
  port:
    description: Destination port, required for C(tcp) and C(udp); not allowed for C(icmp).
    type: int
  count:
    description: Number of attempts, made one after the other.
    type: int
    default: 1
  timeout:
    description: Seconds to wait for each attempt's answer (from 0.01 to 60).
    type: float
    default: 2.0
  icmp_id:
    description:
      - The ICMP echo identifier (0-65535), for O(protocol=icmp) only. Default is random.
      - Fixing it lets several namespaces behind one SNAT address send echoes with the same
        identifier at the same time; conntrack then tells their flows apart by a translated id.
    type: int
  listener:
    description:
      - Start a one-shot listener in another namespace before probing. It serves up to O(count)
        probes, answers each (TCP and UDP echo the probe's payload; ICMP echo requests are answered
        by the kernel) and reports the peer address it saw, see RV(observed_peer).
      - The listener only counts traffic that carries this probe's random token.
      - It is always stopped when the module returns, also on failure or timeout.
    type: dict
    suboptions:
      namespace:
        description: The namespace to listen in.
        type: str
        required: true
      address:
        description:
          - Local address to bind, of the same family as O(target). Default is any address.
          - For C(icmp) the listener sees echo requests to any local address.
        type: str
      port:
        description: Port to listen on for C(tcp)/C(udp). Default is O(port) (set it when a DNAT
          maps O(port) to another port).
        type: int
      protocol:
        description: Must be the same as O(protocol) when set (the default).
        type: str
        choices: [icmp, tcp, udp]
seealso:
  - module: linuxnet.netns.conntrack_info
  - module: linuxnet.netns.nat_rule
author:
  - linuxnet.netns contributors (@linuxnet)
'''

EXAMPLES = r'''
- name: Myspace reaches host2 through host1's MASQUERADE; host2 sees host1's address
  linuxnet.netns.netns_probe:
    namespace: myspace
    target: 192.168.1.15
    protocol: icmp
    count: 3
    listener:
      namespace: host2
  register: probe

- name: The source seen at host2 is host1's egress address, not 192.168.45.3
  ansible.builtin.assert:
    that:
      - probe.reachable
      - probe.observed_peer.address == '192.168.1.32'

- name: Host2 reaches the published port host1:8080 and lands on myspace:80
  linuxnet.netns.netns_probe:
    namespace: host2
    target: 192.168.1.32
    protocol: tcp
    port: 8080
    listener:
      namespace: myspace
      port: 80

- name: A closed UDP port is reported as unreachable quickly
  linuxnet.netns.netns_probe:
    namespace: myspace
    target: 192.168.1.15
    protocol: udp
    port: 5353
    timeout: 1
'''

RETURN = r'''
reachable:
  description: Whether at least one attempt got its answer.
  returned: always
  type: bool
  sample: true
sent:
  description: Number of attempts made.
  returned: always
  type: int
  sample: 3
received:
  description: Number of attempts that got their answer.
  returned: always
  type: int
  sample: 3
rtt_ms:
  description: Round-trip times of the answered attempts in milliseconds (null when none answered).
  returned: always
  type: dict
  contains:
    min:
      description: Shortest round trip.
      type: float
    avg:
      description: Mean round trip.
      type: float
    max:
      description: Longest round trip.
      type: float
  sample: {min: 0.041, avg: 0.052, max: 0.066}
attempts:
  description: One item per attempt, in order.
  returned: always
  type: list
  elements: dict
  contains:
    seq:
      description: Attempt number, from 1 (the ICMP sequence number for C(icmp)).
      type: int
    ok:
      description: Whether this attempt got its answer.
      type: bool
    rtt_ms:
      description: Round-trip time in milliseconds, null when the attempt failed.
      type: float
    error:
      description: Why the attempt failed (timed out, connection refused, destination unreachable ...),
        null when it succeeded.
      type: str
    local:
      description: The local address and port the probe used (C(tcp)/C(udp)); null for C(icmp) or
        when no connection was made.
      type: dict
  sample:
    - {seq: 1, ok: true, rtt_ms: 0.052, error: null, local: {address: 192.168.45.3, port: 40022}}
observed_peer:
  description:
    - The source address (and port; for ICMP the echo C(id) instead) of the first probe the listener
      received, null when it received none.
    - After SNAT or MASQUERADE this is the translated address and port.
  returned: when O(listener) is set
  type: dict
  sample: {address: 192.168.1.32, port: 40022}
observed_peers:
  description: The source of every probe the listener received, in order.
  returned: when O(listener) is set
  type: list
  elements: dict
  sample: [{address: 192.168.1.32, port: null, id: 1234}]
listener:
  description: Where the listener was bound.
  returned: when O(listener) is set
  type: dict
  sample: {namespace: host2, address: 0.0.0.0, port: 80, protocol: tcp}
commands:
  description: Always empty; the module changes nothing.
  returned: always
  type: list
  elements: str
  sample: []
'''

import random

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils.common import (
    COMMAND_ENVIRON,
    fail_from_exception,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    NamespaceMissing,
    namespace_exists,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.probe import (
    READY_TIMEOUT,
    Listener,
    family_of,
    new_token,
    run_attempts,
    summarize,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import (
    ValidationError,
    check_ip,
    check_netns_name,
    check_port,
    same_family,
)

MAX_COUNT = 100
MAX_TIMEOUT = 60.0
MIN_TIMEOUT = 0.01
PROTOCOL_CHOICES = ['icmp', 'tcp', 'udp']


def argument_spec():
    return dict(
        namespace=dict(type='str'),
        target=dict(type='str', required=True),
        protocol=dict(type='str', choices=PROTOCOL_CHOICES, default='icmp'),
        port=dict(type='int'),
        count=dict(type='int', default=1),
        timeout=dict(type='float', default=2.0),
        icmp_id=dict(type='int'),
        listener=dict(type='dict', options=dict(
            namespace=dict(type='str', required=True),
            address=dict(type='str'),
            port=dict(type='int'),
            protocol=dict(type='str', choices=PROTOCOL_CHOICES),
        )),
    )


def validate(params):
    """Check every option before anything is sent; returns the normalized probe."""
    namespace = params['namespace']
    if namespace is not None:
        check_netns_name('namespace', namespace)
    target = check_ip('target', params['target'])
    if target.version == 6 and target.is_link_local:
        raise ValidationError('target', params['target'], 'IPv6 link-local targets are not supported '
                                                          '(they need an interface scope); use a global or ULA address')
    if target.is_unspecified or target.is_multicast:
        raise ValidationError('target', params['target'], 'must be a unicast address')
    protocol = params['protocol']
    port = params['port']
    if protocol == 'icmp':
        if port is not None:
            raise ValidationError('port', port, 'is only used with protocol tcp or udp')
    elif port is None:
        raise ValidationError('port', port, 'is required with protocol %s' % protocol)
    else:
        port = check_port('port', port)
    count = params['count']
    if not 1 <= count <= MAX_COUNT:
        raise ValidationError('count', count, 'must be from 1 to %d' % MAX_COUNT)
    timeout = params['timeout']
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        raise ValidationError('timeout', timeout, 'must be from %s to %s seconds' % (MIN_TIMEOUT, MAX_TIMEOUT))
    icmp_id = params['icmp_id']
    if icmp_id is not None:
        if protocol != 'icmp':
            raise ValidationError('icmp_id', icmp_id, 'is only used with protocol icmp')
        if not 0 <= icmp_id <= 0xffff:
            raise ValidationError('icmp_id', icmp_id, 'must be from 0 to 65535')
    elif protocol == 'icmp':
        icmp_id = random.randint(1, 0xffff)
    probe = dict(namespace=namespace, target=str(target), protocol=protocol, port=port, count=count,
                 timeout=timeout, icmp_id=icmp_id, listener=None)
    if params['listener'] is not None:
        probe['listener'] = validate_listener(params['listener'], target, protocol, port)
    return probe


def validate_listener(listener, target, protocol, port):
    check_netns_name('listener.namespace', listener['namespace'])
    if listener['protocol'] is not None and listener['protocol'] != protocol:
        raise ValidationError('listener.protocol', listener['protocol'],
                              'must be the same as protocol (%s)' % protocol)
    address = listener['address']
    if address is not None:
        address = check_ip('listener.address', address)
        same_family('listener.address', target, address)
        address = str(address)
    listen_port = listener['port']
    if protocol == 'icmp':
        if listen_port is not None:
            raise ValidationError('listener.port', listen_port, 'is only used with protocol tcp or udp')
    else:
        listen_port = check_port('listener.port', listen_port if listen_port is not None else port)
    return dict(namespace=listener['namespace'], address=address, port=listen_port, protocol=protocol)


def check_namespaces_exist(probe):
    names = [probe['namespace']] + ([probe['listener']['namespace']] if probe['listener'] else [])
    for name in names:
        if name is not None and not namespace_exists(name):
            raise NamespaceMissing(name)


def run_probe(probe):
    token = new_token()
    kwargs = dict(namespace=probe['namespace'], protocol=probe['protocol'], target=probe['target'],
                  port=probe['port'], count=probe['count'], timeout=probe['timeout'], token=token,
                  icmp_id=probe['icmp_id'])
    spec = probe['listener']
    if spec is None:
        return summarize_result(run_attempts(**kwargs))
    family = family_of(probe['target'])
    lifetime = READY_TIMEOUT + probe['count'] * (probe['timeout'] + 1.0) + 2.0
    with Listener(spec['namespace'], family, spec['protocol'], spec['address'], spec['port'],
                  expected=probe['count'], lifetime=lifetime, token=token) as listener:
        attempts = run_attempts(expect_echo=True, **kwargs)
        # The listener reports a peer before answering it; a short grace covers the last
        # ICMP echo, which the kernel answers while the listener is still reading its copy.
        peers = listener.collect(wanted=probe['count'], grace=min(1.0, probe['timeout']))
        bound = dict(namespace=spec['namespace'], protocol=spec['protocol'],
                     address=(listener.bound or {}).get('address'), port=(listener.bound or {}).get('port'))
    result = summarize_result(attempts)
    result.update(observed_peer=peers[0] if peers else None, observed_peers=peers, listener=bound)
    return result


def summarize_result(attempts):
    result = summarize(attempts)
    result['attempts'] = attempts
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    module.run_command_environ_update = COMMAND_ENVIRON
    try:
        probe = validate(module.params)
        check_namespaces_exist(probe)
        result = run_probe(probe)
    except Exception as exc:  # ValidationError, NamespaceMissing, ListenerError: clear message
        fail_from_exception(module, exc)
    module.exit_json(changed=False, commands=[], **result)


if __name__ == '__main__':
    main()
