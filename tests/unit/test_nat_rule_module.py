# SPDX-License-Identifier: GPL-3.0-or-later
"""plugins/modules/nat_rule.py glue: which items a call manages, which namespaces it
touches, the documented auto backend choice, and the diff/result it builds."""
import types

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables as ipt
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_model as m
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_nftables as nft
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_rule_call as nat_rule

OURS = ('*nat\n:POSTROUTING ACCEPT [0:0]\n:LNT-POSTROUTING - [0:0]\n'
        '-A POSTROUTING -m comment --comment "lnt:jump" -j LNT-POSTROUTING\nCOMMIT\n')
LEGACY_DOCKER = '*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j DOCKER-USER\nCOMMIT\n'


def params(**kw):
    base = dict((key, None) for key in nat_rule.argument_spec())
    base.update(backend='auto', state='present', purge=False, conntrack_cleanup=True)
    base.update(kw)
    return base


def namespace_plan(name, runner=None):
    """A NamespacePlan of a namespace read as empty."""
    return nat_rule.NamespacePlan(types.SimpleNamespace(namespace=name, runner=runner, views={}, chains=None,
                                                        table=None))


def plan(nft_text=None, legacy_text='', nft_table=False):
    p = namespace_plan('ns1')
    p.views = {(4, 'nft'): ipt.XtablesView(4, 'nft', ipt.parse_save(nft_text or '')),
               (4, 'legacy'): ipt.XtablesView(4, 'legacy', ipt.parse_save(legacy_text))}
    p.table = nft.NftTable(exists=nft_table)
    return p


class TestItems:
    def test_top_level_rule_with_state_and_namespace(self):
        items = nat_rule.wanted_items(params(kind='masquerade', source='10.0.0.0/8', out_interface='eth0',
                                             state='absent', namespace='h1'))
        [(field, item)] = items
        assert field == '' and item['state'] == 'absent' and item['namespace'] == 'h1'

    def test_list_items_take_state_and_namespace_defaults(self):
        items = nat_rule.wanted_items(params(namespace='h1', state='absent', rules=[
            dict(kind='masquerade'), dict(kind='dnat', namespace='h2', state='present')]))
        assert [(f, i['namespace'], i['state']) for f, i in items] == [
            ('rules[0].', 'h1', 'absent'), ('rules[1].', 'h2', 'present')]

    def test_policy_or_purge_only_calls_have_no_rules(self):
        assert nat_rule.wanted_items(params(forward_policy='drop')) == []

    def test_namespaces_are_those_of_the_rules_else_the_top_level_one(self):
        rules = m.parse_rules([('', dict(kind='masquerade', source='10.0.0.0/8', out_interface='eth0',
                                         namespace=name)) for name in ('b', 'a', 'b')][:2])
        assert nat_rule.call_namespaces(rules, params(namespace='top')) == ['b', 'a']
        assert nat_rule.call_namespaces([], params(namespace='top')) == ['top']


class TestChooseBackend:
    def test_auto_prefers_nftables_on_a_clean_namespace(self):
        assert nat_rule.choose_backend('auto', plan(), True, []) == 'nftables'

    def test_auto_stays_with_the_backend_that_holds_our_rules(self):
        assert nat_rule.choose_backend('auto', plan(nft_table=True), True, []) == 'nftables'
        assert nat_rule.choose_backend('auto', plan(nft_text=OURS), True, []) == 'iptables'

    def test_auto_uses_iptables_without_nft_or_with_legacy_rules(self):
        assert nat_rule.choose_backend('auto', plan(), False, []) == 'iptables'
        assert nat_rule.choose_backend('auto', plan(legacy_text=LEGACY_DOCKER), True, []) == 'iptables'

    def test_explicit_choices_warn_about_rules_left_in_the_other_backend(self):
        warnings = []
        assert nat_rule.choose_backend('iptables', plan(nft_table=True), True, warnings) == 'iptables'
        assert warnings and 'nftables table' in warnings[0]
        warnings = []
        assert nat_rule.choose_backend('nftables', plan(nft_text=OURS), True, warnings) == 'nftables'
        assert warnings and 'LNT-' in warnings[0]

    def test_unusable_backends_fail_clearly(self):
        with pytest.raises(ValidationError) as info:
            nat_rule.choose_backend('nftables', plan(), False, [])
        assert info.value.field == 'backend' and 'nft is not installed' in info.value.reason
        empty = plan()
        empty.views = {}
        with pytest.raises(ValidationError):
            nat_rule.choose_backend('iptables', empty, True, [])


class FakeModule(object):
    _diff = True


class TestResult:
    def test_diff_shows_policy_and_rule_lines_moving(self):
        p = namespace_plan('h1')
        p.backend = 'iptables'
        p.before = ['ipv4 nat: old line', 'ipv4 nat: kept line', 'ipv4 filter: policy FORWARD ACCEPT']
        p.transactions = [m.Transaction('ipv4 nat', ['x'], ['*nat', 'COMMIT'], ['iptables -t nat -D X'],
                                        ['ipv4 nat: old line'], ['ipv4 nat: new line'],
                                        [('ipv4 filter: policy FORWARD ACCEPT', 'ipv4 filter: policy FORWARD DROP')])]

        class Runner(object):
            def describe_text(self, command):
                return 'ip netns exec h1 ' + command
        p.runner = Runner()
        result = nat_rule.build_result(FakeModule(), [p])
        assert result['changed'] is True and result['backend'] == 'iptables'
        assert result['commands'] == ['ip netns exec h1 iptables -t nat -D X']
        assert result['rules_added'] == ['ipv4 nat: new line'] and result['rules_removed'] == ['ipv4 nat: old line']
        assert result['diff']['before'].splitlines() == sorted(p.before)
        assert result['diff']['after'].splitlines() == sorted(
            ['ipv4 nat: kept line', 'ipv4 nat: new line', 'ipv4 filter: policy FORWARD DROP'])
        assert result['namespaces'][0]['namespace'] == 'h1' and result['conntrack_deleted'] == 0


class RecordingRunner(object):
    """Answers iptables-save/nft listings with the state after a (failed) call."""

    def __init__(self, outputs):
        self.outputs = outputs
        self.calls = []
        self.namespace = 'h1'

    def which(self, name):
        return '/usr/sbin/' + name if name in ('iptables-nft-save', 'nft') else None

    def read_proc_net(self, name):
        return ''

    def run(self, argv, data=None, check=True):
        self.calls.append((list(argv), data))
        return self.outputs.get(tuple(argv), (0, '', ''))


BEFORE_SAVE = ('*nat\n:POSTROUTING ACCEPT [0:0]\n:LNT-POSTROUTING - [0:0]\n'
               '-A POSTROUTING -m comment --comment "lnt:jump" -j LNT-POSTROUTING\n'
               '-A LNT-POSTROUTING -s 10.1.0.0/16 -o eth0 -m comment --comment "lnt:masq,s=10.1.0.0/16,o=eth0 aa" '
               '-j MASQUERADE\nCOMMIT\n')
AFTER_SAVE = ('*nat\n:POSTROUTING ACCEPT [0:0]\n:LNT-POSTROUTING - [0:0]\n'
              '-A POSTROUTING -m comment --comment "lnt:jump" -j LNT-POSTROUTING\n'
              '-A LNT-POSTROUTING -s 10.2.0.0/16 -o eth0 -m comment --comment "lnt:masq,s=10.2.0.0/16,o=eth0 bb" '
              '-j MASQUERADE\nCOMMIT\n')


class TestRestoreNamespace:
    def test_puts_back_what_was_there_before_a_failed_call(self):
        runner = RecordingRunner({('iptables-nft-save',): (0, AFTER_SAVE, '')})
        p = namespace_plan('h1', runner)
        p.backend = 'iptables'
        p.views = {(4, 'nft'): ipt.XtablesView(4, 'nft', ipt.parse_save(BEFORE_SAVE))}
        nat_rule.restore_namespace(p)
        restores = [(argv, data) for argv, data in runner.calls if argv[0].endswith('-restore')]
        assert len(restores) == 1
        argv, data = restores[0]
        assert argv == ['iptables-nft-restore', '--noflush', '-w', '10']
        assert data.splitlines() == [
            '*nat',
            '-D LNT-POSTROUTING -s 10.2.0.0/16 -o eth0 -m comment --comment "lnt:masq,s=10.2.0.0/16,o=eth0 bb" '
            '-j MASQUERADE',
            '-A LNT-POSTROUTING -s 10.1.0.0/16 -o eth0 -m comment --comment "lnt:masq,s=10.1.0.0/16,o=eth0 aa" '
            '-j MASQUERADE',
            'COMMIT',
        ]

    def test_nft_table_created_by_the_failed_call_is_deleted(self):
        listing = ('table inet linuxnet_netns {\n\tchain postrouting {\n'
                   '\t\ttype nat hook postrouting priority srcnat; policy accept;\n'
                   '\t\tmasquerade comment "lnt:x 1" # handle 4\n\t}\n}\n')
        runner = RecordingRunner({('nft', '-a', 'list', 'table', 'inet', 'linuxnet_netns'): (0, listing, '')})
        p = namespace_plan('h1', runner)
        p.backend = 'nftables'
        p.table = nft.NftTable(exists=False)
        nat_rule.restore_namespace(p)
        assert (['nft', '-f', '-'], 'delete table inet linuxnet_netns\n') in runner.calls
