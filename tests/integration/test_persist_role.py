# SPDX-License-Identifier: GPL-3.0-or-later
"""netns_nat_persist: the topology comes back after a "reboot" without Ansible, and the role's
next run sees it as its own (changed=0).

The article's lab (tests/support/role_lab.RoleLab). The boot files go to a directory of the
test (never /etc of this machine). A reboot of the host namespace is played by removing what
the kernel would lose (the inner namespace, the veth pair, every firewall rule, ip_forward)
and the role's records under /run; then restore.sh runs inside the host namespace, as the
unit would at boot. On both backends: the published port answers again and the inner
namespace's traffic is masqueraded again, the role reports no change, absent removes the files
and the unit and gives the host back as it was."""
import glob
import os
import subprocess

import pytest

from tests.support import harness
from tests.support import role_lab
from tests.support import traffic

pytestmark = pytest.mark.controller_only

HOST, OUTSIDE = role_lab.RoleLab.HOST_ADDRESS, role_lab.RoleLab.OUTSIDE_ADDRESS
WHOAMI = 7000


def variables(lab, backend, inner, **extra):
    result = {'netns_nat_backend': backend, 'netns_nat_forward_policy': 'drop', 'netns_nat_persist': True,
              'netns_nat_persist_directory': os.path.join(lab.workdir, 'etc', 'linuxnet-netns'),
              'netns_nat_persist_unit_directory': os.path.join(lab.workdir, 'etc', 'systemd', 'system'),
              'netns_nat_namespaces': [{
                  'name': inner, 'host_interface': 'veth1', 'host_address': '10.93.0.1/24',
                  'inner_interface': 'eth0', 'inner_address': '10.93.0.2/24',
                  'port_forwards': [{'protocol': 'tcp', 'published_port': 8080, 'target_port': 80}]}]}
    result.update(extra)
    return result


def reboot(lab, inner):
    """What a reboot takes away from the host namespace (which itself stays)."""
    harness.delete_netns(inner)
    harness.wait_for(lambda: 'veth1' not in harness.links(lab.host), 5)
    for argv in (['iptables', '-w', '-P', 'FORWARD', 'ACCEPT'], ['nft', 'flush', 'ruleset'],
                 ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=0']):
        harness.nsexec(lab.host, argv)
    key = harness.namespace_cookie(lab.host)
    for path in glob.glob('/run/linuxnet-netns/*%s.json' % key):
        os.unlink(path)


def boot(lab, directory):
    """restore.sh in the host namespace only (nsenter --net: the mount namespace stays, so the
    namespaces it adds are seen by everyone, as at boot)."""
    return subprocess.run(['nsenter', '--net=/run/netns/%s' % lab.host, 'sh', os.path.join(directory, 'restore.sh')],
                          capture_output=True, text=True, env=harness.ENV, timeout=60, check=False)


@pytest.fixture
def lab(tmp_path):
    built = role_lab.RoleLab(tmp_path, tag='p')
    try:
        yield built
    finally:
        built.close()


@pytest.mark.parametrize('backend', ['iptables', 'nftables'])
def test_the_topology_comes_back_at_boot_and_the_role_sees_it_as_its_own(lab, backend):
    inner = lab.inner_name('pin')
    pristine = lab.snapshot()
    wanted = variables(lab, backend, inner)
    directory = wanted['netns_nat_persist_directory']
    unit = os.path.join(wanted['netns_nat_persist_unit_directory'], 'linuxnet-netns.service')
    first = lab.run(wanted)
    assert first.rc == 0, first.output
    assert os.path.islink(os.path.join(wanted['netns_nat_persist_unit_directory'], 'multi-user.target.wants',
                                       'linuxnet-netns.service'))
    with open(unit) as handle:
        assert 'ExecStart=/bin/sh %s/restore.sh' % directory in handle.read()
    again = lab.run(wanted)
    assert again.recap('target')['changed'] == 0, again.changed_tasks('target')
    built = role_lab.normalized(lab.snapshot())

    reboot(lab, inner)
    assert inner not in harness.list_netns()
    assert traffic.connect(lab.outside, HOST, 8080, timeout=0.7).startswith('unreachable')
    booted = boot(lab, directory)
    assert booted.returncode == 0, booted.stdout + booted.stderr
    # a second boot script run changes nothing (the unit may be restarted by hand)
    assert boot(lab, directory).returncode == 0
    listener = traffic.start_listener(inner, 'inner', [80])
    outside = traffic.start_listener(lab.outside, 'outside', [WHOAMI])
    try:
        assert traffic.connect(lab.outside, HOST, 8080) == 'inner %s' % OUTSIDE
        assert traffic.connect(inner, OUTSIDE, WHOAMI) == 'outside %s' % HOST
    finally:
        traffic.stop(listener)
        traffic.stop(outside)
    role_lab.assert_same(role_lab.normalized(lab.snapshot()), built)

    after_boot = lab.run(wanted)
    assert after_boot.rc == 0, after_boot.output
    assert after_boot.recap('target')['changed'] == 0, after_boot.changed_tasks('target')

    # persistence turned off: the files and the unit go, the topology stays
    off = lab.run(dict(wanted, netns_nat_persist=False))
    assert off.recap('target')['changed'] == 1 and not os.path.exists(unit) and not os.path.exists(directory)
    assert lab.run(dict(wanted, netns_nat_persist=False)).recap('target')['changed'] == 0
    lab.run(wanted)
    gone = lab.run(wanted, state='absent')
    assert gone.rc == 0 and not os.path.exists(unit) and not os.path.exists(directory), gone.output
    role_lab.assert_same(lab.snapshot(), pristine)
