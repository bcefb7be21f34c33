# SPDX-License-Identifier: GPL-3.0-or-later
"""Batched netlink writes in links.py without root: the request encoders against bytes
worked out by hand from the kernel's structs, the mapping of ACKs back to requests, and
the group deletion with its undo, against a scripted fake kernel."""
import errno
import ipaddress
import struct

from ansible_collections.linuxnet.netns.plugins.module_utils import links
from ansible_collections.linuxnet.netns.plugins.module_utils.links import Link


def hexbytes(text):
    """Bytes from hex digits; ``#`` starts a comment up to the end of the line."""
    return bytes.fromhex(''.join(line.split('#')[0].replace(' ', '') for line in text.splitlines()))


# --- encoders -----------------------------------------------------------------------------

def test_veth_create_request_matches_hand_built_bytes():
    kind, flags, payload = links.veth_create_request('a', 'b', peer_ns_fd=5, mtu=1400, up=True)
    assert kind == 16  # RTM_NEWLINK
    assert flags == 0x400 | 0x200  # NLM_F_CREATE | NLM_F_EXCL
    assert payload == hexbytes('''
        00 00 0000 00000000 01000000 01000000  # ifinfomsg: up, change mask IFF_UP
        0600 0300 61 00 0000  # IFLA_IFNAME "a"
        0800 0400 78050000  # IFLA_MTU 1400
        4000 1200  # IFLA_LINKINFO (64 bytes)
          0900 0100 76657468 00 000000  # IFLA_INFO_KIND "veth"
          3000 0200  # IFLA_INFO_DATA (48 bytes)
            2c00 0100  # VETH_INFO_PEER (44 bytes)
              00 00 0000 00000000 00000000 00000000  # peer ifinfomsg: flags untouched
              0600 0300 62 00 0000  # IFLA_IFNAME "b"
              0800 0400 78050000  # IFLA_MTU 1400
              0800 1c00 05000000  # IFLA_NET_NS_FD 5
    ''')


def test_veth_create_request_without_options_leaves_flags_and_mtu_alone():
    payload = links.veth_create_request('veth1', 'veth2')[2]
    assert payload == hexbytes('''
        00 00 0000 00000000 00000000 00000000
        0a00 0300 7665746831 00 0000
        3400 1200  # IFLA_LINKINFO (52 bytes)
          0900 0100 76657468 00 000000
          2400 0200  # IFLA_INFO_DATA (36 bytes)
            2000 0100  # VETH_INFO_PEER (32 bytes)
              00 00 0000 00000000 00000000 00000000
              0a00 0300 7665746832 00 0000
    ''')


def test_link_set_and_delete_requests():
    assert links.link_set_request(7, up=False, mtu=9000) == (16, 0, hexbytes('''
        00 00 0000 07000000 00000000 01000000  # index 7, down (flag clear, mask IFF_UP)
        0800 0400 28230000  # IFLA_MTU 9000'''))
    assert links.link_set_request(7, group=0x40000001) == (16, 0, hexbytes('''
        00 00 0000 07000000 00000000 00000000
        0800 1b00 01000040  # IFLA_GROUP'''))
    assert links.link_delete_request(9) == (17, 0, hexbytes('00 00 0000 09000000 00000000 00000000'))
    assert links.group_delete_request(3) == (17, 0, hexbytes('''
        00 00 0000 00000000 00000000 00000000  # no index: the group selects
        0800 1b00 03000000'''))


def test_address_requests_ipv4_and_ipv6():
    assert links.address_request(7, ipaddress.ip_interface('10.1.2.3/24')) == (20, 0x600, hexbytes('''
        02 18 00 00 07000000  # AF_INET, /24, no flags, scope universe, index 7
        0800 0200 0a010203  # IFA_LOCAL
        0800 0100 0a010203  # IFA_ADDRESS'''))
    v6 = hexbytes('fd42 0000 0000 0000 0000 0000 0000 0001')
    assert links.address_request(7, ipaddress.ip_interface('fd42::1/64')) == (
        20, 0x600, hexbytes('0a 40 02 00 07000000') + hexbytes('1400 0100') + v6)  # IFA_F_NODAD
    assert links.address_request(7, ipaddress.ip_interface('fd42::1/64'), add=False) == (
        21, 0, hexbytes('0a 40 00 00 07000000') + hexbytes('1400 0100') + v6)


def test_netlink_message_header():
    assert links.netlink_message(16, 0x5, 42, b'\x01\x02\x03\x04') == hexbytes(
        '14000000 1000 0500 2a000000 00000000 01020304')


def test_parse_link_reads_the_group():
    body = hexbytes('00 00 0000 03000000 01000000 00000000') + hexbytes(
        '0800 0300 766831 00') + hexbytes('0800 1b00 2a000000')
    link = links.parse_link(body)
    assert (link.name, link.index, link.up, link.group) == ('vh1', 3, True, 42)
    assert links.parse_link(hexbytes('00 00 0000 04000000 00000000 00000000')).group == 0


def test_unused_group_skips_groups_in_use_and_zero():
    used = [Link('a', 2, group=100), Link('b', 3, group=101)]
    assert links.unused_group(used, seed=100) == 102
    assert links.unused_group(used, seed=5) == 5
    assert links.unused_group([Link('c', 2, group=0xffffffff)], seed=0xffffffff) == 1
    assert links.unused_group(used) not in (0, 100, 101)


# --- a fake kernel ---------------------------------------------------------------------------

class FakeKernel(object):
    """Stands in for the netlink socket: records the requests of every datagram and answers
    each with an ACK carrying the code ``answer(type, payload)`` returns, after a stale ACK
    of an earlier request (which must be ignored)."""

    def __init__(self, answer=lambda kind, payload: 0, links=()):
        self.answer = answer
        self.links = list(links)
        self.datagrams = []
        self.pending = []

    def sendall(self, data):
        requests = list(links.iter_messages(data))
        self.datagrams.append([(kind, flags, body) for kind, flags, seq, body in requests])
        replies = [self._ack(0, 0)]  # late answer to something long gone
        for kind, flags, seq, body in requests:
            assert flags & links.NLM_F_ACK and flags & links.NLM_F_REQUEST
            replies.append(self._ack(seq, self.answer(kind, body)))
        self.pending.append(b''.join(replies))

    def recv(self, size):
        return self.pending.pop(0)

    def send(self, data):  # dumps
        seq = links.NLMSG_HDR.unpack_from(data, 0)[3]
        messages = b''
        for link in self.links:
            body = struct.pack('=BxHiII', 0, 0, link.index, 0, 0) + links._string_attribute(
                links.IFLA_IFNAME, link.name) + links.attribute(links.IFLA_GROUP, struct.pack('=I', link.group))
            messages += links.netlink_message(links.RTM_NEWLINK, links.NLM_F_MULTI, seq, body)
        messages += links.netlink_message(links.NLMSG_DONE, links.NLM_F_MULTI, seq, b'\0' * 4)
        self.pending.append(messages)

    @staticmethod
    def _ack(seq, code):
        return links.netlink_message(links.NLMSG_ERROR, 0, seq, struct.pack('=i', -code) + b'\0' * 16)


def route_socket(kernel):
    rtnl = links.RouteSocket.__new__(links.RouteSocket)
    rtnl.sock = kernel
    rtnl.seq = 100
    return rtnl


def test_run_requests_maps_each_ack_to_its_request_in_windows():
    failing = set([3, 6])
    kernel = FakeKernel(lambda kind, payload: errno.EEXIST if struct.unpack_from('=i', payload, 4)[0] in failing else 0)
    rtnl = route_socket(kernel)
    codes = rtnl.run_requests([links.link_delete_request(index) for index in range(1, 8)], window=3)
    assert codes == [0, 0, errno.EEXIST, 0, 0, errno.EEXIST, 0]
    assert [len(datagram) for datagram in kernel.datagrams] == [3, 3, 1]
    assert rtnl.run_requests([]) == []


def veth(name, index, group=0):
    return Link(name, index, kind='veth', group=group)


def test_delete_links_moves_veths_into_a_free_group_and_deletes_it_at_once():
    kernel = FakeKernel(links=[Link('lo', 1), veth('v1', 2, group=7), veth('v2', 3)])
    failures = links.delete_links(route_socket(kernel), [veth('v1', 2, group=7), veth('v2', 3),
                                                         Link('br0', 4, kind='bridge')])
    assert failures == []
    set_group, delete_group, singles = kernel.datagrams
    group = struct.unpack_from('=I', set_group[0][2], 20)[0]
    assert group not in (0, 7)
    assert [(kind, struct.unpack_from('=i', body, 4)[0]) for kind, flags, body in set_group] == [(16, 2), (16, 3)]
    acked = links.NLM_F_REQUEST | links.NLM_F_ACK
    assert delete_group == [(17, acked, links.group_delete_request(group)[2])]
    assert singles == [(17, acked, links.link_delete_request(4)[2])]  # not a veth: one by one


def test_delete_links_restores_the_groups_when_the_group_delete_fails():
    def answer(kind, payload):
        return errno.EPERM if kind == links.RTM_DELLINK else 0
    kernel = FakeKernel(answer)
    v1, v2 = veth('v1', 2, group=7), veth('v2', 3)
    failures = links.delete_links(route_socket(kernel), [v1, v2])
    assert failures == [(v1, errno.EPERM), (v2, errno.EPERM)]
    restore = kernel.datagrams[-1]
    assert [body for kind, flags, body in restore] == [links.link_set_request(2, group=7)[2],
                                                       links.link_set_request(3, group=0)[2]]


def test_delete_links_treats_links_already_gone_as_deleted():
    kernel = FakeKernel(lambda kind, payload: errno.ENODEV)
    assert links.delete_links(route_socket(kernel), [veth('v1', 2), veth('v2', 3)]) == []
    assert len(kernel.datagrams) == 1  # nothing got into the group: no group delete
    kernel = FakeKernel(lambda kind, payload: errno.ENODEV)
    assert links.delete_links(route_socket(kernel), [veth('v1', 2)]) == []
    failures = links.delete_links(route_socket(FakeKernel(lambda kind, payload: errno.EBUSY)), [veth('v1', 2)])
    assert [(link.name, code) for link, code in failures] == [('v1', errno.EBUSY)]


def test_describe_errno():
    assert links.describe_errno(errno.EEXIST) == 'File exists (EEXIST)'
