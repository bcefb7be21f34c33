# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module, the connection plugin and the role render with ansible-doc, and the README
lists every module with an example."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.paths import COLLECTIONS_ROOT, REPO_ROOT, ensure_collection_link

MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(REPO_ROOT, 'plugins', 'modules'))
                 if name.endswith('.py') and not name.startswith('_'))


def ansible_doc(*args):
    ensure_collection_link()
    binary = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')
    if not os.path.exists(binary):
        binary = shutil.which('ansible-doc')
    if binary is None:
        pytest.skip('ansible-doc is not installed')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, LC_ALL='C.UTF-8', ANSIBLE_NOCOLOR='1')
    return subprocess.run([binary] + list(args), capture_output=True, text=True, env=env, check=False)


def test_the_collection_has_the_modules_of_the_design():
    assert set(MODULES) >= {'netns', 'veth', 'netns_route', 'sysctl_forward', 'nat_rule',
                            'conntrack_info', 'netns_probe'}


@pytest.mark.parametrize('module', MODULES)
def test_module_renders_with_ansible_doc(module):
    proc = ansible_doc('linuxnet.netns.%s' % module)
    assert proc.returncode == 0, proc.stderr
    assert 'ERROR' not in proc.stderr and 'WARNING' not in proc.stderr, proc.stderr
    assert 'linuxnet.netns.%s' % module in proc.stdout
    assert 'EXAMPLES' in proc.stdout and 'RETURN VALUES' in proc.stdout


@pytest.mark.parametrize('kind,name', [('connection', 'linuxnet.netns.netns'), ('role', 'linuxnet.netns.netns_nat')])
def test_plugin_and_role_render_with_ansible_doc(kind, name):
    proc = ansible_doc('-t', kind, name)
    assert proc.returncode == 0, proc.stderr
    assert 'ERROR' not in proc.stderr, proc.stderr
    assert name in proc.stdout


@pytest.mark.parametrize('module', MODULES)
def test_readme_lists_every_module_with_an_example(module):
    with open(os.path.join(REPO_ROOT, 'README.md')) as handle:
        readme = handle.read()
    row = [line for line in readme.splitlines() if line.startswith('| `linuxnet.netns.%s` |' % module)]
    assert row, 'README module table has no row for %s' % module
    assert re.search(r'`linuxnet\.netns\.%s: \{' % module, row[0]), 'the row of %s has no example' % module
