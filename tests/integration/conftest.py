# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration tests run as root against the real kernel, only inside namespaces they
create. A session guard fails the run if the root namespace changed or a namespace a
test made is left behind."""
import os

import pytest

from tests.support import harness


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        if os.environ.get('CI'):
            # A green CI that ran none of these would hide that nothing was tested.
            raise pytest.UsageError('integration tests need root (real namespaces), and CI is set: '
                                    'run them as root instead of skipping them')
        skip = pytest.mark.skip(reason='integration tests need root (real namespaces)')
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope='session', autouse=True)
def root_namespace_guard():
    """Snapshot the root namespace and /run/netns; compare at the end of the session."""
    if os.geteuid() != 0:
        yield
        return
    before = harness.snapshot(None)
    netns_before = set(harness.list_netns())
    yield
    # Only names this run made (harness.PREFIX is per pytest process): another test run
    # going on at the same time must not have its namespaces judged or deleted here.
    leftovers = sorted(n for n in set(harness.list_netns()) - netns_before
                       if n.startswith(harness.PREFIX) and not n[len(harness.PREFIX):][:1].isdigit())
    for name in leftovers:
        harness.delete_netns(name)
    after = harness.snapshot(None)
    problems = []
    if leftovers:
        problems.append('namespaces left behind by tests: %s' % ', '.join(leftovers))
    for key in before:
        if before[key] != after[key]:
            problems.append('root namespace %s changed:\n before=%r\n after=%r' % (key, before[key], after[key]))
    assert not problems, '\n'.join(problems)


@pytest.fixture
def netns():
    """Factory for uniquely named namespaces; every one is deleted after the test.

    ``netns()`` creates one and returns its name; ``netns(create=False)`` only reserves
    a name (for tests where the module creates it) that is still cleaned up."""
    made = []

    def factory(tag='ns', create=True):
        if create:
            return harness.add_netns(tag, made)
        name = harness.unique_name(tag)
        made.append(name)
        return name

    yield factory
    for name in made:
        harness.delete_netns(name)


@pytest.fixture
def run():
    return harness.run_module


@pytest.fixture(params=['iptables', 'nftables'])
def backend(request):
    """Each NAT backend in turn (tests that take ``backend`` run once per backend)."""
    return request.param
