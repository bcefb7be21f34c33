# SPDX-License-Identifier: GPL-3.0-or-later
"""netns_route against real namespaces: create, idempotence, check mode (snapshots),
diff, replace, absent, drift, tables/metrics, IPv6, multipath, several namespaces in one
call, bad input that changes nothing, and rollback of a call that fails half-way."""
import time

import pytest

from tests.support import harness

# Carries this run's prefix, so a namespace created by mistake shows in snapshot_own.
MISSING_NS = harness.PREFIX + 'missing'

V4_SUBNET = '10.45.0.0/24'
V6_SUBNET = 'fd45:1::/64'


def build_lab(ns):
    """veth va/vb, both ends inside ``ns``: va holds 10.45.0.1/24 and fd45:1::1/64, both up."""
    harness.sh(['ip', '-n', ns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb'])
    harness.sh(['ip', '-n', ns, 'addr', 'add', '10.45.0.1/24', 'dev', 'va'])
    harness.sh(['ip', '-n', ns, 'addr', 'add', 'fd45:1::1/64', 'dev', 'va', 'nodad'])
    harness.sh(['ip', '-n', ns, 'link', 'set', 'va', 'up'])
    harness.sh(['ip', '-n', ns, 'link', 'set', 'vb', 'up'])
    wait_settled(ns)
    return ns


def wait_settled(ns, timeout=10.0):
    """Carrier and IPv6 link-local addresses arrive asynchronously after `link set up`;
    wait for them, or a snapshot taken before a module call differs from one taken after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        links = harness.links(ns)
        addresses = harness.addresses(ns)
        if all('LOWER_UP' in links[name]['flags'] and any(a.startswith('fe80:') for a in addresses[name])
               for name in ('va', 'vb')):
            return
        time.sleep(0.05)
    raise AssertionError('veth va/vb in %s did not come up: %r' % (ns, harness.addresses(ns)))


@pytest.fixture
def lab(netns):
    return build_lab(netns('rt'))


def route_lines(ns, *args):
    """`ip route show ARGS` inside ns, one stripped line per route."""
    return [line.strip() for line in harness.sh(['ip', '-n', ns] + list(args)).splitlines() if line.strip()]


def route(**args):
    return harness.run_module('netns_route', args)


def assert_ok(result, changed):
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is changed, result


def test_default_route_create_check_mode_diff_and_idempotence(lab):
    args = {'namespace': lab, 'dest': 'default', 'gateway': '10.45.0.2'}
    before = harness.snapshot_own([lab])
    predicted = harness.run_module('netns_route', args, check=True, diff=True)
    assert_ok(predicted, True)
    assert harness.snapshot_own([lab]) == before
    assert predicted['diff']['before'] == ''
    assert predicted['diff']['after'] == '%s: default via 10.45.0.2 dev va proto static metric 0\n' % lab
    assert predicted['commands'] == ['ip -n %s route add default via 10.45.0.2 dev va metric 0' % lab]

    result = harness.run_module('netns_route', args, diff=True)
    assert_ok(result, True)
    assert result['diff'] == predicted['diff']
    assert result['routes'][0]['action'] == 'added'
    assert 'default via 10.45.0.2 dev va proto static' in route_lines(lab, 'route', 'show')

    again = harness.run_module('netns_route', args, check=True)
    assert_ok(again, False)
    again = route(**args)
    assert_ok(again, False)
    assert again['commands'] == [] and again['routes'][0]['action'] == 'unchanged'


def test_ipv6_default_route_and_link_local_gateway(lab):
    result = route(namespace=lab, dest='default', gateway='fd45:1::2')
    assert_ok(result, True)
    assert result['routes'][0]['after'][0]['metric'] == 1024
    assert any(line.startswith('default via fd45:1::2 dev va proto static metric 1024')
               for line in route_lines(lab, '-6', 'route', 'show'))
    assert_ok(route(namespace=lab, dest='default', gateway='fd45:1::2'), False)

    # Same identity (default, main, metric 1024), other gateway: replaced in place.
    swapped = route(namespace=lab, dest='default', gateway='fe80::2', device='va')
    assert_ok(swapped, True)
    entry = swapped['routes'][0]
    assert entry['action'] == 'replaced'
    assert entry['before'][0]['gateway'] == 'fd45:1::2' and entry['after'][0]['gateway'] == 'fe80::2'
    defaults = [line for line in route_lines(lab, '-6', 'route', 'show') if line.startswith('default')]
    assert len(defaults) == 1 and defaults[0].startswith('default via fe80::2 dev va')
    assert_ok(route(namespace=lab, dest='default', gateway='fe80::2', device='va'), False)


def test_replace_keeps_the_metric_and_reports_before_after(lab):
    harness.sh(['ip', '-n', lab, 'route', 'add', '10.60.0.0/16', 'via', '10.45.0.2', 'metric', '50'])
    result = harness.run_module('netns_route', {'namespace': lab, 'dest': '10.60.0.0/16', 'gateway': '10.45.0.3'},
                                diff=True)
    assert_ok(result, True)
    entry = result['routes'][0]
    assert entry['action'] == 'replaced'
    assert (entry['before'][0]['gateway'], entry['before'][0]['proto']) == ('10.45.0.2', 'boot')
    assert (entry['after'][0]['gateway'], entry['after'][0]['metric']) == ('10.45.0.3', 50)
    assert result['diff']['before'] == '%s: 10.60.0.0/16 via 10.45.0.2 dev va proto boot metric 50\n' % lab
    assert result['diff']['after'] == '%s: 10.60.0.0/16 via 10.45.0.3 dev va proto static metric 50\n' % lab
    assert route_lines(lab, 'route', 'show', '10.60.0.0/16') == [
        '10.60.0.0/16 via 10.45.0.3 dev va proto static metric 50']


def test_routes_made_by_others_satisfy_a_request_on_the_fields_given(lab):
    # `ip route add` marks routes proto boot; the kernel's subnet route is proto kernel.
    harness.sh(['ip', '-n', lab, 'route', 'add', '10.61.0.0/16', 'via', '10.45.0.2', 'metric', '7'])
    result = route(routes=[{'namespace': lab, 'dest': '10.61.0.0/16', 'gateway': '10.45.0.2'},
                           {'namespace': lab, 'dest': V4_SUBNET, 'device': 'va'},
                           {'namespace': lab, 'dest': V6_SUBNET, 'device': 'va'}])
    assert_ok(result, False)
    assert [entry['before'][0]['proto'] for entry in result['routes']] == ['boot', 'kernel', 'kernel']


def test_table_metric_and_device_route(lab):
    before = route_lines(lab, 'route', 'show')
    result = route(routes=[{'namespace': lab, 'dest': '10.62.0.0/24', 'gateway': '10.45.0.2', 'table': 100,
                            'metric': 10},
                           {'namespace': lab, 'dest': '10.63.0.0/24', 'device': 'vb'}])
    assert_ok(result, True)
    assert route_lines(lab, 'route', 'show', 'table', '100') == [
        '10.62.0.0/24 via 10.45.0.2 dev va proto static metric 10']
    assert '10.63.0.0/24 dev vb proto static scope link' in route_lines(lab, 'route', 'show')
    assert len(route_lines(lab, 'route', 'show')) == len(before) + 1
    assert_ok(route(routes=[{'namespace': lab, 'dest': '10.62.0.0/24', 'gateway': '10.45.0.2', 'table': 100,
                             'metric': 10},
                            {'namespace': lab, 'dest': '10.63.0.0/24', 'device': 'vb'}]), False)


def test_absent_removes_only_what_matches(lab):
    harness.sh(['ip', '-n', lab, 'route', 'add', '10.64.0.0/16', 'via', '10.45.0.2'])
    harness.sh(['ip', '-n', lab, 'route', 'add', '10.64.0.0/16', 'via', '10.45.0.3', 'metric', '5'])
    other_gateway = route(namespace=lab, dest='10.64.0.0/16', gateway='10.45.0.9', state='absent')
    assert_ok(other_gateway, False)
    assert len(route_lines(lab, 'route', 'show', '10.64.0.0/16')) == 2

    before = harness.snapshot_own([lab])
    predicted = harness.run_module('netns_route', {'namespace': lab, 'dest': '10.64.0.0/16', 'state': 'absent'},
                                   check=True, diff=True)
    assert_ok(predicted, True)
    assert harness.snapshot_own([lab]) == before
    assert predicted['diff']['after'] == ''
    assert len(predicted['diff']['before'].splitlines()) == 2

    result = route(namespace=lab, dest='10.64.0.0/16', state='absent')
    assert_ok(result, True)
    assert sorted(result['commands']) == [
        'ip -n %s route del 10.64.0.0/16 via 10.45.0.2 dev va metric 0' % lab,
        'ip -n %s route del 10.64.0.0/16 via 10.45.0.3 dev va metric 5' % lab]
    assert route_lines(lab, 'route', 'show', '10.64.0.0/16') == []
    assert_ok(route(namespace=lab, dest='10.64.0.0/16', state='absent'), False)


def test_drift_is_repaired(lab):
    args = {'namespace': lab, 'dest': 'default', 'gateway': '10.45.0.2'}
    assert_ok(route(**args), True)
    harness.sh(['ip', '-n', lab, 'route', 'del', 'default'])
    assert not any(line.startswith('default') for line in route_lines(lab, 'route', 'show'))
    repaired = route(**args)
    assert_ok(repaired, True)
    assert repaired['routes'][0]['action'] == 'added'
    assert 'default via 10.45.0.2 dev va proto static' in route_lines(lab, 'route', 'show')
    # Someone points the route elsewhere: replaced back.
    harness.sh(['ip', '-n', lab, 'route', 'replace', 'default', 'via', '10.45.0.7'])
    assert route(**args)['routes'][0]['action'] == 'replaced'
    assert 'default via 10.45.0.2 dev va proto static' in route_lines(lab, 'route', 'show')


def test_own_namespace_when_namespace_is_not_given(lab, tmp_path):
    """As through the connection plugin: the module runs inside the namespace it manages."""
    python = harness.python_in_namespace(lab, tmp_path)
    result = harness.run_module('netns_route', {'dest': 'default', 'gateway': '10.45.0.2'}, python=python)
    assert_ok(result, True)
    assert result['routes'][0]['namespace'] is None
    assert result['commands'] == ['ip route add default via 10.45.0.2 dev va metric 0']
    assert 'default via 10.45.0.2 dev va proto static' in route_lines(lab, 'route', 'show')
    assert_ok(harness.run_module('netns_route', {'dest': 'default', 'gateway': '10.45.0.2'}, python=python), False)


def test_point_to_point_peer_is_a_valid_gateway(lab):
    # IFA_ADDRESS is the peer here and IFA_LOCAL our own address
    harness.sh(['ip', '-n', lab, 'addr', 'add', '10.46.0.1', 'peer', '10.46.0.2/32', 'dev', 'vb'])
    result = route(namespace=lab, dest='10.71.0.0/24', gateway='10.46.0.2')
    assert_ok(result, True)
    assert route_lines(lab, 'route', 'show', '10.71.0.0/24') == ['10.71.0.0/24 via 10.46.0.2 dev vb proto static']
    own = route(namespace=lab, dest='10.72.0.0/24', gateway='10.46.0.1')
    assert own.get('failed') and 'is an address of namespace %s itself' % lab in own['msg']


def test_multipath_route_replaced_by_single_gateway(lab):
    harness.sh(['ip', '-n', lab, 'route', 'add', '10.70.0.0/24', 'nexthop', 'via', '10.45.0.2',
                'nexthop', 'via', '10.45.0.3'])
    result = route(namespace=lab, dest='10.70.0.0/24', gateway='10.45.0.4')
    assert_ok(result, True)
    assert [hop['gateway'] for hop in result['routes'][0]['before'][0]['nexthops']] == ['10.45.0.2', '10.45.0.3']
    assert route_lines(lab, 'route', 'show', '10.70.0.0/24') == ['10.70.0.0/24 via 10.45.0.4 dev va proto static']


def test_list_form_spans_namespaces(netns):
    first, second = build_lab(netns('rt')), build_lab(netns('rt'))
    routes = [{'namespace': first, 'dest': 'default', 'gateway': '10.45.0.2'},
              {'namespace': second, 'dest': 'default', 'gateway': '10.45.0.3'},
              {'namespace': second, 'dest': 'default', 'gateway': 'fd45:1::3'}]
    result = route(routes=routes)
    assert_ok(result, True)
    assert [entry['action'] for entry in result['routes']] == ['added', 'added', 'added']
    assert 'default via 10.45.0.2 dev va proto static' in route_lines(first, 'route', 'show')
    assert 'default via 10.45.0.3 dev va proto static' in route_lines(second, 'route', 'show')
    assert_ok(route(routes=routes), False)
    # top-level namespace and state are defaults for the items
    removed = route(namespace=second, state='absent', routes=[{'dest': 'default', 'family': 'ipv4'},
                                                              {'dest': 'default', 'family': 'ipv6'}])
    assert_ok(removed, True)
    assert [entry['namespace'] for entry in removed['routes']] == [second, second]
    assert not any(line.startswith('default') for line in route_lines(second, 'route', 'show'))
    assert 'default via 10.45.0.2 dev va proto static' in route_lines(first, 'route', 'show')


BAD_INPUT = [
    ({'dest': '10.80.0.1/24', 'gateway': '10.45.0.2'}, 'routes[1].dest', 'has host bits set'),
    ({'dest': '10.80.0.0/24', 'gateway': '10.99.0.1'}, 'routes[1].gateway',
     'gateway 10.99.0.1 is not in any connected subnet of namespace {ns}'),
    ({'dest': '10.80.0.0/24', 'device': 'nope0'}, 'routes[1].device', 'device nope0 does not exist in namespace {ns}'),
    ({'dest': 'fd80::/64', 'gateway': '10.45.0.2'}, 'routes[1].gateway', 'is an IPv4 address but dest fd80::/64'),
    ({'dest': '10.80.0.0/24', 'gateway': '10.45.0.2', 'namespace': MISSING_NS}, 'routes[1].namespace',
     MISSING_NS + ' does not exist'),
    ({'dest': V4_SUBNET, 'gateway': '10.45.0.2'}, 'routes[1].metric', 'proto kernel'),
]


@pytest.mark.parametrize('bad,field,message', BAD_INPUT, ids=[case[1] + ':' + case[0]['dest'] for case in BAD_INPUT])
def test_bad_input_fails_naming_the_field_and_changes_nothing(lab, bad, field, message):
    good = {'dest': 'default', 'gateway': '10.45.0.2'}
    bad = dict(bad)
    bad.setdefault('namespace', lab)
    before = harness.snapshot_own([lab])
    result = route(routes=[dict(good, namespace=lab), bad])
    assert result.get('failed') and result['_rc'] != 0
    assert result['field'] == field
    assert field in result['msg'] and message.format(ns=lab) in result['msg']
    assert harness.snapshot_own([lab]) == before


def test_failure_half_way_rolls_back_this_calls_changes(lab):
    harness.sh(['ip', '-n', lab, 'route', 'add', '10.65.0.0/16', 'via', '10.45.0.2'])
    harness.sh(['ip', '-n', lab, 'route', 'add', '10.66.0.0/16', 'via', '10.45.0.2'])
    harness.sh(['ip', '-n', lab, 'link', 'add', 'vd', 'type', 'veth', 'peer', 'name', 've'])  # stays down
    before = harness.snapshot_own([lab])
    result = route(routes=[
        {'namespace': lab, 'dest': 'default', 'gateway': '10.45.0.2'},                     # added
        {'namespace': lab, 'dest': '10.65.0.0/16', 'gateway': '10.45.0.3'},                # replaced
        {'namespace': lab, 'dest': '10.66.0.0/16', 'state': 'absent'},                     # removed
        # passes validation (onlink skips the subnet check), refused by the kernel: vd is down
        {'namespace': lab, 'dest': '10.67.0.0/16', 'gateway': '10.99.0.1', 'device': 'vd', 'onlink': True},
    ])
    assert result.get('failed')
    assert result['msg'].startswith('RouteApplyError: routes[3].dest=10.67.0.0/16')
    assert 'everything this call had created was removed' in result['msg']
    assert harness.snapshot_own([lab]) == before


def test_failure_in_a_later_namespace_rolls_back_the_earlier_ones(netns):
    """Each namespace gets its own write socket, opened when its first change comes: the
    earlier namespaces' sockets must still be open when the rollback runs."""
    first, second = build_lab(netns('rt')), build_lab(netns('rt'))
    harness.sh(['ip', '-n', second, 'link', 'add', 'vd', 'type', 'veth', 'peer', 'name', 've'])  # stays down
    before = harness.snapshot_own([first, second])
    result = route(routes=[
        {'namespace': first, 'dest': 'default', 'gateway': '10.45.0.2'},
        {'namespace': first, 'dest': 'default', 'gateway': 'fd45:1::2'},
        {'namespace': second, 'dest': '10.67.0.0/16', 'gateway': '10.99.0.1', 'device': 'vd', 'onlink': True},
    ])
    assert result.get('failed')
    assert result['msg'].startswith('RouteApplyError: routes[2].dest=10.67.0.0/16')
    assert 'everything this call had created was removed' in result['msg']
    assert harness.snapshot_own([first, second]) == before


def test_list_form_over_many_namespaces_as_the_role_calls_it(netns):
    """One default route per namespace, as roles/netns_nat passes them: check mode, the
    change, then nothing to do; namespaces already right are left alone."""
    labs = [netns('rt') for dummy in range(12)]
    for index, ns in enumerate(labs):
        harness.sh(['ip', '-n', ns, '-batch', '-'], input='\n'.join([
            'link add va type veth peer name vb',
            'addr add 10.47.%d.2/24 dev va' % index,
            'link set va up', 'link set vb up']) + '\n')
    routes = [{'namespace': ns, 'dest': 'default', 'gateway': '10.47.%d.1' % index} for index, ns in enumerate(labs)]
    harness.sh(['ip', '-n', labs[0], 'route', 'add', 'default', 'via', '10.47.0.1'])  # already right
    harness.sh(['ip', '-n', labs[1], 'route', 'add', 'default', 'via', '10.47.1.9'])  # points elsewhere

    before = harness.snapshot_own(labs)
    predicted = harness.run_module('netns_route', {'routes': routes}, check=True)
    assert_ok(predicted, True)
    assert harness.snapshot_own(labs) == before
    expected = ['unchanged', 'replaced'] + ['added'] * 10
    assert [entry['action'] for entry in predicted['routes']] == expected

    result = route(routes=routes)
    assert_ok(result, True)
    assert [entry['action'] for entry in result['routes']] == expected
    assert [entry['namespace'] for entry in result['routes']] == labs
    for index, ns in enumerate(labs):
        assert [line for line in route_lines(ns, 'route', 'show') if line.startswith('default')] == [
            'default via 10.47.%d.1 dev va%s' % (index, ' proto static' if index else '')]
        # IPv4 requests only: the IPv6 routing table is left as it was
        assert not any(line.startswith('default') for line in route_lines(ns, '-6', 'route', 'show'))

    again = route(routes=routes)
    assert_ok(again, False)
    assert set(entry['action'] for entry in again['routes']) == {'unchanged'}


def test_more_routes_than_one_netlink_window_and_a_refusal_inside_the_batch(lab):
    """150 routes of one namespace go out in netlink batches of 64 requests: all land,
    each as `ip` shows it, and the re-run writes nothing. A refusal in the middle of the
    second window (a down device) undoes the requests of every window, also those the
    kernel took after it."""
    routes = [{'namespace': lab, 'dest': '10.%d.%d.0/24' % (100 + index // 250, index % 250), 'gateway': '10.45.0.2',
               'metric': index % 3} for index in range(150)]
    result = route(routes=routes)
    assert_ok(result, True)
    assert [entry['action'] for entry in result['routes']] == ['added'] * 150
    shown = set(route_lines(lab, 'route', 'show'))
    for index in range(150):
        metric = ' metric %d' % (index % 3) if index % 3 else ''
        assert '10.%d.%d.0/24 via 10.45.0.2 dev va proto static%s' % (
            100 + index // 250, index % 250, metric) in shown
    assert_ok(route(routes=routes), False)

    harness.sh(['ip', '-n', lab, 'link', 'add', 'vd', 'type', 'veth', 'peer', 'name', 've'])  # stays down
    before = harness.snapshot_own([lab])
    more = [dict(item, dest='10.120.%d.0/24' % index, metric=None) for index, item in enumerate(routes[:140])]
    more[100] = {'namespace': lab, 'dest': '10.67.0.0/16', 'gateway': '10.99.0.1', 'device': 'vd', 'onlink': True}
    failed = route(routes=[dict((key, value) for key, value in item.items() if value is not None) for item in more])
    assert failed.get('failed')
    assert failed['msg'].startswith('RouteApplyError: routes[100].dest=10.67.0.0/16')
    assert 'Network is down' in failed['msg'] and 'everything this call had created was removed' in failed['msg']
    assert harness.snapshot_own([lab]) == before
