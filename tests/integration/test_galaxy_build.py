# SPDX-License-Identifier: GPL-3.0-or-later
"""`ansible-galaxy collection build` makes an artifact that, installed into an empty
collections path, runs the main job: lab/up.yml, site.yml (twice: the second run changes
nothing), lab/down.yml, all from the installed copy and with nothing of the repository on the
collections path. The lab gets its own namespace names so that it never meets one built by
`make lab`."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from tests.support import harness
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.controller_only


def _tool(name):
    candidate = os.path.join(REPO_ROOT, '.venv', 'bin', name)
    return candidate if os.path.exists(candidate) else os.path.join(os.path.dirname(sys.executable), name)


def _env(collections_path, tmp_path):
    env = dict(harness.ENV)
    for key in ('ANSIBLE_CONFIG', 'ANSIBLE_COLLECTIONS_PATH', 'ANSIBLE_COLLECTIONS_PATHS'):
        env.pop(key, None)
    env.update(LC_ALL='C.UTF-8', ANSIBLE_COLLECTIONS_PATH=str(collections_path), ANSIBLE_NOCOLOR='1',
               ANSIBLE_FORCE_COLOR='0', ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-local'),
               ANSIBLE_GALAXY_CACHE_DIR=str(tmp_path / 'galaxy-cache'))
    return env


def _run(argv, cwd, env, timeout=600):
    proc = subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _recap(output, host):
    match = re.search(r'^%s\s*:\s*(.*)$' % re.escape(host), output, re.MULTILINE)
    assert match, 'no recap line for %s in:\n%s' % (host, output)
    return dict((key, int(value)) for key, value in re.findall(r'(\w+)=(\d+)', match.group(1)))


def test_built_artifact_runs_site_yml_on_a_lab(tmp_path):
    with open(os.path.join(REPO_ROOT, 'galaxy.yml')) as handle:
        version = re.search(r'^version:\s*(\S+)', handle.read(), re.MULTILINE).group(1)
    collections = tmp_path / 'collections'
    collections.mkdir()
    env = _env(collections, tmp_path)

    code, output = _run([_tool('ansible-galaxy'), 'collection', 'build', REPO_ROOT, '--output-path', str(tmp_path)],
                        tmp_path, env)
    assert code == 0, output
    artifact = tmp_path / ('linuxnet-netns-%s.tar.gz' % version)
    assert artifact.exists(), output

    code, output = _run([_tool('ansible-galaxy'), 'collection', 'install', '--offline', str(artifact),
                         '-p', str(collections)], tmp_path, env)
    assert code == 0, output
    installed = collections / 'ansible_collections' / 'linuxnet' / 'netns'
    for part in ('MANIFEST.json', 'plugins/connection/netns.py', 'plugins/modules/nat_rule.py',
                 'roles/netns_nat/tasks/main.yml', 'site.yml', 'lab/up.yml', 'inventory/lab.yml'):
        assert (installed / part).exists(), part
    # the artifact carries no build output or virtualenv
    assert not glob.glob(str(installed / '.venv*')) and not (installed / '.build').exists()

    prefix = 'lnt%dg-' % (os.getpid() % 100000)
    inner = harness.unique_name('gi')
    extra = json.dumps({'lab_netns_prefix': prefix, 'netns_nat_namespaces': [{
        'name': inner, 'host_interface': 'veth1', 'host_address': '192.168.45.2/24',
        'inner_interface': 'veth2', 'inner_address': '192.168.45.3/24',
        'port_forwards': [{'protocol': 'tcp', 'published_port': 8080, 'target_port': 80}]}]})
    playbook = [_tool('ansible-playbook'), '-i', 'inventory/lab.yml', '-e', extra]
    lab_namespaces = [prefix + 'host1', prefix + 'host2', inner]
    try:
        code, output = _run(playbook + ['lab/up.yml'], installed, env)
        assert code == 0, output

        code, output = _run(playbook + ['site.yml'], installed, env)
        assert code == 0, output
        assert 'NAT works on host1' in output, output
        # the role came from the installed artifact, not from the repository
        assert str(installed / 'roles' / 'netns_nat' / 'tasks') in output, output
        assert REPO_ROOT + '/roles' not in output
        # the diagram of what host1 holds (netns_info and the netns_mermaid filter)
        with open('/run/linuxnet-netns/site-demo-%shost1/topology.mmd' % prefix) as handle:
            diagram = handle.read()
        assert diagram.startswith('flowchart LR\n'), diagram
        assert '  n_host_veth1 ---|veth| n_%s_veth2' % inner in diagram, diagram
        assert '"DNAT tcp 8080 to 192.168.45.3:80"' in diagram and '"MASQUERADE 192.168.45.0/24 out of eth0"' in diagram

        code, output = _run(playbook + ['site.yml'], installed, env)
        assert code == 0, output
        assert _recap(output, 'host1')['changed'] == 0, output
        assert _recap(output, 'host2')['changed'] == 0, output
        assert 'NAT works on host1' in output

        code, output = _run(playbook + ['lab/down.yml'], installed, env)
        assert code == 0, output
        assert not set(lab_namespaces) & set(harness.list_netns())
    finally:
        _run(playbook + ['lab/down.yml'], installed, env)
        for name in lab_namespaces:
            harness.remove_forwarding_record(name)  # normally removed by lab/down.yml
            harness.delete_netns(name)
