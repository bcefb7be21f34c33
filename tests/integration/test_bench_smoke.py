# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark of issue 5 (`make bench`) at a size that fits CI: N=3, one round of the
role, the shell loop and the memory pass. It checks the bench itself: every phase it times
is verified (probes through the DNATs and masquerade, a re-run with changed=0, a teardown
that leaves the router as it was), so a broken bench fails here rather than in a 40-minute
`make bench`. The figures are not judged: at N=3 they say nothing about the targets."""
import os
import re
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.controller_only


def test_bench_runs_every_checked_phase_and_writes_its_tables(tmp_path):
    results = tmp_path / 'bench.md'
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'bench', 'run.py'), '--sizes', '3', '--runs', '1',
         '--variants', 'role,shell,memory', '--results', str(results)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert 'role    N=3' in output and 'changed=0' in output and 'shell   N=3' in output, output[-4000:]
    text = results.read_text()
    row = re.search(r'^\| 3 \| ([0-9.]+) s \| ([0-9.]+) s \| ([0-9.]+) s \| ([0-9.]+) s \| - \|', text, re.M)
    assert row, text
    assert all(float(value) > 0 for value in row.groups())
    assert re.search(r'^\| 3 \| [0-9.]+x \| [0-9.]+x \|$', text, re.M), text  # round by round
    assert re.search(r'CPU steal during timed steps .*: median [0-9.]+%, max [0-9.]+%\.', text), text
    memory = re.search(r'^\| 3 \| ([0-9.]+) MB \| .*netns_topology', text, re.M)
    assert memory and float(memory.group(1)) > 10, text
    assert 'FAILED' not in text and 'ROOT NAMESPACE CHANGED' not in output
