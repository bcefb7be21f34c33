# SPDX-License-Identifier: GPL-3.0-or-later
"""The services of the netns_nat plan filter (netns_nat_services: a port published with
endpoints that may live on other hosts) and the namespace option allow_inbound: defaults,
every error message, conflicts with the namespaces' port forwards, the nat_rule rules they
render (which nat_rule's own validation accepts), and the topology parts of a host that has
services but no namespace."""
import json

import pytest

from ansible_collections.linuxnet.netns.plugins.filter.netns_nat import netns_nat_plan
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_model as m

ROLE_SETTINGS = {'backend': 'nftables', 'purge': False, 'forward_policy': None, 'forwarding': True,
                 'state_dir': '/run/linuxnet-netns'}
SVC = 'netns_nat_services[0]'


def service(**extra):
    svc = {'name': 'web', 'published_port': 30080,
           'endpoints': [{'address': '10.244.2.10', 'port': 80}, {'address': '10.244.3.10'}]}
    svc.update(extra)
    return svc


def ns(index, **overrides):
    item = {'name': 'pns%d' % index, 'host_interface': 'ph%d' % index, 'inner_interface': 'pi%d' % index,
            'host_address': '10.60.%d.1/24' % index, 'inner_address': '10.60.%d.2/24' % index}
    item.update(overrides)
    return item


def errors(services, namespaces=(), **kwargs):
    return netns_nat_plan(list(namespaces), services=services, **kwargs)['errors']


def service_rules(plan):
    return [rule for rule in plan['rules'] if rule.get('endpoints')]


def the_model_accepts(plan):
    """nat_rule's own validation of every rule of the plan (what the role's nat_rule part runs)."""
    return m.parse_rules([('rules[%d].' % index, dict(rule)) for index, rule in enumerate(plan['rules'])])


# --- defaults and the rendered rule --------------------------------------------------------------

def test_defaults_are_filled_in():
    plan = netns_nat_plan([], services=[service()])
    assert plan['errors'] == []
    assert plan['services'] == [{
        'field': SVC, 'name': 'web', 'protocol': 'tcp', 'published_port': 30080, 'published_first': 30080,
        'published_last': 30080, 'published_address': None,
        # an endpoint without port takes the published port
        'endpoints': [{'address': '10.244.2.10', 'port': 80}, {'address': '10.244.3.10', 'port': 30080}],
        'balance': 'random', 'affinity': 'none',
        'affinity_timeout': None,  # 10800 by default, unused without affinity client_ip
        'source_nat': 'masquerade', 'snat_address': None, 'egress_interface': None}]
    assert plan['rules'] == [{
        'kind': 'dnat', 'protocol': 'tcp', 'port': 30080,
        'endpoints': [{'address': '10.244.2.10', 'port': 80}, {'address': '10.244.3.10', 'port': 30080}],
        'balance': 'random', 'source_nat': 'masquerade', 'forward': 'scoped'}]
    assert plan['netns'] == plan['pairs'] == plan['routes'] == []


def test_affinity_client_ip_takes_the_timeout_default_or_the_one_given():
    [rule] = service_rules(netns_nat_plan([], services=[service(affinity='client_ip')]))
    assert rule['affinity_timeout'] == 10800
    plan = netns_nat_plan([], services=[service(affinity='client_ip', affinity_timeout='60')])
    assert plan['services'][0]['affinity_timeout'] == 60 and service_rules(plan)[0]['affinity_timeout'] == 60
    # without client_ip a timeout is checked but not used
    ignored = netns_nat_plan([], services=[service(affinity='none', affinity_timeout=99)])
    assert ignored['errors'] == [] and 'affinity_timeout' not in service_rules(ignored)[0]


def test_every_option_reaches_the_rule():
    svc = service(protocol='udp', published_address='192.168.1.11', balance='round_robin', affinity='client_ip',
                  affinity_timeout=600, source_nat='snat', snat_address='192.168.1.11', egress_interface='eth1')
    plan = netns_nat_plan([], services=[svc])
    assert plan['errors'] == []
    assert service_rules(plan) == [{
        'kind': 'dnat', 'protocol': 'udp', 'port': 30080,
        'endpoints': [{'address': '10.244.2.10', 'port': 80}, {'address': '10.244.3.10', 'port': 30080}],
        'balance': 'round_robin', 'source_nat': 'snat', 'forward': 'scoped', 'to_source': '192.168.1.11',
        'affinity_timeout': 600, 'destination': '192.168.1.11', 'out_interface': 'eth1'}]
    [parsed] = the_model_accepts(plan)
    assert parsed.rule_ids() == ['dnat,p=udp,d=192.168.1.11,port=30080']
    assert (parsed.balance, parsed.affinity_timeout, parsed.source_nat, str(parsed.to_source)) == (
        'round_robin', 600, 'snat', '192.168.1.11')
    assert [(str(e.address), e.ports) for e in parsed.endpoints] == [
        ('10.244.2.10', (80, 80)), ('10.244.3.10', (30080, 30080))]


def test_source_nat_none_keeps_the_client_address():
    plan = netns_nat_plan([], services=[service(source_nat='none')])
    [rule] = service_rules(plan)
    assert rule['source_nat'] == 'none' and 'to_source' not in rule
    [parsed] = the_model_accepts(plan)
    assert not [line for line in m.logical_lines(parsed) if line.chain == 'postrouting' and
                line.get('src') != line.get('dst')]


@pytest.mark.parametrize('mode, forward', [('scoped', 'scoped'), ('both', 'scoped'), ('none', 'none')])
def test_forward_is_scoped_unless_the_mode_is_none(mode, forward):
    plan = netns_nat_plan([], forward_mode=mode, services=[service()])
    assert plan['errors'] == [] and service_rules(plan)[0]['forward'] == forward
    the_model_accepts(plan)


def test_services_come_after_the_namespace_rules():
    plan = netns_nat_plan([ns(1, port_forwards=[{'published_port': 8080}])],
                          services=[service(), service(name='dns', protocol='udp', published_port=53)])
    assert [rule['kind'] for rule in plan['rules']] == ['masquerade', 'dnat', 'isolate', 'dnat', 'dnat']
    assert [rule['port'] for rule in service_rules(plan)] == [30080, 53]
    assert len(the_model_accepts(plan)) == 5


# --- errors ------------------------------------------------------------------------------------------

def test_every_error_of_one_service_in_field_order():
    bad = {'name': 'Web', 'protocol': 'icmp', 'published_port': '30080-30081', 'endpoints': [], 'balance': 'x',
           'affinity': 'y', 'affinity_timeout': 0, 'source_nat': 'q', 'egress_interface': 'x' * 16}
    assert errors([bad]) == [
        SVC + '.name="Web": a service name is 1 to 40 lower-case letters, digits and - (starting with a letter '
              'or digit)',
        SVC + '.protocol="icmp": must be one of tcp, udp, sctp',
        SVC + '.published_port="30080-30081": a service publishes one port',
        SVC + '.endpoints: must be a non-empty list of {address, port}',
        SVC + '.balance="x": must be one of random, round_robin',
        SVC + '.affinity="y": must be one of none, client_ip',
        SVC + '.affinity_timeout=0: must be a number of seconds from 1 to 604800',
        SVC + '.source_nat="q": must be one of masquerade, snat, none',
        SVC + '.egress_interface="xxxxxxxxxxxxxxxx": an interface name is 1 to 15 letters, digits, _ . @ + -',
    ]
    plan = netns_nat_plan([], services=[bad])
    assert plan['services'] == [] and plan['rules'] == [], 'a service with errors renders nothing'


EP80 = [{'address': '10.244.2.10', 'port': 80}]


@pytest.mark.parametrize('extra, message', [
    ({'name': ''}, '.name="": a service name is 1 to 40'),
    ({'name': 'a' * 41}, '.name="%s": a service name is 1 to 40' % ('a' * 41)),
    ({'name': '-web'}, '.name="-web": a service name'),
    ({'name': 'we_b'}, '.name="we_b": a service name'),
    ({'protocol': 'icmp'}, '.protocol="icmp": must be one of tcp, udp, sctp'),
    # (endpoints with their own port: see test_a_bad_published_port_is_reported_once)
    ({'published_port': 0, 'endpoints': EP80}, '.published_port=0: expected a port 1-65535 or a range "first-last"'),
    ({'published_port': 65536, 'endpoints': EP80}, '.published_port=65536: expected a port 1-65535'),
    ({'published_port': True, 'endpoints': EP80}, '.published_port=true: expected a port 1-65535'),
    ({'published_port': None, 'endpoints': EP80}, '.published_port="": expected a port 1-65535'),
    ({'published_port': '30080-30090'}, '.published_port="30080-30090": a service publishes one port'),
    ({'published_address': '192.168.1'}, '.published_address="192.168.1": expected a unicast IPv4 address of the host (not loopback)'),
    ({'endpoints': 'x'}, '.endpoints: must be a non-empty list of {address, port}'),
    ({'endpoints': {'address': '10.0.0.1'}}, '.endpoints: must be a non-empty list of {address, port}'),
    ({'endpoints': [5]}, '.endpoints[0] must be a dictionary, got 5'),
    ({'endpoints': [{'address': 'pod-a'}]}, '.endpoints[0].address="pod-a": expected a unicast IPv4 address (not loopback)'),
    ({'endpoints': [{'port': 80}]}, '.endpoints[0].address="": expected a unicast IPv4 address (not loopback)'),
    ({'endpoints': [{'address': 'fd45::1'}]}, '.endpoints[0].address="fd45::1": expected a unicast IPv4 address (not loopback)'),
    ({'endpoints': [{'address': '10.0.0.1', 'port': 0}]},
     '.endpoints[0].port=0: expected a port 1-65535 or a range "first-last"'),
    ({'endpoints': [{'address': '10.0.0.1', 'port': True}]}, '.endpoints[0].port=true: expected a port'),
    ({'endpoints': [{'address': '10.0.0.1', 'port': 80}, {'address': '10.0.0.1', 'port': '80'}]},
     '.endpoints[1]: 10.0.0.1:80 is already an endpoint of this service'),
    ({'endpoints': [{'address': '10.0.0.1'}, {'address': '10.0.0.1', 'port': 30080}]},
     '.endpoints[1]: 10.0.0.1:30080 is already an endpoint of this service'),
    ({'balance': 'least_conn'}, '.balance="least_conn": must be one of random, round_robin'),
    ({'affinity': 'cookie'}, '.affinity="cookie": must be one of none, client_ip'),
    ({'affinity': 'client_ip', 'affinity_timeout': 604801},
     '.affinity_timeout=604801: must be a number of seconds from 1 to 604800'),
    ({'affinity': 'client_ip', 'affinity_timeout': True}, '.affinity_timeout=true: must be a number of seconds'),
    ({'affinity': 'client_ip', 'affinity_timeout': 'abc'}, '.affinity_timeout="abc": must be a number of seconds'),
    ({'source_nat': 'dnat'}, '.source_nat="dnat": must be one of masquerade, snat, none'),
    ({'source_nat': 'snat'}, '.snat_address="": source_nat=snat needs snat_address, an IPv4 address of the host'),
    ({'source_nat': 'snat', 'snat_address': 'host'},
     '.snat_address="host": source_nat=snat needs snat_address'),
    ({'snat_address': '192.168.1.11'},
     '.snat_address="192.168.1.11": is only used with source_nat=snat (source_nat is masquerade)'),
    ({'source_nat': 'none', 'snat_address': '192.168.1.11'}, '(source_nat is none)'),
    ({'egress_interface': 'eth 0'}, '.egress_interface="eth 0": an interface name is 1 to 15 letters'),
])
def test_one_error(extra, message):
    found = errors([service(**extra)])
    assert len(found) == 1 and found[0].startswith(SVC) and message in found[0], found


def test_services_that_are_not_a_list_of_dictionaries():
    assert errors('web') == ['netns_nat_services must be a list of services']
    assert errors({'name': 'web'}) == ['netns_nat_services must be a list of services']
    assert errors([service(), 'db']) == ['netns_nat_services[1] must be a dictionary, got "db"']


def test_duplicate_names():
    found = errors([service(), service(name='dns', protocol='udp'), service(published_port=30081)])
    assert found == ['netns_nat_services[2].name: duplicates netns_nat_services[0].name']


# --- published ports: services against services and against port forwards ----------------------------

def test_two_services_on_one_port():
    found = errors([service(), service(name='api')])
    assert found == ['netns_nat_services[1].published_port=30080: tcp port already published by '
                     'netns_nat_services[0] (30080)']


def test_conflict_with_a_port_forward_of_a_namespace():
    forward = ns(1, port_forwards=[{'published_port': 30080, 'target_port': 80}])
    assert errors([service()], [forward]) == [
        SVC + '.published_port=30080: tcp port already published by netns_nat_namespaces[0].port_forwards[0] (30080)']
    in_range = ns(1, port_forwards=[{'published_port': '30000-30100'}])
    assert errors([service()], [in_range]) == [
        SVC + '.published_port=30080: tcp port already published by netns_nat_namespaces[0].port_forwards[0] '
              '(30000-30100)']
    # one side without an address publishes on every address, the other's included
    on_one_address = ns(1, port_forwards=[{'published_port': 30080, 'published_address': '192.168.1.11'}])
    assert len(errors([service()], [on_one_address])) == 1
    assert len(errors([service(published_address='192.168.1.11')], [on_one_address])) == 1
    assert len(errors([service(published_address='192.168.1.11')], [ns(1, port_forwards=[
        {'published_port': 30080}])])) == 1


def test_no_conflict_on_another_protocol_port_or_address():
    forward = ns(1, port_forwards=[{'published_port': 30080, 'protocol': 'udp'}])
    assert errors([service()], [forward]) == []
    assert errors([service(protocol='udp')], [ns(1, port_forwards=[{'published_port': 30080}])]) == []
    assert errors([service()], [ns(1, port_forwards=[{'published_port': '30081-30090'}])]) == []
    two_addresses = ns(1, port_forwards=[{'published_port': 30080, 'published_address': '192.168.1.12'}])
    plan = netns_nat_plan([two_addresses], services=[service(published_address='192.168.1.11')])
    assert plan['errors'] == []
    assert [rule.get('destination') for rule in plan['rules'] if rule['kind'] == 'dnat'] == [
        '192.168.1.12', '192.168.1.11']
    the_model_accepts(plan)


# --- allow_inbound ----------------------------------------------------------------------------------

def test_allow_inbound_renders_into_the_isolate_rule():
    allowed = [{'port': 80}, {'protocol': 'udp', 'port': '5000-5010', 'source': '192.168.1.0/24'}]
    plan = netns_nat_plan([ns(1, allow_inbound=allowed)])
    assert plan['errors'] == []
    assert plan['namespaces'][0]['allow_inbound'] == [
        {'protocol': 'tcp', 'port': 80}, {'protocol': 'udp', 'port': '5000-5010', 'source': '192.168.1.0/24'}]
    [isolate] = [rule for rule in plan['rules'] if rule['kind'] == 'isolate']
    assert isolate == {'kind': 'isolate', 'destination': '10.60.1.0/24', 'out_interface': 'ph1',
                       'allow_ports': [{'protocol': 'tcp', 'port': 80},
                                       {'protocol': 'udp', 'port': '5000-5010', 'source': '192.168.1.0/24'}]}
    parsed = [rule for rule in the_model_accepts(plan) if rule.kind == 'isolate'][0]
    assert [(p, ports, str(source)) for p, ports, source in parsed.allow_ports] == [
        ('tcp', (80, 80), 'None'), ('udp', (5000, 5010), '192.168.1.0/24')]


def test_without_allow_inbound_the_namespace_and_its_isolation_are_as_before():
    plan = netns_nat_plan([ns(1, allow_inbound=[])])
    assert 'allow_inbound' not in plan['namespaces'][0]
    assert [rule for rule in plan['rules'] if rule['kind'] == 'isolate'] == [
        {'kind': 'isolate', 'destination': '10.60.1.0/24', 'out_interface': 'ph1'}]
    assert plan == netns_nat_plan([ns(1)])


@pytest.mark.parametrize('mode', ['both', 'none'])
def test_allow_inbound_needs_forward_mode_scoped(mode):
    field = 'netns_nat_namespaces[0].allow_inbound'
    expected = ['%s: applies only with forward_mode scoped (with %s nothing isolates the namespace)' % (field, mode)]
    assert netns_nat_plan([ns(1, forward_mode=mode, allow_inbound=[{'port': 80}])])['errors'] == expected
    assert netns_nat_plan([ns(1, allow_inbound=[{'port': 80}])], forward_mode=mode)['errors'] == expected
    assert netns_nat_plan([ns(1, forward_mode=mode, allow_inbound=[])])['errors'] == []


def test_allow_inbound_errors():
    field = 'netns_nat_namespaces[0].allow_inbound'
    assert netns_nat_plan([ns(1, allow_inbound='80')])['errors'] == [
        field + ': must be a list of {protocol, port, source}']
    items = [5, {'port': 0}, {'port': 80, 'protocol': 'icmp'}, {'port': 80, 'source': '10.0.0.1'},
             {'port': 80, 'source': 'x/8'}, {}, {'port': '90-80'}]
    plan = netns_nat_plan([ns(1, allow_inbound=items)])
    assert plan['errors'] == [
        field + '[0] must be a dictionary, got 5',
        field + '[1].port=0: expected a port 1-65535 or a range "first-last"',
        field + '[2].protocol="icmp": must be one of tcp, udp, sctp',
        field + '[3].source="10.0.0.1": expected an IPv4 network such as 192.168.1.0/24 (no host bits set)',
        field + '[4].source="x/8": expected an IPv4 network such as 192.168.1.0/24 (no host bits set)',
        field + '[5].port="": expected a port 1-65535 or a range "first-last"',
        field + '[6].port="90-80": expected a port 1-65535 or a range "first-last"',
    ]


# --- topology parts -----------------------------------------------------------------------------------

def test_a_host_with_services_only():
    plan = netns_nat_plan([], topology=ROLE_SETTINGS, services=[service(affinity='client_ip')])
    assert plan['errors'] == []
    assert sorted(plan) == ['errors', 'namespaces_json', 'services_json', 'topology']
    assert json.loads(plan['namespaces_json']) == []
    assert json.loads(plan['services_json']) == netns_nat_plan([], services=[service(affinity='client_ip')])[
        'services']
    present = dict((part, json.loads(text)) for part, text in plan['topology']['present'].items())
    assert sorted(present) == ['nat_rule', 'sysctl_forward'], 'no namespace, no veth, no route'
    assert present['nat_rule'] == {
        'backend': 'nftables', 'purge': True,
        'rules': [{'kind': 'dnat', 'protocol': 'tcp', 'port': 30080,
                   'endpoints': [{'address': '10.244.2.10', 'port': 80}, {'address': '10.244.3.10', 'port': 30080}],
                   'balance': 'random', 'source_nat': 'masquerade', 'forward': 'scoped', 'affinity_timeout': 10800}]}
    absent = dict((part, json.loads(text)) for part, text in plan['topology']['absent'].items())
    assert absent['nat_rule'] == {'rules': [], 'backend': 'nftables', 'purge': True}
    assert 'netns' not in absent and 'veth' not in absent


def test_services_json_is_empty_without_services():
    plan = netns_nat_plan([ns(1)], topology=ROLE_SETTINGS)
    assert json.loads(plan['services_json']) == []


# --- the plan refuses what nat_rule would refuse, before any change -------------------------------------

def test_an_endpoint_port_range_is_refused():
    found = errors([service(endpoints=[{'address': '10.244.2.10', 'port': '80-90'}])])
    assert found and 'endpoints[0].port' in found[0]


def test_an_allow_inbound_source_with_host_bits_is_refused_by_the_plan():
    plan = netns_nat_plan([ns(1, allow_inbound=[{'port': 80, 'source': '10.0.0.1/8'}])])
    assert plan['errors'], 'nat_rule would refuse: %s' % _model_error(plan)


@pytest.mark.parametrize('address', ['127.0.0.1', '0.0.0.0'])
def test_an_endpoint_address_nat_rule_refuses_is_refused_by_the_plan(address):
    plan = netns_nat_plan([], services=[service(endpoints=[{'address': address}])])
    assert plan['errors'], 'nat_rule would refuse: %s' % _model_error(plan)


def test_a_bad_published_port_is_reported_once():
    assert errors([service(published_port=0)]) == [
        SVC + '.published_port=0: expected a port 1-65535 or a range "first-last"']


def _model_error(plan):
    try:
        the_model_accepts(plan)
    except m.ValidationError as exc:
        return str(exc)
    return None
