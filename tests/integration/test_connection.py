# SPDX-License-Identifier: GPL-3.0-or-later
"""The linuxnet.netns.netns connection plugin, driven by real ansible-playbook runs against
two namespaces joined by a veth pair."""
import json
import os
import re
import subprocess
import sys

import pytest

from tests.support import harness
from tests.support.paths import COLLECTIONS_ROOT, REPO_ROOT, ensure_collection_link

pytestmark = pytest.mark.controller_only

PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playbooks')
ADDRESS_A = '10.251.17.1'
ADDRESS_B = '10.251.17.2'


def _ansible_playbook():
    candidate = os.path.join(REPO_ROOT, '.venv', 'bin', 'ansible-playbook')
    if os.path.exists(candidate):
        return candidate
    return os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


def _write_inventory(path, hosts, pipelining=None):
    """hosts: inventory name -> namespace name (None: the inventory name is the namespace);
    pipelining: inventory name -> bool."""
    entries = {}
    for host, namespace in hosts.items():
        entry = {'ansible_netns_name': namespace} if namespace else {}
        if pipelining and host in pipelining:
            entry['ansible_pipelining'] = pipelining[host]
        entries[host] = entry
    inventory = {'netns_hosts': {
        'hosts': entries,
        'vars': {'ansible_connection': 'linuxnet.netns.netns', 'ansible_python_interpreter': sys.executable},
    }}
    with open(path, 'w') as handle:
        json.dump(inventory, handle)  # JSON is YAML
    return path


def run_playbook(playbook, inventory, workdir, extra_vars=None, verbosity=0):
    ensure_collection_link()
    env = dict(harness.ENV)
    env.pop('ANSIBLE_CONFIG', None)  # run isolated from the repository's ansible.cfg
    # ansible refuses a non-UTF-8 locale; C.UTF-8 keeps tool output untranslated.
    env.update(LC_ALL='C.UTF-8', ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_RETRY_FILES_ENABLED='0', ANSIBLE_LOCAL_TEMP=os.path.join(str(workdir), 'ansible-local'))
    argv = [_ansible_playbook(), '-i', str(inventory), os.path.join(PLAYBOOKS, playbook)]
    if extra_vars:
        argv += ['-e', json.dumps(extra_vars)]
    if verbosity:
        argv.append('-' + 'v' * verbosity)
    return subprocess.run(argv, cwd=str(workdir), env=env, capture_output=True, text=True, timeout=120, check=False)


# Drives the plugin without a playbook, in a child process so that the plugin loader's
# global collection finder never leaks into the pytest process. Prints one JSON result.
DIRECT_SCRIPT = r"""
import json, subprocess, sys
from ansible.errors import AnsibleConnectionFailure
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader, init_plugin_loader

collections_root, namespace, workdir = sys.argv[1:4]
init_plugin_loader([collections_root])
conn = connection_loader.get('linuxnet.netns.netns', PlayContext(), None)
conn.set_options(var_options={'ansible_netns_name': namespace})
result = {}
with open(workdir + '/one', 'w') as handle:
    handle.write('1\n')
# /proc/sys/net is per network namespace: the write must land in the host's namespace.
conn.put_file(workdir + '/one', '/proc/sys/net/ipv4/ip_forward')
conn.fetch_file('/proc/sys/net/ipv4/ip_forward', workdir + '/forward')
with open(workdir + '/forward') as handle:
    result['fetched_forward'] = handle.read().strip()
rc, out, err = conn.exec_command(['cat', '/proc/sys/net/ipv4/ip_forward'])
result['exec_forward'] = [rc, out.decode().strip()]
subprocess.run(['ip', 'netns', 'delete', namespace], check=True)
try:
    conn.exec_command('true')
    result['after_delete'] = 'no error'
except AnsibleConnectionFailure as exc:
    result['after_delete'] = str(exc)
print(json.dumps(result))
"""


def _recap(output, host):
    match = re.search(r'^%s\s*:\s*(.*)$' % re.escape(host), output, re.MULTILINE)
    assert match, 'no recap line for %s in:\n%s' % (host, output)
    return dict((key, int(value)) for key, value in re.findall(r'(\w+)=(\d+)', match.group(1)))


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    """Two namespaces with a veth pair between them, and an inventory naming them."""
    workdir = tmp_path_factory.mktemp('connection')
    ns_a, ns_b = harness.unique_name('ca'), harness.unique_name('cb')
    veth_a, veth_b = harness.unique_name('va'), harness.unique_name('vb')
    made = []
    try:
        for ns in (ns_a, ns_b):
            harness.sh(['ip', 'netns', 'add', ns])
            made.append(ns)
            harness.sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
        harness.sh(['ip', '-n', ns_a, 'link', 'add', veth_a, 'type', 'veth', 'peer', 'name', veth_b, 'netns', ns_b])
        harness.sh(['ip', '-n', ns_a, 'addr', 'add', ADDRESS_A + '/30', 'dev', veth_a])
        harness.sh(['ip', '-n', ns_b, 'addr', 'add', ADDRESS_B + '/30', 'dev', veth_b])
        harness.sh(['ip', '-n', ns_a, 'link', 'set', veth_a, 'up'])
        harness.sh(['ip', '-n', ns_b, 'link', 'set', veth_b, 'up'])
        # host "alpha" names its namespace through ansible_netns_name; host ns_b is its own namespace.
        inventory = _write_inventory(workdir / 'inventory.json', {'alpha': ns_a, ns_b: None},
                                     pipelining={'alpha': False, ns_b: True})
        yield {'workdir': workdir, 'inventory': inventory, 'ns_a': ns_a, 'ns_b': ns_b,
               'veth_a': veth_a, 'veth_b': veth_b}
    finally:
        for ns in made:
            harness.delete_netns(ns)


def test_facts_and_modules_see_only_the_namespace(lab):
    workdir = lab['workdir']
    proc = run_playbook('connection_facts.yml', lab['inventory'], workdir,
                        extra_vars={'out_dir': str(workdir)}, verbosity=3)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    expected = {'alpha': (lab['veth_a'], ADDRESS_A), lab['ns_b']: (lab['veth_b'], ADDRESS_B)}
    for host, (veth, address) in expected.items():
        assert _recap(output, host)['failed'] == 0
        with open(os.path.join(str(workdir), host + '.json')) as handle:
            seen = json.load(handle)
        # Facts list exactly the namespace's interfaces: none of the controller's, none of the peer's.
        assert sorted(seen['interfaces']) == sorted(['lo', veth])
        assert seen['ipv4'] == [address]
        devices = sorted(set(line.split()[1] for line in seen['addr_show']))
        assert devices == sorted(['lo', veth])
        assert any('inet %s/30' % address in line for line in seen['addr_show'])
    # Host alpha transfers its modules as files, the other host pipelines them through stdin.
    assert re.search(r'^<alpha> PUT .*AnsiballZ_setup\.py', output, re.MULTILINE), output
    assert not re.search(r'^<%s> PUT .*AnsiballZ' % re.escape(lab['ns_b']), output, re.MULTILINE), output


def test_namespace_created_inside_a_host_is_usable_from_the_root(lab):
    new_ns = harness.unique_name('cn')
    try:
        proc = run_playbook('connection_create_netns.yml', lab['inventory'], lab['workdir'],
                            extra_vars={'new_netns': new_ns})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert new_ns in harness.list_netns()
        # Seen from the root: a real namespace (not an empty file), with the loopback the host raised.
        link = harness.nsexec(new_ns, ['ip', '-o', 'link', 'show', 'lo'])
        assert 'state UNKNOWN' in link and '<LOOPBACK,UP' in link
        assert os.stat('/run/netns/' + new_ns).st_dev != os.stat('/run/netns').st_dev
        # ... and a different namespace from the host it was created in.
        assert lab['veth_a'] not in harness.links(new_ns)
    finally:
        harness.delete_netns(new_ns)
    assert new_ns not in harness.list_netns()


def test_copy_and_fetch_round_trip(lab):
    workdir = lab['workdir']
    payload = bytes(range(256)) * 64 + b'\nlinuxnet.netns round trip\n'
    (workdir / 'source.bin').write_bytes(payload)
    proc = run_playbook('connection_files.yml', lab['inventory'], workdir, extra_vars={'out_dir': str(workdir)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (workdir / 'copied.bin').read_bytes() == payload
    assert (workdir / 'fetched.bin').read_bytes() == payload
    # /proc/net/dev depends on the reader's namespace: the fetched copy lists the host's devices.
    lines = (workdir / 'proc_net_dev.txt').read_text().splitlines()[2:]
    devices = sorted(line.split(':')[0].strip() for line in lines if ':' in line)
    assert devices == sorted(['lo', lab['veth_a']])


def test_missing_namespace_is_unreachable_with_a_clear_message(lab, tmp_path):
    missing = harness.unique_name('cm')
    inventory = _write_inventory(tmp_path / 'missing.json', {'ghost': missing})
    proc = run_playbook('connection_facts.yml', inventory, tmp_path, extra_vars={'out_dir': str(tmp_path)})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output  # 4: hosts unreachable
    assert _recap(output, 'ghost')['unreachable'] == 1
    assert "network namespace '%s' does not exist (/run/netns/%s is missing)" % (missing, missing) in output
    assert missing not in harness.list_netns()  # nothing created by trying


def test_stale_namespace_file_is_unreachable_not_entered(lab, tmp_path):
    """An empty file in /run/netns (what a failed mount leaves) is named as such."""
    stale = harness.unique_name('cs')
    path = '/run/netns/' + stale
    open(path, 'w').close()
    try:
        inventory = _write_inventory(tmp_path / 'stale.json', {'stale': stale})
        proc = run_playbook('connection_facts.yml', inventory, tmp_path, extra_vars={'out_dir': str(tmp_path)})
        output = proc.stdout + proc.stderr
        assert proc.returncode == 4, output
        assert '%s exists but is not a network namespace' % path in output
    finally:
        os.unlink(path)


def test_proc_sys_transfers_and_a_vanished_namespace_without_a_playbook(tmp_path):
    """Files under /proc depend on the reader's namespace: put_file/fetch_file of them go
    through the namespace (the root's ip_forward stays as it is, the session guard checks
    that too); a namespace deleted after connecting turns the next command into a
    connection failure."""
    namespace = harness.unique_name('cd')
    harness.sh(['ip', 'netns', 'add', namespace])
    root_forward = harness.sysctls(None)['net/ipv4/ip_forward']
    try:
        env = dict(harness.ENV, LC_ALL='C.UTF-8')
        proc = subprocess.run([sys.executable, '-c', DIRECT_SCRIPT, COLLECTIONS_ROOT, namespace, str(tmp_path)],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        harness.delete_netns(namespace)
    assert result['fetched_forward'] == '1'
    assert result['exec_forward'] == [0, '1']
    assert harness.sysctls(None)['net/ipv4/ip_forward'] == root_forward
    assert "network namespace '%s' does not exist" % namespace in result['after_delete']
