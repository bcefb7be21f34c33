# SPDX-License-Identifier: GPL-3.0-or-later
"""The role linuxnet.netns.netns_nat through real ansible-playbook runs against host
namespaces reached with the linuxnet.netns.netns connection plugin: the whole-input checks
fail before any change, check mode changes nothing, one call per module whatever the number
of namespaces, idempotence both ways, and state=absent leaves each host exactly as it was
(forwarding turned off again only where the role had turned it on).

Reachability, observed addresses and conntrack evidence are the molecule scenarios' job
(tests/molecule/run.sh); these tests are about the role's own logic."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.support import harness
from tests.support.paths import COLLECTIONS_ROOT, REPO_ROOT, ensure_collection_link

pytestmark = pytest.mark.controller_only

PLAYBOOK = """
- name: Apply the role
  hosts: all
  gather_facts: false
  roles:
    - role: linuxnet.netns.netns_nat
  post_tasks:
    - name: Show what moved
      ansible.builtin.debug:
        msg: "changed_parts={{ netns_nat_applied.changed_parts | join(',') }}"
"""


def _ansible_playbook():
    candidate = os.path.join(REPO_ROOT, '.venv', 'bin', 'ansible-playbook')
    return candidate if os.path.exists(candidate) else os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


def run_role(workdir, hosts, check=False, extra_vars=None):
    """Apply the role to ``hosts`` (inventory name -> host variables, including
    ansible_netns_name); returns (returncode, output)."""
    ensure_collection_link()
    inventory = {'all': {'hosts': hosts, 'vars': {
        'ansible_connection': 'linuxnet.netns.netns',
        'ansible_python_interpreter': sys.executable,
        'netns_nat_install_packages': False,
    }}}
    (workdir / 'inventory.json').write_text(json.dumps(inventory))
    (workdir / 'playbook.yml').write_text(PLAYBOOK)
    env = dict(harness.ENV)
    env.pop('ANSIBLE_CONFIG', None)  # isolated from the repository's ansible.cfg
    env.update(LC_ALL='C.UTF-8', ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_FORCE_COLOR='0', ANSIBLE_RETRY_FILES_ENABLED='0',
               ANSIBLE_LOCAL_TEMP=str(workdir / 'ansible-local'))
    argv = [_ansible_playbook(), '-i', str(workdir / 'inventory.json'), str(workdir / 'playbook.yml')]
    if check:
        argv.append('--check')
    if extra_vars:
        argv += ['-e', json.dumps(extra_vars)]
    proc = subprocess.run(argv, cwd=str(workdir), env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def changed_parts(output):
    """The parts of the role's netns_topology call that changed something (one host)."""
    found = re.findall(r'"msg": "changed_parts=([a-z_,]*)"', output)
    assert len(found) == 1, output
    return found[0].split(',') if found[0] else []


def recap(output, host):
    match = re.search(r'^%s\s*:\s*(.*)$' % re.escape(host), output, re.MULTILINE)
    assert match, 'no recap line for %s in:\n%s' % (host, output)
    return dict((key, int(value)) for key, value in re.findall(r'(\w+)=(\d+)', match.group(1)))


def inner(name, index, **extra):
    """An inner namespace on 10.77.<index>.0/24 with a TCP and a UDP forward."""
    item = {
        'name': name,
        'host_interface': 'vh%d' % index,
        'host_address': '10.77.%d.1/24' % index,
        'inner_interface': 'eth0',
        'inner_address': '10.77.%d.2/24' % index,
        'port_forwards': [
            {'protocol': 'tcp', 'published_port': 8000 + index, 'target_port': 80},
            {'protocol': 'udp', 'published_port': 9000 + index, 'target_port': 53},
        ],
    }
    item.update(extra)
    return item


def comparable(snapshot):
    """harness.snapshot() without nft's empty accepting chains: iptables-nft creates built-in
    chains (ip nat OUTPUT, PREROUTING) when a rule first needs them and leaves them empty
    when the last one goes. They have no effect, and iptables-save (compared as well) lists
    built-in chains always."""
    result = dict(snapshot)
    rulesets = dict(snapshot['rulesets'])
    rulesets['nft'] = _without_empty_chains(rulesets['nft'])
    result['rulesets'] = rulesets
    return result


def _without_empty_chains(lines):
    kept, index = [], 0
    while index < len(lines):
        if (lines[index].strip().startswith('chain ') and index + 2 < len(lines)
                and lines[index + 1].strip().startswith('type ') and 'policy accept;' in lines[index + 1]
                and lines[index + 2].strip() == '}'):
            index += 3
            continue
        kept.append(lines[index])
        index += 1
    return [line for line in kept if line.strip()]


@pytest.fixture
def hosts(netns):
    """Two host namespaces joined by eth0 <-> eth0 (192.168.77.0/24), each with an
    administrator's own NAT rule that the role must leave alone."""
    a, b = netns('ra'), netns('rb')
    for ns in (a, b):
        # no IPv6 link-local addresses appearing late: the before/after snapshots stay comparable
        harness.nsexec(ns, ['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1'])
    harness.sh(['ip', '-n', a, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b])
    for ns, address in ((a, '192.168.77.1/24'), (b, '192.168.77.2/24')):
        harness.sh(['ip', '-n', ns, 'addr', 'add', address, 'dev', 'eth0'])
        harness.sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
        harness.nsexec(ns, ['iptables', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.99.0.0/24', '-o', 'eth0',
                            '-j', 'MASQUERADE'])
    for ns in (a, b):
        wait_for_carrier(ns, 'eth0')
    yield a, b
    for ns in (a, b):
        harness.remove_forwarding_record(ns)


def wait_for_carrier(ns, ifname, timeout=5.0):
    deadline = time.time() + timeout
    while 'NO-CARRIER' in harness.links(ns)[ifname]['flags'] and time.time() < deadline:
        time.sleep(0.05)


def test_inconsistent_input_fails_before_any_change(hosts, netns, tmp_path):
    host_ns = hosts[0]
    first, second = netns('ri', create=False), netns('ri', create=False)
    namespaces = [
        inner(first, 1),
        # same subnet as the first, a forward target outside its subnet, the first's TCP port
        inner(second, 2, host_address='10.77.1.129/24', inner_address='10.77.1.130/24',
              port_forwards=[{'protocol': 'tcp', 'published_port': 8001, 'target_address': '10.88.0.5'},
                             {'protocol': 'udp', 'published_port': '9000-9005'}]),
        inner(first, 3),
    ]
    before = harness.snapshot(host_ns)
    code, output = run_role(tmp_path, {'host': {'ansible_netns_name': host_ns, 'netns_nat_namespaces': namespaces}})
    assert code != 0, output
    assert 'invalid input, nothing was changed' in output
    for expected in (
            'netns_nat_namespaces[1]: subnet 10.77.1.0/24 (of 10.77.1.129/24) overlaps netns_nat_namespaces[0]',
            'netns_nat_namespaces[1].port_forwards[0].target_address=\\"10.88.0.5\\": is outside the subnet 10.77.1.0/24',
            'netns_nat_namespaces[1].port_forwards[1].published_port=\\"9000-9005\\": udp port already published by '
            'netns_nat_namespaces[0].port_forwards[1]',
            'netns_nat_namespaces[2].name=\\"%s\\": duplicates netns_nat_namespaces[0].name' % first):
        assert expected in output, output
    assert harness.snapshot(host_ns) == before
    assert first not in harness.list_netns() and second not in harness.list_netns()


def test_argument_spec_rejects_unknown_keys_and_choices(hosts, netns, tmp_path):
    host_ns = hosts[0]
    name = netns('rs', create=False)
    bad = inner(name, 1, source_nat='nat', hostaddress='10.77.1.1/24')
    code, output = run_role(tmp_path, {'host': {'ansible_netns_name': host_ns, 'netns_nat_namespaces': [bad]}})
    assert code != 0, output
    assert 'source_nat' in output and 'masquerade, snat, none' in output, output
    assert 'hostaddress' in output, output
    assert name not in harness.list_netns()


def test_check_mode_changes_nothing(hosts, netns, tmp_path):
    host_ns = hosts[0]
    names = [netns('rc', create=False), netns('rc', create=False)]
    before = harness.snapshot(host_ns)
    code, output = run_role(tmp_path, {'host': {'ansible_netns_name': host_ns,
                                                'netns_nat_namespaces': [inner(n, i + 1) for i, n in enumerate(names)]}},
                            check=True)
    assert code == 0, output
    assert recap(output, 'host')['changed'] == 1, output  # the one netns_topology task
    # pairs and routes live in namespaces that do not exist yet: they cannot be compared,
    # but the preview lists them as what a real run would add
    assert changed_parts(output) == ['netns', 'veth', 'netns_route', 'sysctl_forward', 'nat_rule'], output
    assert harness.snapshot(host_ns) == before
    assert not set(names) & set(harness.list_netns())


def test_present_absent_cycle_touches_only_what_the_role_made(hosts, netns, tmp_path):
    """Host a: three namespaces, forwarding off before. Host b: one namespace, forwarding
    already on. Both run the same single call per module; absent restores each host."""
    a, b = hosts
    harness.nsexec(b, ['sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    names_a = [netns('rp', create=False), netns('rp', create=False), netns('rp', create=False)]
    name_b = netns('rq', create=False)
    inventory = {
        'host_a': {'ansible_netns_name': a, 'netns_nat_backend': 'iptables',
                   'netns_nat_namespaces': [inner(names_a[0], 1),
                                            inner(names_a[1], 2, source_nat='snat', snat_address='192.168.77.1',
                                                  random_fully=True),
                                            inner(names_a[2], 3, forward_mode='both')]},
        'host_b': {'ansible_netns_name': b, 'netns_nat_backend': 'nftables',
                   'netns_nat_namespaces': [inner(name_b, 1, random_fully=True)]},
    }
    before = {ns: comparable(harness.snapshot(ns)) for ns in (a, b)}

    code, output = run_role(tmp_path, inventory)
    assert code == 0, output
    assert recap(output, 'host_a')['changed'] > 0 and recap(output, 'host_b')['changed'] > 0
    # One call per module and host, whatever the number of namespaces: no loops, each task once.
    assert '(item=' not in output, output
    task_names = re.findall(r'^TASK \[linuxnet\.netns\.netns_nat : (.*?)\] \**$', output, re.MULTILINE)
    assert len(task_names) == len(set(task_names)), task_names
    for ns, count in ((a, 3), (b, 1)):
        links = harness.links(ns)
        assert len([name for name in links if name.startswith('vh')]) == count
    assert set(names_a + [name_b]) <= set(harness.list_netns())
    assert harness.sysctls(a)['net/ipv4/ip_forward'] == '1'
    assert '10.77.2.2/24' in harness.addresses(names_a[1])['eth0']
    assert 'default via 10.77.3.1 dev eth0 proto static' in harness.routes(names_a[2])
    saved_a = '\n'.join(harness.rulesets(a)['iptables-save'])
    assert '-j SNAT --to-source 192.168.77.1 --random-fully' in saved_a
    assert saved_a.count('--random-fully') == 1  # only the namespace that asked for it
    assert any('linuxnet_netns' in line for line in harness.rulesets(b)['nft'])
    assert len([line for line in harness.rulesets(b)['nft'] if 'masquerade fully-random' in line]) == 1

    code, output = run_role(tmp_path, inventory)
    assert code == 0, output
    assert recap(output, 'host_a')['changed'] == 0 and recap(output, 'host_b')['changed'] == 0, output

    code, output = run_role(tmp_path, inventory, extra_vars={'netns_nat_state': 'absent'})
    assert code == 0, output
    code, output = run_role(tmp_path, inventory, extra_vars={'netns_nat_state': 'absent'})
    assert code == 0, output
    assert recap(output, 'host_a')['changed'] == 0 and recap(output, 'host_b')['changed'] == 0, output

    assert not set(names_a + [name_b]) & set(harness.list_netns())
    for ns in (a, b):
        assert comparable(harness.snapshot(ns)) == before[ns], ns
    # forwarding: turned off again on a (the role had turned it on), left on on b
    assert harness.sysctls(a)['net/ipv4/ip_forward'] == '0'
    assert harness.sysctls(b)['net/ipv4/ip_forward'] == '1'
