# SPDX-License-Identifier: GPL-3.0-or-later
"""conntrack.py without a kernel: decoding real ctnetlink messages (encoded and decoded
by the installed pyroute2, so running this file under 0.7.2 and 0.9.x checks both),
filtering, family names, and the delete loop against a fake NFCTSocket."""
import errno
import socket

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from ansible_collections.linuxnet.netns.plugins.module_utils import conntrack
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError

# SEEN_REPLY | CONFIRMED | SRC_NAT | SRC_NAT_DONE | DST_NAT_DONE, as a masqueraded ping has.
MASQUERADED = (1 << 1) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 8)
DNATED = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 7) | (1 << 8)


def _tuple(family, src, dst, proto, **fields):
    ip = 'CTA_IP_V6_' if family == socket.AF_INET6 else 'CTA_IP_V4_'
    proto_attrs = [('CTA_PROTO_NUM', proto)]
    names = {'sport': 'CTA_PROTO_SRC_PORT', 'dport': 'CTA_PROTO_DST_PORT'}
    icmp = 'CTA_PROTO_ICMPV6_' if proto == 58 else 'CTA_PROTO_ICMP_'
    names.update(id=icmp + 'ID', type=icmp + 'TYPE', code=icmp + 'CODE')
    for key, value in fields.items():
        proto_attrs.append((names[key], value))
    return {'attrs': [('CTA_TUPLE_IP', {'attrs': [(ip + 'SRC', src), (ip + 'DST', dst)]}),
                      ('CTA_TUPLE_PROTO', {'attrs': proto_attrs})]}


def message(family, orig, reply, status, timeout=30, tcp_state=None, zone=None, mark=None):
    """A ctnetlink entry as the kernel sends it: encoded, then decoded by pyroute2."""
    msg = nfct_msg()
    msg['nfgen_family'] = family
    msg['attrs'] = [('CTA_TUPLE_ORIG', orig), ('CTA_TUPLE_REPLY', reply),
                    ('CTA_STATUS', status), ('CTA_TIMEOUT', timeout)]
    if mark is not None:
        msg['attrs'].append(('CTA_MARK', mark))
    if zone is not None:
        msg['attrs'].append(('CTA_ZONE', zone))
    if tcp_state is not None:
        msg['attrs'].append(('CTA_PROTOINFO', {'attrs': [
            ('CTA_PROTOINFO_TCP', {'attrs': [('CTA_PROTOINFO_TCP_STATE', tcp_state)]})]}))
    msg.encode()
    decoded = nfct_msg(msg.data)
    decoded.decode()
    return decoded


def icmp_masqueraded(src='192.168.45.3', ident=1234, reply_id=1234):
    return message(socket.AF_INET,
                   _tuple(socket.AF_INET, src, '192.168.1.15', 1, id=ident, type=8, code=0),
                   _tuple(socket.AF_INET, '192.168.1.15', '192.168.1.32', 1, id=reply_id, type=0, code=0),
                   MASQUERADED, timeout=29)


def tcp_dnat(sport=40000):
    return message(socket.AF_INET,
                   _tuple(socket.AF_INET, '192.168.1.15', '192.168.1.32', 6, sport=sport, dport=8080),
                   _tuple(socket.AF_INET, '192.168.45.3', '192.168.1.15', 6, sport=80, dport=sport),
                   DNATED, timeout=117, tcp_state=3)


def udp6(sport=5000, dport=7301, zone=None):
    return message(socket.AF_INET6,
                   _tuple(socket.AF_INET6, 'fd45:1::1', 'fd45:1:0::2', 17, sport=sport, dport=dport),
                   _tuple(socket.AF_INET6, 'fd45:1::2', 'fd45:1::1', 17, sport=dport, dport=sport),
                   (1 << 3), zone=zone, mark=7)


# --- decoding -------------------------------------------------------------------------

def test_status_names_decode_each_bit_in_order():
    assert conntrack.status_names(MASQUERADED) == ['SEEN_REPLY', 'CONFIRMED', 'SRC_NAT', 'SRC_NAT_DONE', 'DST_NAT_DONE']
    assert conntrack.status_names(0) == []
    assert conntrack.status_names((1 << 12) | (1 << 20)) == ['NAT_CLASH', 'BIT_20']


def test_decode_masqueraded_icmp_entry():
    entry = conntrack.decode_entry(icmp_masqueraded(reply_id=52))
    assert entry == {
        'family': 'ipv4', 'protocol': 'icmp', 'state': None, 'timeout': 29,
        'status': ['SEEN_REPLY', 'CONFIRMED', 'SRC_NAT', 'SRC_NAT_DONE', 'DST_NAT_DONE'],
        'original': {'src': '192.168.45.3', 'dst': '192.168.1.15', 'id': 1234, 'type': 8, 'code': 0},
        'reply': {'src': '192.168.1.15', 'dst': '192.168.1.32', 'id': 52, 'type': 0, 'code': 0},
        'mark': 0, 'zone': 0,
    }


def test_decode_tcp_entry_names_the_state_from_the_conntrack_table():
    entry = conntrack.decode_entry(tcp_dnat())
    # 3 is ESTABLISHED in enum tcp_conntrack (pyroute2 0.7.2's own name for it is wrong).
    assert entry['state'] == 'ESTABLISHED'
    assert entry['original'] == {'src': '192.168.1.15', 'dst': '192.168.1.32', 'sport': 40000, 'dport': 8080}
    assert entry['reply'] == {'src': '192.168.45.3', 'dst': '192.168.1.15', 'sport': 80, 'dport': 40000}
    assert 'DST_NAT' in entry['status'] and 'SRC_NAT' not in entry['status']


def test_decode_ipv6_entry_normalizes_addresses_and_keeps_zone_and_mark():
    entry = conntrack.decode_entry(udp6(zone=5))
    assert entry['family'] == 'ipv6' and entry['protocol'] == 'udp'
    assert entry['original']['dst'] == 'fd45:1::2'
    assert (entry['zone'], entry['mark'], entry['state']) == (5, 7, None)


def test_decode_protocol_without_ports_has_addresses_only():
    gre = message(socket.AF_INET, _tuple(socket.AF_INET, '10.9.0.1', '10.9.0.2', 47),
                  _tuple(socket.AF_INET, '10.9.0.2', '10.9.0.1', 47), 1 << 3)
    entry = conntrack.decode_entry(gre)
    assert entry['protocol'] == 'gre'
    assert entry['original'] == {'src': '10.9.0.1', 'dst': '10.9.0.2'}
    assert not conntrack.is_deletable(entry)


def test_entries_sort_by_family_protocol_and_addresses():
    entries = [conntrack.decode_entry(m) for m in (udp6(), tcp_dnat(), icmp_masqueraded('192.168.45.4'),
                                                   icmp_masqueraded('192.168.45.3'))]
    ordered = sorted(entries, key=conntrack.entry_sort_key)
    assert [(e['family'], e['protocol'], e['original']['src']) for e in ordered] == [
        ('ipv4', 'icmp', '192.168.45.3'), ('ipv4', 'icmp', '192.168.45.4'),
        ('ipv4', 'tcp', '192.168.1.15'), ('ipv6', 'udp', 'fd45:1::1')]


# --- filtering ------------------------------------------------------------------------

@pytest.fixture
def entries():
    return [conntrack.decode_entry(m) for m in (icmp_masqueraded(), tcp_dnat(), udp6())]


def filter_entries(entries, **criteria):
    matches = conntrack.compile_filter(**criteria)
    return [entry for entry in entries if matches(entry)]


def protocols(entries, **criteria):
    return sorted(e['protocol'] for e in filter_entries(entries, **criteria))


@pytest.mark.parametrize('criteria,expected', [
    ({}, ['icmp', 'tcp', 'udp']),
    ({'protocol': 'tcp'}, ['tcp']),
    ({'protocol': 'icmpv6'}, []),
    ({'family': 'ipv6'}, ['udp']),
    ({'family': 4}, ['icmp', 'tcp']),
    ({'src': '192.168.45.0/24'}, ['icmp']),
    ({'src': '192.168.45.3'}, ['icmp']),
    ({'src': 'fd45:1::/64'}, ['udp']),
    ({'dst': 'FD45:1:0:0::2'}, ['udp']),
    ({'dst': '192.168.1.0/24'}, ['icmp', 'tcp']),
    ({'sport': 40000}, ['tcp']),
    ({'dport': 8080}, ['tcp']),
    ({'dport': 7301}, ['udp']),
    ({'reply_src': '192.168.45.3', 'reply_sport': 80}, ['tcp']),
    ({'reply_dst': '192.168.1.32'}, ['icmp']),
    ({'reply_dport': 40000}, ['tcp']),
    ({'reply_sport': 8080}, []),
    ({'nat': 'any'}, ['icmp', 'tcp', 'udp']),
    ({'nat': None}, ['icmp', 'tcp', 'udp']),
    ({'nat': 'snat'}, ['icmp']),
    ({'nat': 'dnat'}, ['tcp']),
    ({'nat': 'both'}, []),
    ({'nat': 'none'}, ['udp']),
    ({'protocol': 'icmp', 'dport': 8080}, []),
    ({'protocol': 'tcp', 'dport': 8080, 'nat': 'snat'}, []),
])
def test_filter_criteria_all_must_match(entries, criteria, expected):
    assert protocols(entries, **criteria) == expected


def test_port_criteria_never_match_entries_without_ports(entries):
    icmp_only = [e for e in entries if e['protocol'] == 'icmp']
    assert filter_entries(icmp_only, sport=1234) == []


@pytest.mark.parametrize('criteria,field', [
    ({'src': 'not-an-address'}, 'src'),
    ({'reply_dst': '192.168.1.300'}, 'reply_dst'),
    ({'dport': 0}, 'dport'),
    ({'reply_sport': 65536}, 'reply_sport'),
    ({'protocol': 'ospf'}, 'protocol'),
    ({'nat': 'masquerade'}, 'nat'),
    ({'family': 'ipx'}, 'family'),
    ({'family': 'ipv4', 'dst': 'fd45:1::2'}, 'dst'),
])
def test_bad_criteria_raise_validation_error_naming_the_field(criteria, field):
    with pytest.raises(ValidationError) as caught:
        conntrack.compile_filter(**criteria)
    assert caught.value.field == field


@pytest.mark.parametrize('given,expected', [
    (None, None), ('ipv4', 'ipv4'), ('IPv6', 'ipv6'), (4, 'ipv4'), (6, 'ipv6'),
    (socket.AF_INET, 'ipv4'), (socket.AF_INET6, 'ipv6'), ('inet6', 'ipv6'),
])
def test_normalize_family(given, expected):
    assert conntrack.normalize_family(given) == expected


# --- deleting -------------------------------------------------------------------------

class FakeNFCTSocket(object):
    """Stands in for pyroute2's NFCTSocket: a dump per family and a record of deletes."""
    tables = {}
    deleted = []
    vanished = set()  # original sports whose entries expire between dump and delete
    dumping = False

    def __init__(self, nfgen_family):
        self.family = nfgen_family

    def dump(self):
        FakeNFCTSocket.dumping = True
        yield from self.tables.get(self.family, [])
        FakeNFCTSocket.dumping = False

    def entry(self, cmd, tuple_orig=None, zone=None):
        assert cmd == 'del'
        assert not FakeNFCTSocket.dumping, 'a delete while the dump is being read breaks pyroute2 0.9'
        if tuple_orig.sport in self.vanished:
            raise NetlinkError(errno.ENOENT)
        FakeNFCTSocket.deleted.append((self.family, tuple_orig.proto, tuple_orig.saddr, tuple_orig.daddr,
                                       tuple_orig.sport, tuple_orig.dport, tuple_orig.icmp_id, zone))

    def close(self):
        pass


@pytest.fixture
def fake_kernel(monkeypatch):
    FakeNFCTSocket.tables = {
        socket.AF_INET: [icmp_masqueraded(), tcp_dnat(40000), tcp_dnat(40001), tcp_dnat(40002)],
        socket.AF_INET6: [udp6(5000, zone=3), udp6(5001, dport=9)],
    }
    FakeNFCTSocket.deleted = []
    FakeNFCTSocket.vanished = set()
    monkeypatch.setattr(conntrack, 'NFCTSocket', FakeNFCTSocket)
    return FakeNFCTSocket


def delete_matching(family, **criteria):
    """What nat_rule's cleanup does: list, pick with a filter, delete what was picked."""
    matches = conntrack.compile_filter(family=conntrack.normalize_family(family), **criteria)
    names = [conntrack.normalize_family(family)] if family else sorted(conntrack.FAMILIES)
    return conntrack.delete_listed(None, [entry for name in names for entry in conntrack.list_entries(None, name)
                                          if matches(entry)])


def test_delete_listed_deletes_only_the_picked_entries_and_counts_them(fake_kernel):
    fake_kernel.vanished = {40002}
    count = delete_matching('ipv4', protocol='tcp', dst='192.168.1.32', dport=8080, reply_src='192.168.45.3',
                            reply_sport=80)
    assert count == 2  # 40002 expired before its delete: not counted
    assert [d[4] for d in fake_kernel.deleted] == [40000, 40001]
    assert all(d[:4] == (socket.AF_INET, 6, '192.168.1.15', '192.168.1.32') and d[5] == 8080
               for d in fake_kernel.deleted)


def test_delete_listed_sends_the_zone(fake_kernel):
    assert delete_matching(None, protocol='udp', dport=7301) == 1
    assert fake_kernel.deleted == [(socket.AF_INET6, 17, 'fd45:1::1', 'fd45:1::2', 5000, 7301, None, 3)]


def test_delete_listed_names_icmp_flows_by_id(fake_kernel):
    assert delete_matching(4, protocol='icmp') == 1
    assert fake_kernel.deleted == [(socket.AF_INET, 1, '192.168.45.3', '192.168.1.15', None, None, 1234, None)]


def test_listing_rejects_a_bad_family(fake_kernel):
    with pytest.raises(ValidationError):
        conntrack.list_entries(None, 'ipx')


def test_delete_listed_deletes_exactly_the_given_entries_one_socket_per_family(fake_kernel, monkeypatch):
    sockets = []
    real_init = FakeNFCTSocket.__init__

    def counting_init(self, nfgen_family):
        sockets.append(nfgen_family)
        real_init(self, nfgen_family)

    monkeypatch.setattr(FakeNFCTSocket, '__init__', counting_init)
    gre = conntrack.decode_entry(tcp_dnat(40009))
    gre['protocol'] = 'gre'  # no ports or id to name it by: skipped, not sent
    entries = [conntrack.decode_entry(m) for m in (tcp_dnat(40001), udp6(5000, zone=3), tcp_dnat(40002))] + [gre]
    fake_kernel.vanished = {40002}
    assert conntrack.delete_listed(None, entries) == 2  # 40002 had expired: not counted
    assert sorted(sockets) == [socket.AF_INET, socket.AF_INET6]
    deleted = [(d[0], d[4], d[7]) for d in fake_kernel.deleted]
    assert deleted == [(socket.AF_INET, 40001, None), (socket.AF_INET6, 5000, 3)]
    assert conntrack.delete_listed(None, [gre]) == 0 and len(sockets) == 2  # nothing deletable: no socket


def test_list_entries_decodes_sorts_and_filters_by_family(fake_kernel, monkeypatch):
    everything = list(fake_kernel.tables[socket.AF_INET]) + list(fake_kernel.tables[socket.AF_INET6])
    fake_kernel.tables[socket.AF_UNSPEC] = list(reversed(everything))
    listed = conntrack.list_entries(None)
    assert [e['protocol'] for e in listed] == ['icmp', 'tcp', 'tcp', 'tcp', 'udp', 'udp']
    assert [e['original']['sport'] for e in listed if e['protocol'] == 'tcp'] == [40000, 40001, 40002]
    assert [e['family'] for e in conntrack.list_entries(None, family='ipv6')] == ['ipv6', 'ipv6']
