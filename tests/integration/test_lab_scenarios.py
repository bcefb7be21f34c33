# SPDX-License-Identifier: GPL-3.0-or-later
"""`make lab SCENARIO=shared-snat`, as the Makefile runs it (lab/up.yml and site.yml with
lab/scenarios/shared-snat.yml), on a lab of its own (namespace names unique to this run):
three guests behind one SNAT address; the summary shows that the client saw one address with
three ports and that conntrack maps each reply back to its guest; the second run changes
nothing; the diagram is written; lab/down.yml removes everything."""
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
