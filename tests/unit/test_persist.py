# SPDX-License-Identifier: GPL-3.0-or-later
"""netns_persist's rendering: the boot script's ip commands (quoted, creating only what is
missing), the iptables files and jumps from a listing, the nft script, the record template;
and its call on a temporary directory: converge, no change the second time, check mode, a
foreign file refused before anything is written."""
import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import kind, persist_call
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables as ipt
from ansible_collections.linuxnet.netns.plugins.module_utils import persist
from ansible_collections.linuxnet.netns.plugins.module_utils.common import KindError
from ansible_collections.linuxnet.netns.plugins.module_utils.kind import CallContext

SAVE = '''*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:LNT-POSTROUTING - [0:0]
:LNT-PREROUTING - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment "lnt:jump" -j LNT-PREROUTING
-A PREROUTING -j DOCKER
-A POSTROUTING -m comment --comment "lnt:jump" -j LNT-POSTROUTING
-A LNT-POSTROUTING -s 10.1.0.0/24 -o eth0 -m comment --comment "lnt:masq,s=10.1.0.0/24,o=eth0 12345678" -j MASQUERADE
-A LNT-PREROUTING -p tcp -m tcp --dport 8080 -m comment --comment "lnt:dnat x" -j DNAT --to-destination 10.1.0.2:80
COMMIT
*filter
:FORWARD DROP [0:0]
:LNT-FORWARD - [0:0]
:LNT-USER - [0:0]
-A FORWARD -m comment --comment "lnt:user" -j LNT-USER
-A FORWARD -m comment --comment "lnt:jump" -j LNT-FORWARD
-A FORWARD -j ACCEPT
-A LNT-FORWARD -d 10.1.0.2/32 -j ACCEPT
-A LNT-USER -s 10.9.9.9/32 -j DROP
COMMIT
'''


def test_topology_lines_create_only_what_is_missing_and_quote_what_needs_it():
    lines = persist.topology_lines(
        [{'name': 'myspace'}],
        [{'name': 'veth1', 'peer': 'veth2', 'peer_namespace': 'myspace', 'addresses': ['192.168.45.2/24'],
          'peer_addresses': ['192.168.45.3/24']}],
        [{'namespace': 'myspace', 'dest': 'default', 'gateway': '192.168.45.2'}])
    assert lines == [
        '[ -e /run/netns/myspace ] || ip netns add myspace',
        'ip -n myspace link set lo up',
        'ip link show dev veth1 >/dev/null 2>&1 || ip link add veth1 type veth peer name veth2 netns myspace',
        'ip addr replace 192.168.45.2/24 dev veth1',
        'ip link set veth1 up',
        'ip -n myspace addr replace 192.168.45.3/24 dev veth2',
        'ip -n myspace link set veth2 up',
        'ip -n myspace route replace default via 192.168.45.2 proto static',
    ]
    assert persist._quote("a b'c") == "'a b'\"'\"'c'"


def test_iptables_files_hold_our_chains_the_admin_chain_and_jumps_but_nothing_foreign():
    views = {(4, 'nft'): ipt.XtablesView(4, 'nft', ipt.parse_save(SAVE))}
    files, jumps = persist.iptables_files(views)
    variant, text = files['iptables-v4.rules']
    assert variant == 'nft'
    assert text.splitlines() == [
        '*nat',
        ':LNT-POSTROUTING - [0:0]',
        ':LNT-PREROUTING - [0:0]',
        '-A LNT-POSTROUTING -s 10.1.0.0/24 -o eth0 -m comment --comment "lnt:masq,s=10.1.0.0/24,o=eth0 12345678" '
        '-j MASQUERADE',
        '-A LNT-PREROUTING -p tcp -m tcp --dport 8080 -m comment --comment "lnt:dnat x" -j DNAT --to-destination 10.1.0.2:80',
        '-A POSTROUTING -m comment --comment "lnt:jump" -j LNT-POSTROUTING',
        '-A PREROUTING -m comment --comment "lnt:jump" -j LNT-PREROUTING',
        'COMMIT',
        '*filter',
        ':FORWARD DROP [0:0]',
        ':LNT-FORWARD - [0:0]',
        ':LNT-USER - [0:0]',
        '-A LNT-FORWARD -d 10.1.0.2/32 -j ACCEPT',
        '-A LNT-USER -s 10.9.9.9/32 -j DROP',
        '-I FORWARD 1 -m comment --comment "lnt:user" -j LNT-USER',
        '-I FORWARD 2 -m comment --comment "lnt:jump" -j LNT-FORWARD',
        'COMMIT',
    ]
    assert [(table, chain) for dummy, dummy2, table, chain, dummy3 in jumps] == [
        ('nat', 'PREROUTING'), ('nat', 'POSTROUTING'), ('filter', 'FORWARD'), ('filter', 'FORWARD')]
    lines = persist.firewall_lines('/etc/x', files, jumps, has_nft=False)
    assert lines[-1] == 'iptables-nft-restore -w --noflush < /etc/x/iptables-v4.rules'
    assert 'iptables-nft -w -t nat -D PREROUTING -m comment --comment "lnt:jump" -j LNT-PREROUTING 2>/dev/null || true' \
        in lines
    assert persist.iptables_files({(4, 'nft'): ipt.XtablesView(4, 'nft', {})}) == ({}, [])


def test_nft_file_empties_the_table_and_leaves_learnt_clients_out():
    listing = ('table inet linuxnet_netns {\n\tset lnt_aff_4_60_ab {\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n'
               '\t\ttimeout 1m\n\t\telements = { 10.0.0.9 timeout 1m expires 40s }\n\t}\n\tchain prerouting {\n\t}\n}\n')
    text = persist.nft_file(listing)
    assert text.startswith('table inet linuxnet_netns {}\nflush table inet linuxnet_netns\ntable inet linuxnet_netns {')
    assert 'elements' not in text and 'timeout 1m' in text


def test_record_template_drops_what_a_boot_changes():
    record = {'namespaces': {'a': {'key': 'cookie:5', 'adopted': False}}, 'pairs': {'v': {'ifindex': 7, 'namespace': 'a'}},
              'routes': []}
    template = persist.record_template(record)
    assert template['namespaces']['a'] == {'key': None, 'adopted': False}
    assert template['pairs']['v'] == {'ifindex': None, 'namespace': 'a'}
    assert record['namespaces']['a']['key'] == 'cookie:5'
    assert persist.record_template(None) is None


def test_script_and_unit():
    script = persist.script('/etc/x', [{'name': 'n'}], [], [], True, {}, [], True, '/run/r')
    assert script.startswith('#!/bin/sh\n# %s' % persist.MARKER)
    assert 'sysctl -q -w net.ipv4.ip_forward=1\nnft -f /etc/x/nftables.rules\n' in script
    assert script.rstrip().endswith('python3 /etc/x/rekey.py /etc/x /run/r')
    unit = persist.unit('/etc/x')
    assert 'ExecStart=/bin/sh /etc/x/restore.sh' in unit and 'WantedBy=multi-user.target' in unit
    compile(persist.REKEY, 'rekey.py', 'exec')


# --- the module's call (kind.execute with persist_call) ----------------------------------------

class StandIn(object):
    """The AnsibleModule surface a netns_persist call uses."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self._diff = True
        self.commands = []

    def run_command(self, argv, **kwargs):
        self.commands.append(argv)
        return 0, '', ''

    def get_bin_path(self, name, required=False):
        return None

    def warn(self, warning):
        raise AssertionError(warning)


def persist_params(tmp_path, **overrides):
    params = dict(state='present', namespaces=[{'name': 'blue'}], pairs=[], routes=[], forwarding=False,
                  rules=False, record_dir=None, directory=str(tmp_path / 'etc'), unit_directory=str(tmp_path / 'units'))
    params.update(overrides)
    return params


def call(params, check_mode=False):
    return kind.execute(persist_call, params, CallContext(StandIn(check_mode)))


def test_persist_writes_its_files_then_a_second_call_changes_nothing(tmp_path, private_state_lock):
    first = call(persist_params(tmp_path))
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob('*') if path.is_file()
                     and not path.is_symlink() and path.name != 'state.lock')
    assert first['changed'] and written == ['etc/restore.sh', 'units/linuxnet-netns.service']
    assert (tmp_path / 'units' / 'multi-user.target.wants' / persist.UNIT_NAME).is_symlink()
    assert 'ip netns add blue' in (tmp_path / 'etc' / 'restore.sh').read_text()
    again = call(persist_params(tmp_path))
    assert not again['changed'] and again['files'] == []
    gone = call(persist_params(tmp_path, state='absent'))
    assert gone['changed'] and not (tmp_path / 'etc').exists()
    assert not (tmp_path / 'units' / persist.UNIT_NAME).exists()


def test_a_foreign_file_fails_the_call_before_any_file_is_written(tmp_path, private_state_lock):
    (tmp_path / 'units').mkdir()
    (tmp_path / 'units' / persist.UNIT_NAME).write_text('[Unit]\nDescription=the admin\'s own\n')
    with pytest.raises(KindError) as failed:
        call(persist_params(tmp_path))
    assert 'was not written by netns_persist' in failed.value.msg and failed.value.fields['field'] == 'directory'
    assert not (tmp_path / 'etc').exists(), 'restore.sh (sorted before the unit) must not be written'
    assert (tmp_path / 'units' / persist.UNIT_NAME).read_text().endswith("the admin's own\n")


def test_persist_check_mode_writes_nothing(tmp_path, private_state_lock):
    preview = call(persist_params(tmp_path), check_mode=True)
    assert preview['changed'] and len(preview['files']) == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == []
