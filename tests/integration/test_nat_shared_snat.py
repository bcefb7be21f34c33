# SPDX-License-Identifier: GPL-3.0-or-later
"""Several inner namespaces behind one SNAT address made by nat_rule (both backends), as
several guests share one SNAT address in the reference notes. Two namespaces ping the same outside host with
the same ICMP id while both flows live in host1's conntrack table; both get every reply, and
the two entries are told apart only by the translated id."""

import pytest

from tests.support import harness, probe_lab
from tests.support.probe_lab import HOST1, HOST2, INNER2, MYSPACE

ICMP_ID = 4321


@pytest.mark.parametrize('backend', ['iptables', 'nftables'])
def test_two_namespaces_same_icmp_id_behind_one_snat_address(backend):
    with probe_lab.built(probe_lab.shared_snat_lab, masquerade=False) as lab:
        rule = dict(namespace=lab.host1, backend=backend, kind='snat', source='192.168.45.0/24',
                    out_interface='eth0', to_source=HOST1)
        applied = harness.run_module('nat_rule', rule)
        assert applied['_rc'] == 0 and applied['changed'] and applied['backend'] == backend, applied

        results = probe_lab.ping_in_turn(lab.inner, HOST2, ICMP_ID, lab.host2)
        for result in results:
            assert result['_rc'] == 0 and (result['sent'], result['received']) == (3, 3), result

        entries = harness.run_module('conntrack_info', dict(namespace=lab.host1, protocol='icmp'))['entries']
        assert sorted(e['original']['src'] for e in entries) == [MYSPACE, INNER2], entries
        assert all(e['original']['id'] == ICMP_ID for e in entries)
        assert all(e['reply']['dst'] == HOST1 and 'SRC_NAT' in e['status'] for e in entries), entries
        translated = dict((e['original']['src'], e['reply']['id']) for e in entries)
        assert len(set(translated.values())) == 2, translated
        # host2 saw only host1's address, each namespace's echoes under its own translated id.
        for index, source in enumerate((MYSPACE, INNER2)):
            assert results[index]['observed_peers'] == [
                {'address': HOST1, 'port': None, 'id': translated[source]}] * 3, results[index]

        again = harness.run_module('nat_rule', rule)
        assert again['_rc'] == 0 and not again['changed'], again
