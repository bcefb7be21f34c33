# SPDX-License-Identifier: GPL-3.0-or-later
"""Loading a module must not import pyroute2: the import costs ~0.2 s per module process,
and a call that opens no netlink socket through pyroute2 (sysctl_forward, nat_rule without a
conntrack cleanup, every re-run with nothing to write) should not pay it (bench/README.md)."""
import os
import subprocess
import sys

import pytest

from tests.support import paths

MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(paths.REPO_ROOT, 'plugins', 'modules'))
                 if name.endswith('.py') and not name.startswith('_'))


def test_every_module_is_checked():
    assert {'netns', 'veth', 'netns_route', 'sysctl_forward', 'nat_rule', 'conntrack_info',
            'netns_probe'} <= set(MODULES)


@pytest.mark.parametrize('module', MODULES)
def test_loading_the_module_does_not_import_pyroute2(module):
    code = ('import importlib, sys\n'
            'importlib.import_module("ansible_collections.linuxnet.netns.plugins.modules.%s")\n'
            'import pyroute2\n'  # importable here, so the check below can fail for real
            'print(sorted(m for m in sys.modules if m.startswith("pyroute2"))[:1])\n' % module)
    env = dict(os.environ, PYTHONPATH=paths.ensure_collection_link())
    before_import = subprocess.run([sys.executable, '-c', code.replace('import pyroute2\n', '')],
                                   capture_output=True, text=True, env=env, check=False)
    assert before_import.returncode == 0, before_import.stderr
    assert before_import.stdout.strip() == '[]', before_import.stdout
    after_import = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, check=False)
    assert after_import.stdout.strip() == "['pyroute2']", after_import.stdout + after_import.stderr
