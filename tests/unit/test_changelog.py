# SPDX-License-Identifier: GPL-3.0-or-later
"""Changelog fragments (antsibull-changelog) and one version: the fragments and changelog.yaml
pass the tool's lint, CHANGELOG.rst is what the tool generates, galaxy.yml is ahead of the last
release while fragments wait, and no plugin option was added in a version after galaxy.yml's."""
import glob
import os
import shutil
import subprocess
import sys

import yaml

from tests.support.paths import REPO_ROOT

TOOL = os.path.join(os.path.dirname(sys.executable), 'antsibull-changelog')


def version(text):
    return tuple(int(part) for part in str(text).split('.'))


def galaxy_version():
    with open(os.path.join(REPO_ROOT, 'galaxy.yml')) as handle:
        return version(yaml.safe_load(handle)['version'])


def released():
    with open(os.path.join(REPO_ROOT, 'changelogs', 'changelog.yaml')) as handle:
        return sorted(version(v) for v in yaml.safe_load(handle)['releases'])


def test_fragments_and_changelog_pass_the_tools_lint():
    proc = subprocess.run([TOOL, 'lint'], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_changelog_rst_is_generated_from_the_releases(tmp_path):
    copy = str(tmp_path / 'collection')
    shutil.copytree(REPO_ROOT, copy, ignore=shutil.ignore_patterns('.venv*', '.build', '.git', 'tests'))
    subprocess.run([TOOL, 'generate'], cwd=copy, check=True, capture_output=True)
    with open(os.path.join(copy, 'CHANGELOG.rst')) as generated, open(os.path.join(REPO_ROOT, 'CHANGELOG.rst')) as ours:
        assert ours.read() == generated.read()


def test_galaxy_version_is_the_next_release_while_fragments_wait():
    fragments = glob.glob(os.path.join(REPO_ROOT, 'changelogs', 'fragments', '*.yml'))
    last = released()[-1]
    if fragments:
        assert galaxy_version() > last, 'unreleased fragments, but galaxy.yml says %s' % (galaxy_version(),)
    else:
        assert galaxy_version() == last


def test_no_option_or_plugin_is_newer_than_the_collection():
    newest = galaxy_version()
    found = []
    for path in glob.glob(os.path.join(REPO_ROOT, 'plugins', '*', '*.py')) + \
            glob.glob(os.path.join(REPO_ROOT, 'plugins', '*', '*.yml')):
        with open(path) as handle:
            for line in handle:
                if 'version_added:' in line:
                    found.append((path, version(line.split(':', 1)[1].strip().strip('"\''))))
    assert found
    assert [item for item in found if item[1] > newest] == []
