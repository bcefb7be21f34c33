# SPDX-License-Identifier: GPL-3.0-or-later
"""probe.py and netns_probe's validation without sending anything: ICMP packet building
and parsing, the summary, and every input check."""
import socket
import struct

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import probe
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError
from ansible_collections.linuxnet.netns.plugins.modules import netns_probe


# --- ICMP packets ---------------------------------------------------------------------

def test_checksum_matches_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2, complement 220d.
    assert probe.icmp_checksum(bytes.fromhex('0001f203f4f5f6f7')) == 0x220d
    assert probe.icmp_checksum(b'\x01') == (~0x0100) & 0xffff  # odd length is zero-padded


def test_ipv4_echo_request_carries_a_valid_checksum():
    packet = probe.build_echo_request(socket.AF_INET, 1234, 7, b'token')
    assert struct.unpack('!BBHHH', packet[:8])[0:2] == (8, 0)
    assert struct.unpack('!HH', packet[4:8]) == (1234, 7)
    assert packet[8:] == b'token'
    assert probe.icmp_checksum(packet) == 0  # a correct checksum sums to zero


def test_ipv6_echo_request_leaves_the_checksum_to_the_kernel():
    packet = probe.build_echo_request(socket.AF_INET6, 1, 2, b'x')
    assert packet[0] == 128 and packet[2:4] == b'\0\0'


def _ipv4_header(source, destination, length):
    return struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + length, 0, 0, 64, 1, 0,
                       socket.inet_aton(source), socket.inet_aton(destination))


def test_strip_ipv4_header_returns_source_and_message():
    message = probe.build_echo_request(socket.AF_INET, 1, 1, b'')
    source, rest = probe.strip_ipv4_header(_ipv4_header('192.168.1.15', '192.168.45.3', len(message)) + message)
    assert (source, rest) == ('192.168.1.15', message)
    assert probe.strip_ipv4_header(b'short') == (None, b'')


def test_parse_echo_reply():
    reply = struct.pack('!BBHHH', 0, 0, 0, 1234, 3) + b'payload'
    assert probe.parse_icmp(socket.AF_INET, reply) == {
        'type': 0, 'code': 0, 'id': 1234, 'seq': 3, 'payload': b'payload'}
    assert probe.parse_icmp(socket.AF_INET, b'\0' * 7) is None


def test_parse_ipv4_error_quotes_our_request():
    request = probe.build_echo_request(socket.AF_INET, 1234, 3, b'tok')
    quoted = _ipv4_header('192.168.45.3', '192.168.1.99', len(request)) + request
    error = struct.pack('!BBHI', 3, 1, 0, 0) + quoted
    parsed = probe.parse_icmp(socket.AF_INET, error)
    assert parsed['quoted'] == {'type': 8, 'id': 1234, 'seq': 3}
    assert probe.describe_icmp_error(socket.AF_INET, parsed, '192.168.45.2') == \
        'destination unreachable (ICMP type 3 code 1) from 192.168.45.2'


def test_parse_ipv6_error_quotes_our_request():
    request = probe.build_echo_request(socket.AF_INET6, 77, 1, b'tok')
    error = struct.pack('!BBHI', 3, 0, 0, 0) + b'\0' * 40 + request
    parsed = probe.parse_icmp(socket.AF_INET6, error)
    assert parsed['quoted'] == {'type': 128, 'id': 77, 'seq': 1}
    assert probe.describe_icmp_error(socket.AF_INET6, parsed, 'fd45:1::1').startswith('time exceeded')


def test_tokens_are_unique_and_marked():
    first, second = probe.new_token(), probe.new_token()
    assert first != second and first.startswith(b'lnt-probe-')


def test_family_and_wildcard():
    assert probe.family_of('fd45:1::2') == socket.AF_INET6
    assert probe.family_of('192.168.1.15') == socket.AF_INET
    assert probe.wildcard_address(socket.AF_INET6) == '::'


# --- summary --------------------------------------------------------------------------

def test_summary_counts_answers_and_rtt_statistics():
    attempts = [probe._attempt(1, rtt=0.001), probe._attempt(2, error='timed out'), probe._attempt(3, rtt=0.003)]
    assert probe.summarize(attempts) == {
        'sent': 3, 'received': 2, 'reachable': True, 'rtt_ms': {'min': 1.0, 'avg': 2.0, 'max': 3.0}}
    assert attempts[1] == {'seq': 2, 'ok': False, 'rtt_ms': None, 'error': 'timed out', 'local': None}


def test_summary_without_answers_is_unreachable():
    summary = probe.summarize([probe._attempt(1, error='connection refused (port closed)')])
    assert summary['reachable'] is False and summary['received'] == 0
    assert summary['rtt_ms'] == {'min': None, 'avg': None, 'max': None}


# --- netns_probe input validation -----------------------------------------------------

def params(**overrides):
    base = dict(namespace='a', target='192.168.1.32', protocol='icmp', port=None, count=1, timeout=2.0,
                icmp_id=None, listener=None)
    base.update(overrides)
    return base


def listener(**overrides):
    base = dict(namespace='b', address=None, port=None, protocol=None)
    base.update(overrides)
    return base


def test_valid_icmp_probe_gets_a_random_id():
    checked = netns_probe.validate(params())
    assert checked['protocol'] == 'icmp' and 1 <= checked['icmp_id'] <= 0xffff and checked['port'] is None


def test_listener_defaults_to_the_probe_port_and_protocol():
    checked = netns_probe.validate(params(protocol='tcp', port=8080, listener=listener()))
    assert checked['listener'] == {'namespace': 'b', 'address': None, 'port': 8080, 'protocol': 'tcp'}
    checked = netns_probe.validate(params(protocol='tcp', port=8080, listener=listener(port=80)))
    assert checked['listener']['port'] == 80


def test_ipv6_target_is_normalized():
    assert netns_probe.validate(params(target='FD45:1:0::2'))['target'] == 'fd45:1::2'


@pytest.mark.parametrize('overrides,field', [
    (dict(target='host2'), 'target'),
    (dict(target='192.168.1.0/24'), 'target'),
    (dict(target='fe80::1'), 'target'),
    (dict(target='0.0.0.0'), 'target'),
    (dict(target='ff02::1'), 'target'),
    (dict(protocol='tcp'), 'port'),
    (dict(protocol='udp', port=0), 'port'),
    (dict(protocol='udp', port=65536), 'port'),
    (dict(port=80), 'port'),
    (dict(count=0), 'count'),
    (dict(count=101), 'count'),
    (dict(timeout=0.0), 'timeout'),
    (dict(timeout=61.0), 'timeout'),
    (dict(icmp_id=-1), 'icmp_id'),
    (dict(protocol='udp', port=53, icmp_id=5), 'icmp_id'),
    (dict(namespace='..'), 'namespace'),
    (dict(listener=listener(namespace='x/y')), 'listener.namespace'),
    (dict(listener=listener(protocol='tcp')), 'listener.protocol'),
    (dict(listener=listener(port=80)), 'listener.port'),
    (dict(protocol='tcp', port=80, listener=listener(port=0)), 'listener.port'),
    (dict(listener=listener(address='fd45:1::2')), 'listener.address'),
    (dict(listener=listener(address='nowhere')), 'listener.address'),
])
def test_bad_input_names_the_field(overrides, field):
    with pytest.raises(ValidationError) as caught:
        netns_probe.validate(params(**overrides))
    assert caught.value.field == field
