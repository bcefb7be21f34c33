# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter linuxnet.netns.netns_nat_plan gives, byte for byte, the plans and error messages
recorded in fixtures/netns_nat_plans.json, for valid input and for every class of input error
(they were recorded from the role's former Jinja template, so that the role's output and its
messages did not change when the filter replaced it); and it plans 500 namespaces in well under
a second (the template took ~20 s)."""
import copy
import json
import os
import time

import pytest
import yaml

from ansible.plugins.filter.core import to_json

from ansible_collections.linuxnet.netns.plugins.filter.netns_nat import FilterModule, netns_nat_plan
from tests.support.paths import REPO_ROOT

HERE = os.path.dirname(os.path.abspath(__file__))
UNSET = object()


def _expected_plans():
    with open(os.path.join(HERE, 'fixtures', 'netns_nat_plans.json')) as handle:
        return dict((plan_key(item['namespaces'], item['variables']), item['plan']) for item in json.load(handle))


def plan_key(namespaces, variables):
    return json.dumps([namespaces, variables], sort_keys=True)


EXPECTED = _expected_plans()


def run_filter(namespaces, egress_interface=UNSET, forward_mode=UNSET, **_ignored):
    kwargs = {}
    if egress_interface is not UNSET:
        kwargs['egress_interface'] = egress_interface
    if forward_mode is not UNSET:
        kwargs['forward_mode'] = forward_mode
    return netns_nat_plan(namespaces, **kwargs)


def without_isolation(plan):
    """The plan as the template made it: the isolate rules of scoped namespaces and their
    allow_from came after it (tests below check them directly)."""
    plan = copy.deepcopy(plan)
    plan.pop('services', None)  # the template had no services (tests/unit/test_netns_nat_services.py)
    plan['rules'] = [rule for rule in plan['rules'] if rule['kind'] != 'isolate']
    for ns in plan['namespaces']:
        ns.pop('allow_from', None)
    return plan


def assert_same_as_template(namespaces, **variables):
    """Same JSON text as recorded (key order, types, error order); returns the plan for further checks."""
    expected = EXPECTED[plan_key(namespaces, variables)]
    plan = run_filter(copy.deepcopy(namespaces), **variables)
    assert to_json(without_isolation(plan)) == expected
    return plan


def ns(index, **overrides):
    """A valid namespace number ``index`` in 10.60.<index>.0/24."""
    item = {'name': 'pns%d' % index, 'host_interface': 'ph%d' % index, 'inner_interface': 'pi%d' % index,
            'host_address': '10.60.%d.1/24' % index, 'inner_address': '10.60.%d.2/24' % index}
    item.update(overrides)
    return item


def article_namespaces():
    with open(os.path.join(REPO_ROOT, 'roles', 'netns_nat', 'defaults', 'main.yml')) as handle:
        return yaml.safe_load(handle)['netns_nat_namespaces']


def test_the_collection_exposes_the_filter():
    assert FilterModule().filters()['netns_nat_plan'] is netns_nat_plan


def test_article_defaults():
    plan = assert_same_as_template(article_namespaces())
    assert plan['errors'] == []
    assert plan['rules'] == [
        {'kind': 'masquerade', 'source': '192.168.45.0/24', 'out_interface': 'eth0', 'in_interface': 'veth1',
         'forward': 'scoped'},
        {'kind': 'dnat', 'protocol': 'tcp', 'port': 8080, 'to_address': '192.168.45.3', 'out_interface': 'veth1',
         'to_port': 80, 'forward': 'scoped'},
        # scoped: only the published port (and replies) reach the subnet, whatever the FORWARD policy
        {'kind': 'isolate', 'destination': '192.168.45.0/24', 'out_interface': 'veth1'}]
    assert plan['routes'] == [{'namespace': 'myspace', 'dest': 'default', 'gateway': '192.168.45.2'}]


def test_reachable_from_lets_other_namespaces_of_the_list_in_directly():
    other = dict(article_namespace(name='other', host_interface='veth3', inner_interface='veth4',
                                   host_address='192.168.46.2/24', inner_address='192.168.46.3/24', port_forwards=[]),
                 reachable_from=['myspace'])
    plan = netns_nat_plan([article_namespace(), other])
    assert plan['errors'] == []
    isolations = [rule for rule in plan['rules'] if rule['kind'] == 'isolate']
    assert isolations == [
        {'kind': 'isolate', 'destination': '192.168.45.0/24', 'out_interface': 'veth1'},
        {'kind': 'isolate', 'destination': '192.168.46.0/24', 'out_interface': 'veth3',
         'allow_from': ['192.168.45.0/24']}]
    both = netns_nat_plan([dict(article_namespace(), forward_mode='both')])
    assert not [rule for rule in both['rules'] if rule['kind'] == 'isolate']  # the literal mode opens everything
    bad = netns_nat_plan([dict(article_namespace(), reachable_from=['nowhere', 'myspace'])])
    assert bad['errors'] == [
        'netns_nat_namespaces[0].reachable_from: "nowhere" is not another namespace of netns_nat_namespaces',
        'netns_nat_namespaces[0].reachable_from: "myspace" is not another namespace of netns_nat_namespaces']


def test_article_with_explicit_role_variables_and_absent_state():
    # The plan does not depend on the state: absent removes what present would build.
    plan = assert_same_as_template(article_namespaces(), egress_interface='eth0', forward_mode='scoped',
                                   netns_nat_state='absent')
    assert plan['pairs_absent'] == [{'name': 'veth1'}]


VALID_CASES = {
    'several namespaces, per-namespace options': [
        ns(1), ns(2, gateway='10.60.2.1', egress_interface='up0'),
        ns(3, default_route=False, gateway='nonsense'), ns(4, default_route='no'),
        ns(5, host_address='10.61.0.1/16', inner_address='10.61.200.9/16'),
        ns(6, host_address='10.62.0.1/30', inner_address='10.62.0.2/30')],
    'snat and source_nat none': [
        ns(1, source_nat='snat', snat_address='198.51.100.7', port_forwards=[{'published_port': 81}]),
        ns(2, source_nat='none', port_forwards=[{'published_port': 82, 'protocol': 'udp'}])],
    'forward modes per namespace': [
        ns(1, forward_mode='scoped', port_forwards=[{'published_port': 91}]),
        ns(2, forward_mode='both', port_forwards=[{'published_port': 92}]),
        ns(3, forward_mode='both', source_nat='none', port_forwards=[{'published_port': 93}]),
        ns(4, forward_mode='none', port_forwards=[{'published_port': 94}]),
        ns(5, source_nat='snat', snat_address='198.51.100.8', forward_mode='both',
           port_forwards=[{'published_port': 95}])],
    'port ranges and port spellings': [
        ns(1, port_forwards=[
            {'published_port': '8080-8090'},
            {'published_port': '9000-9005', 'target_port': '9000-9005', 'protocol': 'udp'},
            {'published_port': ' 7000 ', 'target_port': '0080'},
            {'published_port': 7100, 'target_port': '81-85'},  # to_port 0: the template's int filter
            {'published_port': '7200', 'target_port': None, 'protocol': 'sctp'},
            {'published_port': 7300, 'target_address': '10.60.1.77', 'protocol': None}])],
    'published_address: one port on two addresses': [
        ns(1, port_forwards=[{'published_port': 8443, 'published_address': '198.51.100.1'}]),
        ns(2, port_forwards=[{'published_port': 8443, 'published_address': '198.51.100.2'}]),
        ns(3, port_forwards=[{'published_port': 8443, 'protocol': 'udp'}])],
    'odd but accepted spellings': [
        ns(1, name='a.b+c-d_e', host_interface='h@1.x', port_forwards=[]),
        ns(2, name='x' * 64, host_interface='h' * 15, port_forwards=None),
        ns(3, gateway='', source_nat='', forward_mode='', egress_interface='', snat_address='')],
}


def test_a_trailing_newline_is_rejected_everywhere():
    """The template's regexes let one trailing newline through (a rule that never matches and
    cannot be removed, an undeletable /run/netns/x\n); the filter matches the whole text."""
    plan = netns_nat_plan([ns(1, name='x\n'), ns(2, inner_interface='veth1\n'), ns(3, host_address='10.60.3.1\n/24'),
                           ns(4, egress_interface='d0\n')])
    assert plan['errors'] == [
        'netns_nat_namespaces[0].name="x\\n": a namespace name is 1 to 64 letters, digits, _ . + - '
        '(not starting with . + -)',
        'netns_nat_namespaces[1].inner_interface="veth1\\n": an interface name is 1 to 15 letters, digits, '
        '_ . @ + -',
        'netns_nat_namespaces[2].host_address="10.60.3.1\\n/24": expected an IPv4 address with prefix length, '
        'such as 192.168.45.2/24',
        'netns_nat_namespaces[3].egress_interface="d0\\n": an interface name is 1 to 15 letters, digits, _ . @ + -']


@pytest.mark.parametrize('case', sorted(VALID_CASES))
def test_valid_input_plans_as_the_template_did(case):
    plan = assert_same_as_template(VALID_CASES[case])
    assert plan['errors'] == []
    assert len(plan['namespaces']) == len(VALID_CASES[case])


def test_role_wide_forward_mode_and_egress_interface():
    namespaces = [ns(1, port_forwards=[{'published_port': 80}]),
                  ns(2, source_nat='none', port_forwards=[{'published_port': 81}])]
    plan = assert_same_as_template(namespaces, egress_interface='wan0', forward_mode='both')
    assert [rule['forward'] for rule in plan['rules']] == ['both', 'none', 'both']
    assert plan['rules'][-1]['in_interface'] == 'wan0'


ERROR_CASES = {
    'bad names': [ns(1, name=''), ns(2, name='.'), ns(3, name='..'), ns(4, name='a/b'), ns(5, name='-x'),
                  ns(6, name='x' * 65), ns(7, name=None), ns(8, name='na\u00efve'), ns(9, name='a;rm -rf /')],
    'missing name': [{k: v for k, v in ns(1).items() if k != 'name'}, ns(2)],
    'bad interface names': [ns(1, host_interface='h' * 16), ns(2, inner_interface='eth 0'),
                            ns(3, host_interface='$(reboot)'), ns(4, egress_interface='bad/egress'),
                            ns(5, host_interface='eth0'), ns(6, inner_interface=7)],
    'bad addresses': [ns(1, host_address='10.60.1.1'), ns(2, inner_address='10.60.2.256/24'),
                      ns(3, host_address='10.60.3.1/33'), ns(4, host_address='10.60.04.1/24'),
                      ns(5, host_address=None), ns(6, inner_address='fd01::2/64'),
                      ns(7, host_address='10.60.7.1/24/1')],
    'address pairs': [ns(1, inner_address='10.61.1.2/24'), ns(2, inner_address='10.60.2.2/25'),
                      ns(3, inner_address='10.60.3.1/24'),
                      ns(4, host_address='10.60.4.1/31', inner_address='10.60.4.0/31'),
                      ns(5, host_address='10.60.5.0/24'), ns(6, inner_address='10.60.6.255/24')],
    'gateway, source nat and forward mode': [
        ns(1, gateway='10.60.1'), ns(2, gateway='10.99.0.1'), ns(3, gateway='10.60.3.2'),
        ns(4, source_nat='hide'), ns(5, source_nat='snat'), ns(6, source_nat='snat', snat_address='1.2.3'),
        ns(7, snat_address='198.51.100.9'), ns(8, forward_mode='open')],
    'port forward shapes and ports': [
        ns(1, port_forwards={'published_port': 80}), ns(2, port_forwards='80:80'),
        ns(3, port_forwards=['80', 7, {'published_port': 0}, {'published_port': 65536},
                             {'published_port': True}, {'published_port': 'http'}, {'published_port': '90-80'},
                             {'published_port': None}, {}, {'published_port': 80, 'target_port': 'x'},
                             {'published_port': None, 'target_port': None}, {'target_port': None},
                             {'target_port': 80},
                             {'published_port': 80.0}, {'published_port': 81, 'protocol': 'icmp'}])],
    'ranges that do not keep their ports': [
        ns(1, port_forwards=[{'published_port': '8080-8090', 'target_port': 80},
                             {'published_port': '9080-9090', 'target_port': '9081-9091'}])],
    'target and published addresses': [
        ns(1, port_forwards=[{'published_port': 80, 'target_address': '10.88.0.5'},
                             {'published_port': 81, 'target_address': '10.60.1.1'},
                             {'published_port': 82, 'target_address': 'inner'},
                             {'published_port': 83, 'published_address': 'eth0'},
                             {'published_port': 84, 'target_address': '10.60.1.5', 'published_address': '1.2.3.4'}])],
    'overlapping subnets': [ns(1), ns(2, host_address='10.60.0.1/16', inner_address='10.60.0.2/16'),
                            ns(3, host_address='10.60.1.129/25', inner_address='10.60.1.130/25'), ns(4),
                            ns(5, name='pns1x', host_interface='ph1x')],
    'duplicate names and host interfaces': [
        ns(1), ns(2, name='pns1'), ns(3, name='pns1', host_interface='ph2'), ns(4, host_interface='ph1'),
        ns(5, name=None), 'not a dictionary', {'name': None, 'host_interface': 'ph9'},
        {'host_interface': 'ph9'}],
    'duplicate published ports': [
        ns(1, port_forwards=[{'published_port': 80}, {'published_port': '79-81'},
                             {'published_port': 80, 'protocol': 'udp'}]),
        ns(2, port_forwards=[{'published_port': '70-90', 'published_address': '198.51.100.1'},
                             {'published_port': 81, 'protocol': 'udp'}]),
        ns(3, port_forwards=[{'published_port': 80, 'published_address': '198.51.100.2'},
                             {'published_port': '85-86', 'published_address': '198.51.100.1'}])],
    'elements that are not dictionaries': ['myspace', 3, None, ['a'], ns(1)],
}


@pytest.mark.parametrize('case', sorted(ERROR_CASES))
def test_invalid_input_gives_the_templates_errors(case):
    plan = assert_same_as_template(ERROR_CASES[case])
    assert plan['errors']


@pytest.mark.parametrize('namespaces', [{'name': 'myspace'}, 'myspace', None, 42],
                         ids=['mapping', 'string', 'none', 'number'])
def test_a_namespace_list_that_is_not_a_list(namespaces):
    plan = assert_same_as_template(namespaces)
    assert plan['errors'] == ['netns_nat_namespaces must be a list of namespaces']


def test_empty_list():
    assert assert_same_as_template([]) == {'errors': [], 'namespaces': [], 'services': [], 'netns': [], 'pairs': [],
                                           'pairs_absent': [], 'routes': [], 'rules': []}


def test_messages_the_role_tests_match_on():
    plan = assert_same_as_template(ERROR_CASES['overlapping subnets'] + [ns(9, name='pns1')])
    assert ('netns_nat_namespaces[2]: subnet 10.60.1.128/25 (of 10.60.1.129/25) overlaps '
            'netns_nat_namespaces[1] subnet 10.60.0.0/16; each namespace needs its own subnet') in plan['errors']
    assert 'netns_nat_namespaces[5].name="pns1": duplicates netns_nat_namespaces[0].name' in plan['errors']


def big_topology(count):
    namespaces = []
    for index in range(count):
        high, low = divmod(index, 64)
        base = '10.%d.%d' % (100 + high, low * 4)
        namespaces.append({'name': 'bns%d' % index, 'host_interface': 'bh%d' % index,
                           'inner_interface': 'bi%d' % index, 'host_address': base + '.1/30',
                           'inner_address': base + '.2/30',
                           'port_forwards': [{'published_port': 20000 + index, 'target_port': 80},
                                             {'published_port': 20000 + index, 'protocol': 'udp'}]})
    return namespaces


def test_a_larger_topology_with_conflicts_matches_the_template():
    namespaces = big_topology(40)
    namespaces[30]['host_address'] = namespaces[3]['host_address']
    namespaces[31]['port_forwards'][1]['published_port'] = '20000-20010'
    namespaces[32]['name'] = 'bns7'
    plan = assert_same_as_template(namespaces)
    assert len(plan['errors']) == 1 + 11 + 1


def test_500_namespaces_plan_in_under_a_second():
    namespaces = big_topology(500)
    started = time.perf_counter()
    plan = netns_nat_plan(namespaces, egress_interface='eth0', forward_mode='scoped')
    elapsed = time.perf_counter() - started
    assert plan['errors'] == []
    assert len(plan['namespaces']) == 500 and len(plan['rules']) == 2000  # masquerade, dnat, isolate + 500 more
    assert elapsed < 1.0, 'planning 500 namespaces took %.2f s' % elapsed


def test_500_namespaces_with_every_port_on_its_own_address_stay_fast():
    # One port published on 500 host addresses: every pair of forwards overlaps in its port, so
    # the sweep compares all of them; that must still be fast, and find no conflict.
    namespaces = big_topology(500)
    for index, item in enumerate(namespaces):
        item['port_forwards'] = [{'published_port': 443, 'published_address': '198.51.%d.%d'
                                  % (100 + index // 250, index % 250 + 1)}]
    started = time.perf_counter()
    plan = netns_nat_plan(namespaces)
    assert plan['errors'] == []
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize('missing', ['host_interface', 'inner_interface'])
def test_a_missing_interface_is_reported_where_the_template_crashed(missing):
    # The only intended difference: the template failed on the undefined field while building
    # its result; the filter reports it like any other bad interface name.
    namespace = {key: value for key, value in ns(1).items() if key != missing}
    plan = netns_nat_plan([namespace])
    assert plan['errors'] == ['netns_nat_namespaces[0].%s="": an interface name is 1 to 15 letters, digits, '
                              '_ . @ + -' % missing]


# --- the part options of the role's netns_topology calls ---------------------------------------

def article_namespace(**extra):
    ns = {'name': 'myspace', 'host_interface': 'veth1', 'host_address': '192.168.45.2/24',
          'inner_interface': 'veth2', 'inner_address': '192.168.45.3/24',
          'port_forwards': [{'published_port': 8080, 'target_port': 80}]}
    ns.update(extra)
    return ns


ROLE_SETTINGS = {'backend': 'iptables', 'purge': False, 'forward_policy': None, 'forwarding': True,
                 'state_dir': '/run/linuxnet-netns'}


def parts(state, namespaces, **settings):
    plan = netns_nat_plan(namespaces, topology=dict(ROLE_SETTINGS, **settings))
    return dict((part, json.loads(text)) for part, text in plan['topology'][state].items())


def test_topology_parts_hold_the_same_lists_as_the_plan():
    lists = netns_nat_plan([article_namespace()])
    present = parts('present', [article_namespace()])
    assert list(present) == ['netns', 'veth', 'netns_route', 'sysctl_forward', 'nat_rule']
    assert present['netns'] == {'namespaces': lists['netns']}
    assert present['veth'] == {'pairs': lists['pairs']}
    assert present['netns_route'] == {'routes': lists['routes']}
    assert present['sysctl_forward'] == {'ipv4': True, 'record_dir': '/run/linuxnet-netns'}
    # the role converges through its ownership record: our rules are always purged to the list
    assert present['nat_rule'] == {'rules': lists['rules'], 'backend': 'iptables', 'purge': True}
    absent = parts('absent', [article_namespace()])
    assert absent == {'netns': {'namespaces': lists['netns']}, 'veth': {'pairs': lists['pairs_absent']},
                      'sysctl_forward': {'restore': True, 'record_dir': '/run/linuxnet-netns'},
                      'nat_rule': {'rules': [], 'backend': 'iptables', 'purge': True}}


def test_the_ownership_option_names_the_record_dir_and_the_adopted_namespaces():
    plan = netns_nat_plan([article_namespace(adopt=True),
                           article_namespace(name='other', host_interface='veth3', inner_interface='veth4',
                                             host_address='192.168.46.2/24', inner_address='192.168.46.3/24',
                                             port_forwards=[])], topology=ROLE_SETTINGS)
    assert plan['errors'] == []
    assert plan['topology']['ownership'] == {'record_dir': '/run/linuxnet-netns', 'adopt': ['myspace']}
    adopt_off = netns_nat_plan([article_namespace(adopt=False)], topology=ROLE_SETTINGS)
    assert adopt_off['topology']['ownership']['adopt'] == []


def test_with_topology_the_plan_keeps_only_what_the_role_reads():
    plan = netns_nat_plan([article_namespace()], topology=ROLE_SETTINGS)
    assert sorted(plan) == ['errors', 'namespaces_json', 'services_json', 'topology']
    assert all(isinstance(text, str) for state in ('present', 'absent') for text in plan['topology'][state].values())
    assert json.loads(plan['namespaces_json']) == netns_nat_plan([article_namespace()])['namespaces']


def test_topology_parts_leave_out_what_has_nothing_to_do():
    present = parts('present', [article_namespace(default_route=False, source_nat='none', port_forwards=[])],
                    forwarding=False)
    # no route, no forwarding; the nat_rule part always runs (it purges rules that left the list)
    assert sorted(present) == ['nat_rule', 'netns', 'veth']
    assert present['nat_rule'] == {'rules': [{'kind': 'isolate', 'destination': '192.168.45.0/24',
                                              'out_interface': 'veth1'}], 'backend': 'iptables', 'purge': True}
    assert sorted(parts('present', [])) == ['nat_rule', 'sysctl_forward']
    assert sorted(parts('absent', [])) == ['nat_rule', 'sysctl_forward']  # forwarding goes back in any case


def test_a_forward_policy_goes_to_the_nat_rule_part():
    assert parts('present', [], purge=True)['nat_rule'] == {'rules': [], 'backend': 'iptables', 'purge': True}
    assert parts('present', [], forward_policy='drop')['nat_rule'] == {
        'rules': [], 'backend': 'iptables', 'purge': True, 'forward_policy': 'drop'}
    assert 'forward_policy' not in parts('absent', [], forward_policy='drop')['nat_rule']


def test_random_fully_goes_to_the_source_nat_rule_of_its_namespace_only():
    plan = netns_nat_plan([article_namespace(random_fully=True),
                           article_namespace(name='other', host_interface='veth3', inner_interface='veth4',
                                             host_address='192.168.46.2/24', inner_address='192.168.46.3/24',
                                             port_forwards=[])])
    assert plan['errors'] == []
    source_nat = [rule for rule in plan['rules'] if rule['kind'] == 'masquerade']
    assert [rule.get('random_fully') for rule in source_nat] == [True, None]
    assert not any('random_fully' in rule for rule in plan['rules'] if rule['kind'] == 'dnat')
    assert [ns.get('random_fully') for ns in plan['namespaces']] == [True, None]
    # Off (the default) leaves the plan exactly as without the option.
    assert netns_nat_plan([article_namespace(random_fully=False)]) == netns_nat_plan([article_namespace()])


def test_random_fully_needs_a_source_nat():
    plan = netns_nat_plan([article_namespace(source_nat='none', random_fully=True)])
    assert plan['errors'] == ['netns_nat_namespaces[0].random_fully=true: applies only to source_nat '
                              'masquerade or snat (source_nat is none)']
