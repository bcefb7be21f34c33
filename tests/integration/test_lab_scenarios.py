# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab scenarios as the Makefile runs them, each on a lab of its own (namespace names unique
to this run):

* `make lab SCENARIO=shared-snat` (lab/up.yml and site.yml with lab/scenarios/shared-snat.yml):
  three guests behind one SNAT address; the summary shows that the client saw one address with
  three ports and that conntrack maps each reply back to its guest; the second run changes
  nothing; the diagram is written; lab/down.yml removes everything.
* `make lab SCENARIO=nodeport` (lab/up.yml and site.yml with inventory/lab-nodeport.yml): a
  NodePort on node1 over pods on node2 and node3; the summary shows every connection answered
  by a pod that saw node1's address, the conntrack tuples, and the measured path of one
  connection (the nat chains saw its first packet only, FORWARD every packet); the second run
  changes nothing; the diagrams are written; `make lab-down` (lab/down.yml with every lab
  inventory) removes every namespace, service, record and demo directory."""
import json
import os
import re
import subprocess

import pytest
import yaml

from tests.support import harness
from tests.support import role_lab
from tests.support.paths import COLLECTIONS_ROOT, REPO_ROOT, ensure_collection_link

pytestmark = pytest.mark.controller_only

SUMMARY_ROW = re.compile(r'^\s+(\S+)\s+(\d+\.\d+\.\d+\.\d+):(\d+)\s+-> host2 saw (\d+\.\d+\.\d+\.\d+):(\d+)\s*$', re.MULTILINE)


def run(argv, tmp_path):
    ensure_collection_link()
    env = dict(harness.ENV)
    env.pop('ANSIBLE_CONFIG', None)
    env.update(LC_ALL='C.UTF-8', ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_FORCE_COLOR='0', ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-local'))
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_shared_snat_scenario(tmp_path):
    with open(os.path.join(REPO_ROOT, 'lab', 'scenarios', 'shared-snat.yml')) as handle:
        scenario = yaml.safe_load(handle)
    prefix = '%sss-' % harness.PREFIX
    guests = [dict(ns, name=harness.unique_name('sg')) for ns in scenario['netns_nat_namespaces']]
    extra = json.dumps({'lab_netns_prefix': prefix, 'netns_nat_namespaces': guests})
    playbook = [role_lab.ansible_playbook_path(), '-i', 'inventory/lab.yml', '-e', '@lab/scenarios/shared-snat.yml',
                '-e', extra]
    made = [prefix + 'host1', prefix + 'host2'] + [guest['name'] for guest in guests]
    try:
        code, output = run(playbook + ['lab/up.yml'], tmp_path)
        assert code == 0, output
        code, output = run(playbook + ['site.yml'], tmp_path)
        assert code == 0, output
        assert 'Several guests behind one SNAT address on host1 (3 namespaces' in output, output
        rows = SUMMARY_ROW.findall(output)
        assert sorted(row[0] for row in rows) == sorted(guest['name'] for guest in guests), output
        assert set(row[3] for row in rows) == set(['192.168.1.32']), rows  # one SNAT address
        assert len(set(row[4] for row in rows)) == 3, rows  # told apart by the translated port
        with open('/run/linuxnet-netns/site-demo-%shost1/topology.mmd' % prefix) as handle:
            assert handle.read().count('-. "SNAT ') == 3
        code, output = run(playbook + ['site.yml'], tmp_path)
        assert code == 0, output
        assert re.search(r'^host1\s*:.*changed=0', output, re.MULTILINE), output
        code, output = run(playbook + ['lab/down.yml'], tmp_path)
        assert code == 0, output
        assert not set(made) & set(harness.list_netns())
    finally:
        run(playbook + ['lab/down.yml'], tmp_path)
        for name in made:
            harness.delete_netns(name)


NODEPORT_ROW = re.compile(r'^\s+(\d+)  (\S+) on (node[23]) (10\.244\.[23]\.10:80)\s+(\d+\.\d+\.\d+\.\d+):(\d+)\s*$', re.MULTILINE)
NODEPORT_CT = re.compile(r'^\s+tcp 172\.31\.0\.10:(\d+)\s+-> 172\.31\.0\.1:30080  =>  (10\.244\.[23]\.10):80\s+-> '
                         r'(\S+):(\d+)  \[.*SRC_NAT DST_NAT\]$', re.MULTILINE)
NODEPORT_CHAIN = re.compile(r'^\s+(\d+)  (prerouting|forward|postrouting) (nat|filter) (.+?)(   <- the first packet only)?$',
                            re.MULTILINE)


def test_nodeport_scenario(tmp_path):
    prefix = '%snp-' % harness.PREFIX
    extra = json.dumps({'lab_netns_prefix': prefix})
    playbook = [role_lab.ansible_playbook_path(), '-i', 'inventory/lab-nodeport.yml', '-e', extra]
    # make lab-down: lab/down.yml with every lab inventory (it removes whichever lab is up)
    lab_down = [role_lab.ansible_playbook_path(), '-i', 'inventory/lab.yml', '-i', 'inventory/lab-nodeport.yml',
                '-e', extra, 'lab/down.yml']
    made = [prefix + name for name in ('client', 'node1', 'node2', 'node3', 'switch', 'pod2', 'pod3')]
    demo_dirs = ['/run/linuxnet-netns/site-demo-%s%s' % (prefix, node) for node in ('node1', 'node2', 'node3')]
    try:
        code, output = run(playbook + ['lab/up.yml'], tmp_path)
        assert code == 0, output
        code, output = run(playbook + ['site.yml'], tmp_path)
        assert code == 0, output
        assert 'NodePort web on node1: 172.31.0.1:30080/tcp -> 2 endpoints on other nodes' in output, output
        # every connection answered by a pod on its node, which saw node1's cluster address
        rows = NODEPORT_ROW.findall(output)
        assert [int(row[0]) for row in rows] == list(range(1, 17)), output
        assert set((row[1], row[2]) for row in rows) <= {(prefix + 'pod2', 'node2'), (prefix + 'pod3', 'node3')}, rows
        assert len(set(row[1] for row in rows)) == 2, rows  # random over 2 endpoints, 16 connections: P(miss) = 2^-15
        assert set(row[4] for row in rows) == {'192.168.1.11'}, rows
        # node1's conntrack: one entry per connection, client -> node1:30080 => pod:80 -> 192.168.1.11:<port the pod saw>
        entries = NODEPORT_CT.findall(output)
        assert len(entries) == 16, output
        assert set(entry[2] for entry in entries) == {'192.168.1.11'}, entries
        assert sorted(entry[3] for entry in entries) == sorted(row[5] for row in rows), (entries, rows)
        # the measured path: the nat chains saw one packet (the first), FORWARD all of them
        chains = dict(((hook, kind, name.strip()), (int(count), bool(first)))
                      for count, hook, kind, name, first in NODEPORT_CHAIN.findall(output))
        packets = chains[('forward', 'filter', 'inet linuxnet_netns forward')][0]
        assert packets >= 5, chains
        assert chains[('prerouting', 'nat', 'inet linuxnet_netns prerouting')] == (1, True), chains
        assert chains[('postrouting', 'nat', 'inet linuxnet_netns postrouting')] == (1, True), chains
        assert re.search(r'^\s+PREROUTING\s+nat\s+inet linuxnet_netns prerouting: .*dnat ip to 10\.244\.[23]\.10:80  => accept$',
                         output, re.MULTILINE), output
        assert re.search(r'^\s+POSTROUTING\s+nat\s+inet linuxnet_netns postrouting: .* masquerade  => accept$',
                         output, re.MULTILINE), output
        assert re.search(r'^\s+leaves\s+eth0 as 192\.168\.1\.11:\d+ -> 10\.244\.[23]\.10:80 ', output, re.MULTILINE), output
        # the diagrams of node1 (the service) and node2 (its pod)
        with open(demo_dirs[0] + '/topology.mmd') as handle:
            assert handle.read().count('"DNAT tcp 30080 (random 1/2), MASQUERADE"') == 2
        with open(demo_dirs[1] + '/topology.mmd') as handle:
            assert '["%spod2"]' % prefix in handle.read()
        # the trace table of the measurement is gone again
        assert 'lnlab_nat_path' not in harness.nsexec(prefix + 'node1', ['nft', 'list', 'tables'])

        code, output = run(playbook + ['site.yml'], tmp_path)
        assert code == 0, output
        for host in ('node1', 'node2', 'node3', 'client'):
            assert re.search(r'^%s\s*:.*changed=0' % host, output, re.MULTILINE), output
        assert 'NodePort web on node1' in output

        records = ['/run/linuxnet-netns/%s-cookie-%s.json' % (kind, harness.namespace_cookie(prefix + node))
                   for node in ('node1', 'node2', 'node3') for kind in ('owned', 'forwarding')]
        code, output = run(lab_down, tmp_path)
        assert code == 0, output
        assert not set(made) & set(harness.list_netns())
        assert not [path for path in demo_dirs + records if os.path.exists(path)]
        assert subprocess.run(['pgrep', '-f', 'whoami.py start --netns %s' % prefix], check=False).returncode == 1
    finally:
        run(lab_down, tmp_path)
        for name in made:
            harness.delete_netns(name)
