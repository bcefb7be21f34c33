# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the reliability and security tests (issue 6) and print their figures: cases tried
and passed, by category, as a Markdown table read from pytest's JUnit XML.

    .venv/bin/python tests/reliability_report.py                 # run, print the table
    .venv/bin/python tests/reliability_report.py --update docs/reliability.md
    .venv/bin/python tests/reliability_report.py --junit FILE    # table of an earlier run

--update replaces the table between the markers in that file. Needs root (the
integration tests build namespaces); exits non-zero when a case failed.
"""
import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
from xml.etree import ElementTree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = ['tests/unit/test_no_shell.py', 'tests/integration/test_reliability_input.py',
         'tests/integration/test_reliability_faults.py', 'tests/integration/test_reliability_role.py',
         'tests/integration/test_security_injection.py', 'tests/integration/test_security_role.py',
         'tests/integration/test_veth_batch.py::test_third_of_five_creations_fails_and_the_pairs_after_it_go_too',
         'tests/integration/test_veth_batch.py::test_third_of_five_addresses_fails_and_everything_added_goes',
         'tests/integration/test_netns_route.py::test_failure_half_way_rolls_back_this_calls_changes',
         'tests/integration/test_netns_route.py::test_failure_in_a_later_namespace_rolls_back_the_earlier_ones',
         'tests/integration/test_sysctl_forward.py::test_a_foreign_record_fails_and_changes_nothing',
         'tests/integration/test_sysctl_forward.py::test_record_dir_errors',
         'tests/integration/test_isolation_role.py', 'tests/integration/test_ownership_role.py']
BEGIN, END = '<!-- reliability-table:begin -->', '<!-- reliability-table:end -->'

# (module, test function) -> category; order of first appearance is the table's order.
CATEGORIES = [
    ('test_reliability_input', 'test_module_rejects_bad_input_before_touching_the_kernel',
     'Bad input: modules'),
    ('test_reliability_input', 'test_nat_rule_still_allows_dnat_to_any_address', 'Bad input: modules'),
    ('test_reliability_input', 'test_role_rejects_bad_input_before_touching_the_kernel', 'Bad input: role'),
    ('test_reliability_input', 'test_missing_firewall_binary_fails_cleanly',
     'Bad environment: iptables/nft or pyroute2 missing'),
    ('test_reliability_input', 'test_missing_pyroute2_fails_with_the_install_hint',
     'Bad environment: iptables/nft or pyroute2 missing'),
    ('test_reliability_faults', 'test_veth_', 'Faults: failure half-way, rollback'),
    ('test_reliability_faults', 'test_netns_', 'Faults: failure half-way, rollback'),
    ('test_veth_batch', 'test_third_of_five_', 'Faults: failure half-way, rollback'),
    ('test_netns_route', 'test_failure_', 'Faults: failure half-way, rollback'),
    ('test_sysctl_forward', 'test_a_foreign_record_', 'Bad input: modules'),
    ('test_sysctl_forward', 'test_record_dir_errors', 'Bad input: modules'),
    ('test_reliability_faults', 'test_call_waits_for_the_xtables_lock', 'Faults: xtables lock, concurrency'),
    ('test_reliability_faults', 'test_two_calls_at_once', 'Faults: xtables lock, concurrency'),
    ('test_reliability_role', 'test_two_runs_at_once', 'Faults: xtables lock, concurrency'),
    ('test_reliability_role', 'test_a_stuck_xtables_lock', 'Faults: xtables lock, concurrency'),
    ('test_reliability_role', 'test_', 'Faults: drift repaired by the next run'),
    ('test_security_injection', 'test_role_', 'Security: shell metacharacters (role)'),
    ('test_security_injection', 'test_', 'Security: shell metacharacters (modules)'),
    ('test_no_shell', 'test_', 'Security: no shell string in the code (static)'),
    ('test_security_role', 'test_scoped_mode', 'Security: forward scope (scoped vs literal)'),
    ('test_security_role', 'test_literal_mode', 'Security: forward scope (scoped vs literal)'),
    ('test_security_role', 'test_check_mode', 'Security: check mode changes nothing'),
    ('test_security_role', 'test_absent', 'Security: state absent, foreign state kept'),
    ('test_isolation_role', 'test_only_published_ports', 'Security: isolation under FORWARD ACCEPT and DROP'),
    ('test_isolation_role', 'test_the_nft_table_never_drops', 'Coexistence: other firewall managers'),
    ('test_isolation_role', 'test_a_docker_like_workload', 'Coexistence: other firewall managers'),
    ('test_isolation_role', 'test_bad_input', 'Bad input: role'),
    ('test_isolation_role', 'test_modules_refuse', 'Bad input: modules'),
    ('test_isolation_role', 'test_a_tasks_mounts', 'Security: connection plugin mounts'),
    ('test_ownership_role', 'test_', 'Ownership: foreign objects, adopt, restore'),
]


def category_of(classname, name):
    module = classname.rsplit('.', 1)[-1]
    function = name.split('[', 1)[0]
    for wanted_module, prefix, category in CATEGORIES:
        if module == wanted_module and function.startswith(prefix):
            return category
    return 'Other (%s)' % module


def outcome_of(case):
    if case.find('failure') is not None or case.find('error') is not None:
        return 'failed'
    skipped = case.find('skipped')
    if skipped is not None:
        return 'xfailed' if skipped.get('type') == 'pytest.xfail' else 'skipped'
    return 'passed'


def read_junit(path):
    """[(category, outcome, test id)] and the total time of the run."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == 'testsuite' else list(root.iter('testsuite'))
    cases = []
    for case in root.iter('testcase'):
        cases.append((category_of(case.get('classname', ''), case.get('name', '')), outcome_of(case),
                      '%s::%s' % (case.get('classname'), case.get('name'))))
    return cases, sum(float(suite.get('time', 0)) for suite in suites)


def table(cases, seconds):
    order = []
    counts = {}
    for category, outcome, dummy in cases:
        if category not in counts:
            order.append(category)
            counts[category] = dict(tried=0, passed=0, xfailed=0, failed=0, skipped=0)
        counts[category]['tried'] += 1
        counts[category][outcome] += 1
    ranks = []
    for dummy_module, dummy_prefix, category in CATEGORIES:
        if category not in ranks:
            ranks.append(category)
    # the categories in the order CATEGORIES names them (parallel runs finish in any order)
    order.sort(key=lambda category: ranks.index(category) if category in ranks else len(ranks))
    rows = ['| Category | Cases tried | Passed | Known bugs (strict xfail) | Failed | Skipped |',
            '|---|---:|---:|---:|---:|---:|']
    total = dict(tried=0, passed=0, xfailed=0, failed=0, skipped=0)
    for category in order:
        c = counts[category]
        rows.append('| %s | %d | %d | %d | %d | %d |' % (category, c['tried'], c['passed'], c['xfailed'],
                                                         c['failed'], c['skipped']))
        for key in total:
            total[key] += c[key]
    rows.append('| **Total** | **%d** | **%d** | **%d** | **%d** | **%d** |' % (
        total['tried'], total['passed'], total['xfailed'], total['failed'], total['skipped']))
    known = sorted(test for dummy, outcome, test in cases if outcome == 'xfailed')
    failed = sorted(test for dummy, outcome, test in cases if outcome == 'failed')
    lines = rows + ['', 'Run of %s, %.0f s of tests.' % (datetime.date.today().isoformat(), seconds)]
    if known:
        lines += ['', 'Known bugs (each a strict xfail naming the bug; it turns into a failure once fixed, '
                      'so the mark must then be removed):'] + ['- `%s`' % test for test in known]
    if failed:
        lines += ['', 'Failed:'] + ['- `%s`' % test for test in failed]
    return '\n'.join(lines) + '\n', total


def run_tests(junit):
    argv = [sys.executable, '-m', 'pytest', '-q', '-n', '2', '--dist', 'loadfile', '-p', 'no:cacheprovider',
            '--junitxml', junit] + TESTS
    return subprocess.run(argv, cwd=REPO, check=False).returncode


def update(path, text):
    with open(path) as handle:
        content = handle.read()
    pattern = re.compile(re.escape(BEGIN) + '.*?' + re.escape(END), re.DOTALL)
    if not pattern.search(content):
        raise SystemExit('%s has no %s ... %s markers' % (path, BEGIN, END))
    content = pattern.sub(lambda match: BEGIN + '\n' + text + END, content)
    with open(path, 'w') as handle:
        handle.write(content)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--junit', help='read this JUnit XML instead of running the tests')
    parser.add_argument('--update', metavar='FILE', help='replace the table between the markers in FILE')
    args = parser.parse_args()
    rc = 0
    if args.junit:
        junit = args.junit
    else:
        junit = os.path.join(tempfile.mkdtemp(prefix='lnt-reliability-'), 'junit.xml')
        rc = run_tests(junit)
    cases, seconds = read_junit(junit)
    text, total = table(cases, seconds)
    print(text)
    if args.update:
        update(args.update, text)
    return 1 if rc not in (0,) or total['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
