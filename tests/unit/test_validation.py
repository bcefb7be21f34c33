# SPDX-License-Identifier: GPL-3.0-or-later
"""plugins/module_utils/validation.py: every check accepts what the kernel accepts, rejects
the rest, and names the field and the value in its message."""
import ipaddress

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import validation
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError


def assert_rejected(check, field, value, reason_part, *args):
    with pytest.raises(ValidationError) as info:
        check(field, value, *args)
    err = info.value
    assert err.field == field
    assert err.value == value
    message = str(err)
    assert message.startswith('%s=%r: ' % (field, value)), message
    assert reason_part in err.reason, err.reason
    return err


class TestValidationError:
    def test_is_a_value_error_carrying_field_value_and_reason(self):
        err = ValidationError('pairs[2].name', 'x/y', 'bad')
        assert isinstance(err, ValueError)
        assert (err.field, err.value, err.reason) == ('pairs[2].name', 'x/y', 'bad')
        assert str(err) == "pairs[2].name='x/y': bad"


class TestNetnsName:
    @pytest.mark.parametrize('name', ['host1', 'a', 'my_space', 'ns-1.2+x', '9lives', 'A' * 64])
    def test_accepts(self, name):
        assert validation.check_netns_name('name', name) == name

    @pytest.mark.parametrize('value', ['', None, 3, ['x']])
    def test_rejects_empty_or_not_a_string(self, value):
        assert_rejected(validation.check_netns_name, 'name', value, 'non-empty string')

    @pytest.mark.parametrize('value', ['.', '..', 'a/b', '/run/netns/x', 'x/'])
    def test_rejects_anything_but_one_path_component(self, value):
        assert_rejected(validation.check_netns_name, 'namespaces[1].name', value, 'single path component')

    def test_rejects_more_than_64_bytes(self):
        assert_rejected(validation.check_netns_name, 'name', 'n' * 65, 'at most 64 bytes')

    def test_counts_bytes_not_characters(self):
        # 22 three-byte characters: 66 bytes although only 22 characters.
        assert_rejected(validation.check_netns_name, 'name', u'\u20ac' * 22, 'at most 64 bytes')

    @pytest.mark.parametrize('value', ['-x', '.hidden', '+x', 'a b', 'a;rm', 'a$b', 'a:b', 'tab\t', u'caf\u00e9'])
    def test_rejects_unsafe_characters_and_leading_punctuation(self, value):
        assert_rejected(validation.check_netns_name, 'name', value, 'may contain only')


class TestIfname:
    @pytest.mark.parametrize('name', ['eth0', 'veth1', 'v', 'br-lan', 'vlan.10', 'a@b', 'x+y', 'e' * 15, '_x'])
    def test_accepts(self, name):
        assert validation.check_ifname('name', name) == name

    def test_rejects_sixteen_bytes_and_says_how_many(self):
        err = assert_rejected(validation.check_ifname, 'peer', 'v' * 16, 'at most 15 bytes')
        assert '(it has 16)' in err.reason

    def test_counts_bytes_not_characters(self):
        assert_rejected(validation.check_ifname, 'peer', u'\u00e9' * 8, 'at most 15 bytes')

    @pytest.mark.parametrize('value', ['', None, 7])
    def test_rejects_empty_or_not_a_string(self, value):
        assert_rejected(validation.check_ifname, 'name', value, 'non-empty string')

    @pytest.mark.parametrize('value', ['.', '..', 'a/b', 'eth0:1', 'a b', 'x;y', 'x$y', '-lead', '.dot', "it's"])
    def test_rejects_what_the_kernel_or_a_shell_would_not_take(self, value):
        assert_rejected(validation.check_ifname, 'pairs[0].name', value, 'may contain only')


class TestInterfaceAddress:
    def test_returns_an_interface_object(self):
        value = validation.check_interface_address('addresses[0]', '192.168.45.2/24')
        assert value == ipaddress.ip_interface(u'192.168.45.2/24')
        assert str(value.network) == '192.168.45.0/24'

    @pytest.mark.parametrize('value', [' 192.168.45.2/24', '192.168.45.2/24\n', 'fd00::9%x/64', 'fd00::9%x\n/64'])
    def test_rejects_surrounding_whitespace_and_scope_ids(self, value):
        with pytest.raises(validation.ValidationError):
            validation.check_interface_address('addresses[0]', value)

    def test_accepts_ipv6(self):
        assert validation.check_interface_address('a', 'fd42::1/64').version == 6

    def test_requires_a_prefix_length_and_suggests_one(self):
        err = assert_rejected(validation.check_interface_address, 'addresses[1]', '10.0.0.1', 'needs a prefix length')
        assert '10.0.0.1/24' in err.reason

    @pytest.mark.parametrize('value', ['10.0.0.300/24', '10.0.0.1/33', 'fd42::g/64', 'x/24'])
    def test_rejects_invalid(self, value):
        assert_rejected(validation.check_interface_address, 'addresses[0]', value, 'not a valid address/prefix')

    @pytest.mark.parametrize('value', ['', '   ', None, 17])
    def test_rejects_empty_or_not_a_string(self, value):
        assert_rejected(validation.check_interface_address, 'addresses[0]', value, 'expected an address')


class TestNetwork:
    def test_strict_by_default(self):
        assert validation.check_network('source', '192.168.45.0/24') == ipaddress.ip_network(u'192.168.45.0/24')
        assert_rejected(validation.check_network, 'source', '192.168.45.1/24', 'host bits set')

    def test_non_strict_masks_host_bits(self):
        assert str(validation.check_network('source', '192.168.45.1/24', False)) == '192.168.45.0/24'

    def test_bare_address_is_a_host_network(self):
        assert str(validation.check_network('dest', 'fd42::1')) == 'fd42::1/128'

    @pytest.mark.parametrize('value', ['10.0.0.0/40', 'nonsense', '::g/64'])
    def test_rejects_invalid(self, value):
        assert_rejected(validation.check_network, 'rules[3].source', value, 'not a valid CIDR network')

    @pytest.mark.parametrize('value', [None, '', 24])
    def test_rejects_empty_or_not_a_string(self, value):
        assert_rejected(validation.check_network, 'source', value, 'expected a network in CIDR form')


class TestIp:
    @pytest.mark.parametrize('value,version', [('192.168.45.3', 4), ('fd42::3', 6)])
    def test_accepts(self, value, version):
        assert validation.check_ip('gateway', value).version == version

    @pytest.mark.parametrize('value', ['10.0.0.1/24', '256.1.1.1', 'host1'])
    def test_rejects_prefixes_and_names(self, value):
        assert_rejected(validation.check_ip, 'gateway', value, 'not a valid IPv4 or IPv6 address')

    @pytest.mark.parametrize('value', [None, '', 1])
    def test_rejects_empty_or_not_a_string(self, value):
        assert_rejected(validation.check_ip, 'gateway', value, 'expected an IP address')


class TestPort:
    @pytest.mark.parametrize('value,expected', [(1, 1), (65535, 65535), ('8080', 8080), (' 80 ', 80)])
    def test_accepts_integers_and_integer_strings(self, value, expected):
        assert validation.check_port('port', value) == expected

    @pytest.mark.parametrize('value', [0, 65536, -1, '0', '70000'])
    def test_rejects_out_of_range(self, value):
        assert_rejected(validation.check_port, 'rules[0].port', value, 'from 1 to 65535')

    @pytest.mark.parametrize('value', [True, False, 80.5, '80.0', 'http', None, '0x50', ''])
    def test_rejects_non_integers(self, value):
        assert_rejected(validation.check_port, 'to_port', value, 'must be an integer from 1 to 65535')


class TestPortRange:
    @pytest.mark.parametrize('value,expected', [
        (8080, (8080, 8080)), ('8080', (8080, 8080)), ('8080-8090', (8080, 8090)),
        (' 1 - 65535 ', (1, 65535)), ('22-22', (22, 22)),
    ])
    def test_accepts(self, value, expected):
        assert validation.check_port_range('port', value) == expected

    def test_rejects_reversed_range(self):
        assert_rejected(validation.check_port_range, 'port', '90-80', 'must not exceed the last')

    def test_bad_end_names_the_field(self):
        with pytest.raises(ValidationError) as info:
            validation.check_port_range('rules[2].port', '80-70000')
        assert info.value.field == 'rules[2].port'
        assert 'from 1 to 65535' in info.value.reason

    @pytest.mark.parametrize('value', ['-', '80-', 'a-b'])
    def test_rejects_malformed(self, value):
        with pytest.raises(ValidationError) as info:
            validation.check_port_range('port', value)
        assert info.value.field == 'port'


class TestUnique:
    def test_accepts_distinct_and_ignores_unset(self):
        validation.check_unique('pairs', [{'name': 'a'}, {'name': 'b'}, {'name': None}, {'name': None}, {}], 'name')

    def test_names_both_positions_of_a_duplicate(self):
        with pytest.raises(ValidationError) as info:
            validation.check_unique('pairs', [{'name': 'a'}, {'name': 'b'}, {'name': 'a'}], 'name')
        err = info.value
        assert err.field == 'pairs[2].name'
        assert err.value == 'a'
        assert err.reason == 'duplicates pairs[0].name'


class TestSameFamily:
    def test_accepts_one_family_and_ignores_none(self):
        validation.same_family('rule', ipaddress.ip_address(u'10.0.0.1'), None, ipaddress.ip_network(u'10.0.0.0/8'))
        validation.same_family('rule')

    def test_rejects_a_mix_and_lists_the_values(self):
        with pytest.raises(ValidationError) as info:
            validation.same_family('rules[0]', ipaddress.ip_address(u'10.0.0.1'), ipaddress.ip_address(u'fd42::1'))
        assert info.value.field == 'rules[0]'
        assert info.value.value == ['10.0.0.1', 'fd42::1']
        assert info.value.reason == 'mixes IPv4 and IPv6'


@pytest.mark.parametrize('check, value', [
    (validation.check_ifname, 'd0\n'), (validation.check_ifname, 'veth1\n'),
    (validation.check_netns_name, 'x\n'), (validation.check_netns_name, 'myspace\n'),
])
def test_a_trailing_newline_never_passes_a_name_check(check, value):
    """`$` in re.match lets one trailing newline through: a rule that never matches and cannot
    be removed, an undeletable /run/netns/x\\n. The checks match the whole text."""
    with pytest.raises(validation.ValidationError):
        check('name', value)
