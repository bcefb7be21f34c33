#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The expert's baseline of the benchmark: the topology of shell_loop.sh (same namespaces,
# veth pairs, addresses, default routes, masquerade, scoped FORWARD rules, one TCP DNAT per
# namespace, ip_forward), written the way someone who knows iproute2 and iptables would:
# batches instead of one process per command, and a diff against what is there so that a
# second run changes nothing. Like shell_loop.sh it runs from the root namespace but only
# ever touches namespaces (`ip -batch` there only adds or deletes namespace files).
#
# usage: expert_batch.sh present|absent ROUTER UPLINK ROUTER_ADDR PREFIX FIRST COUNT STATE_DIR
#   Names and addresses as in shell_loop.sh: inner namespace PREFIX$i, veth pair vh$i (router
#   side, 10.A.B.1/24, link group $GROUP) / vi$i (inner side, 10.A.B.2/24), A = 100 + i/250,
#   B = i%250, TCP ROUTER_ADDR:(20000+i) -> 10.A.B.2:80. STATE_DIR keeps the router's
#   ip_forward value from before the first run, which `absent` puts back.
#
# present: one `ip -batch` in the root namespace adds the missing namespaces, one
#   `ip -n ROUTER -batch` creates the missing veth pairs (and repairs router-side ends), one
#   `ip -n NS -batch` per inner namespace configures it (a new one; an existing one only when
#   its check fails), one `iptables-save` and one `iptables-restore --noflush` add the missing
#   rules, ip_forward is written only when it is not 1.
# absent: one request deletes every router-side veth (link group: the kernel pays one RCU
#   grace period, not one per link), one `ip -batch` deletes the namespaces, one
#   `iptables-restore --noflush` deletes the rules still there, the iptables-nft nat table is
#   deleted if that emptied it, ip_forward goes back.
#
# The last line of output says what was done: `expert_batch: changed=K (...)`; changed=0 means
# that nothing was written.
set -euo pipefail

if [ "$#" -ne 8 ]; then
    echo "usage: $0 present|absent ROUTER UPLINK ROUTER_ADDR PREFIX FIRST COUNT STATE_DIR" >&2
    exit 2
fi
state=$1 router=$2 uplink=$3 router_addr=$4 prefix=$5 first=$6 count=$7 state_dir=$8
export LC_ALL=C
# Our router-side veth ends carry this link group: found and deleted in one request each.
GROUP=214
NETNS_DIR=/run/netns
last=$((first + count))
work=$(mktemp -d "${TMPDIR:-/tmp}/expert-batch.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Rule lines exactly as iptables-save prints them, prefixed by their table: the same text
# feeds iptables-restore and is compared with iptables-save's output.
desired_rules() {
    local i net
    for ((i = first; i < last; i++)); do
        net=10.$((100 + i / 250)).$((i % 250))
        echo "nat|-A POSTROUTING -s $net.0/24 -o $uplink -j MASQUERADE"
        echo "filter|-A FORWARD -s $net.0/24 -i vh$i -o $uplink -j ACCEPT"
        echo "filter|-A FORWARD -d $net.0/24 -i $uplink -o vh$i -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        echo "nat|-A PREROUTING -d $router_addr/32 -i $uplink -p tcp -m tcp --dport $((20000 + i)) -j DNAT --to-destination $net.2:80"
        echo "filter|-A FORWARD -d $net.2/32 -i $uplink -o vh$i -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT"
    done
}

# The router's rules as table|line (one iptables-save: the save's header also names the
# iptables flavour, which the teardown needs).
save_rules() {
    ip netns exec "$router" iptables-save >"$work/save"
    awk '/^\*/ { table = substr($0, 2) } /^-A / { print table "|" $0 }' "$work/save" >"$work/existing"
}

# Whether, once the rules in $1 are gone, the nat table holds nothing: no other rule and no
# chain of its own (its built-in chains cannot have another policy than ACCEPT).
nat_left_empty() {
    ! grep -F -x -v -f "$1" "$work/existing" | grep -q '^nat|' &&
        ! awk '/^\*/ { t = $0 } t == "*nat" && /^:[^ ]+ - / { found = 1 } END { exit !found }' "$work/save"
}

# table|line input -> iptables-restore input, one block per table.
restore_input() {
    awk -F'|' -v op="$1" '{ sub(/^-A /, "-" op " ", $2); rules[$1] = rules[$1] $2 "\n" }
        END { for (t in rules) printf "*%s\n%sCOMMIT\n", t, rules[t] }' "$2"
}

# Router side as "i ok|bad" for each of our veth ends that exists (link group $GROUP): ok
# when it is up and has its address.
router_view() {
    ip -n "$router" -4 -br -batch - <<EOF | awk -v first="$first" -v last="$last" '
        { name = $1; sub(/@.*/, "", name) }
        name !~ /^vh[0-9]+$/ { next }
        { i = substr(name, 3) + 0 }
        i < first || i >= last { next }
        $NF ~ /^</ { seen[i] = 1; up[i] = ("," substr($NF, 2, length($NF) - 2) ",") ~ /,UP,/; next }
        { for (f = 3; f <= NF; f++) addr[i] = addr[i] " " $f }
        END { for (i in seen) {
                want = sprintf(" 10.%d.%d.1/24", 100 + int(i / 250), i % 250)
                print i, (up[i] && index(addr[i] " ", want " ") ? "ok" : "bad") } }'
link show group $GROUP
addr show
EOF
}

# The inner namespaces listed in $1, one `ip -batch` each; prints those that are not as
# wanted: lo up, vi$i up with 10.A.B.2/24, default via 10.A.B.1 dev vi$i.
inner_check() {
    local i
    while read -r i; do
        echo "@ $i"
        ip -n "$prefix$i" -4 -br -batch - <<EOF
link show
addr show
route show default
EOF
    done <"$1" | awk '
        function verdict() {
            if (i == "") return
            if (!(lo_up && vi_up && vi_addr && route)) print i
        }
        $1 == "@" { verdict(); i = $2; lo_up = vi_up = vi_addr = route = 0
                    net = sprintf("10.%d.%d", 100 + int(i / 250), i % 250); vi = "vi" i; next }
        { name = $1; sub(/@.*/, "", name) }
        $1 == "default" { route = ($3 == net ".1" && $5 == vi); next }
        $NF ~ /^</ { flags = "," substr($NF, 2, length($NF) - 2) ","
                     if (name == "lo") lo_up = flags ~ /,UP,/
                     if (name == vi) vi_up = flags ~ /,UP,/
                     next }
        name == vi { for (f = 3; f <= NF; f++) if ($f == net ".2/24") vi_addr = 1 }
        END { verdict() }'
}

router_sysctl() {
    ip netns exec "$router" sysctl -n net.ipv4.ip_forward
}

set_forwarding() {
    ip netns exec "$router" sysctl -q -w net.ipv4.ip_forward="$1"
}

present() {
    local i ns net verdict current added_ns=0 added_pairs=0 fixed_router=0 configured=0 added_rules=0 forwarding=0
    local -A router_side=()
    router_view >"$work/view"
    while read -r i verdict; do router_side[$i]=$verdict; done <"$work/view"
    : >"$work/netns" ; : >"$work/router" ; : >"$work/configure" ; : >"$work/check"
    for ((i = first; i < last; i++)); do
        ns=$prefix$i
        net=10.$((100 + i / 250)).$((i % 250))
        if [ ! -e "$NETNS_DIR/$ns" ]; then
            echo "netns add $ns" >>"$work/netns"
            added_ns=$((added_ns + 1))
        fi
        case ${router_side[$i]:-absent} in
        absent)
            printf '%s\n' "link add vh$i group $GROUP type veth peer name vi$i netns $ns" \
                "addr add $net.1/24 dev vh$i" "link set vh$i up" >>"$work/router"
            added_pairs=$((added_pairs + 1))
            echo "$i" >>"$work/configure" ;;
        bad)
            printf '%s\n' "addr replace $net.1/24 dev vh$i" "link set vh$i up" >>"$work/router"
            fixed_router=$((fixed_router + 1))
            echo "$i" >>"$work/check" ;;
        ok)
            echo "$i" >>"$work/check" ;;
        esac
    done
    # Namespace files in the root namespace's /run/netns; everything else inside namespaces.
    if [ -s "$work/netns" ]; then ip -batch - <"$work/netns"; fi
    if [ -s "$work/router" ]; then ip -n "$router" -batch - <"$work/router"; fi
    # Existing pairs: configure only the inner namespaces whose check fails.
    if [ -s "$work/check" ]; then inner_check "$work/check" >>"$work/configure"; fi
    while read -r i; do
        net=10.$((100 + i / 250)).$((i % 250))
        ip -n "$prefix$i" -batch - <<EOF
link set lo up
addr replace $net.2/24 dev vi$i
link set vi$i up
route replace default via $net.1 dev vi$i
EOF
        configured=$((configured + 1))
    done <"$work/configure"
    # Rules: the missing ones, appended in one transaction.
    desired_rules >"$work/desired"
    save_rules
    grep -F -x -v -f "$work/existing" "$work/desired" >"$work/missing" || true
    if [ -s "$work/missing" ]; then
        restore_input A "$work/missing" | ip netns exec "$router" iptables-restore -w --noflush
        added_rules=$(wc -l <"$work/missing")
    fi
    current=$(router_sysctl)
    if [ "$current" != 1 ]; then
        # the value to put back is the one from before our first run
        [ -e "$state_dir/ip_forward" ] || echo "$current" >"$state_dir/ip_forward"
        set_forwarding 1
        forwarding=1
    fi
    report $((added_ns + added_pairs + fixed_router + configured + added_rules + forwarding)) \
        "namespaces +$added_ns, veth pairs +$added_pairs, router ends fixed $fixed_router," \
        "inner namespaces configured $configured, rules +$added_rules, ip_forward $forwarding"
}

absent() {
    local i before deleted_links=0 deleted_ns=0 deleted_rules=0 table=0 forwarding=0
    # The router-side ends; deleting one deletes its peer inside the inner namespace.
    deleted_links=$(ip -n "$router" -br link show group "$GROUP" | wc -l)
    if [ "$deleted_links" -gt 0 ]; then ip -n "$router" link delete group "$GROUP"; fi
    : >"$work/netns"
    for ((i = first; i < last; i++)); do
        if [ -e "$NETNS_DIR/$prefix$i" ]; then
            echo "netns delete $prefix$i" >>"$work/netns"
            deleted_ns=$((deleted_ns + 1))
        fi
    done
    if [ -s "$work/netns" ]; then ip -batch - <"$work/netns"; fi
    desired_rules >"$work/desired"
    save_rules
    grep -F -x -f "$work/existing" "$work/desired" >"$work/present" || true
    if [ -s "$work/present" ]; then
        restore_input D "$work/present" | ip netns exec "$router" iptables-restore -w --noflush
        deleted_rules=$(wc -l <"$work/present")
    fi
    # iptables-nft creates the nat table on first use and never deletes it; an empty one
    # behaves like none, but `nft list ruleset` would show it: delete it if we emptied it.
    if [ "$deleted_rules" -gt 0 ] && grep -q '(nf_tables)' "$work/save" && nat_left_empty "$work/present"; then
        ip netns exec "$router" nft delete table ip nat
        table=1
    fi
    if [ -e "$state_dir/ip_forward" ]; then
        before=$(cat "$state_dir/ip_forward")
        if [ "$(router_sysctl)" != "$before" ]; then
            set_forwarding "$before"
            forwarding=1
        fi
        rm -f "$state_dir/ip_forward"
    fi
    report $((deleted_links + deleted_ns + deleted_rules + table + forwarding)) \
        "veth pairs -$deleted_links, namespaces -$deleted_ns, rules -$deleted_rules," \
        "nat table deleted $table, ip_forward restored $forwarding"
}

report() {
    local changed=$1
    shift
    echo "expert_batch: changed=$changed ($*)"
}

case $state in
present) present ;;
absent) absent ;;
*) echo "state must be present or absent, not $state" >&2; exit 2 ;;
esac
