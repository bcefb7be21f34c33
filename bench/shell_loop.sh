#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The baseline of the benchmark: the reference article's commands, typed once per inner
# namespace, as an operator's shell loop would. It runs from the root namespace but only
# ever touches namespaces: `ip netns add`, `ip -n NS ...` and `ip netns exec ROUTER
# iptables ...`. The router namespace and its uplink exist already (bench/lab.py makes them).
#
# usage: shell_loop.sh ROUTER UPLINK ROUTER_ADDR PREFIX FIRST COUNT
#   inner namespace i (FIRST <= i < FIRST+COUNT) is PREFIX$i, wired to the router by the veth
#   pair vh$i (router side, 10.A.B.1/24) / vi$i (inner side, 10.A.B.2/24), where
#   A = 100 + i/250 and B = i%250 (bench/lab.py computes the same plan); its TCP port 80 is
#   published on ROUTER_ADDR:(20000+i) of the uplink.
set -euo pipefail

if [ "$#" -ne 6 ]; then
    echo "usage: $0 ROUTER UPLINK ROUTER_ADDR PREFIX FIRST COUNT" >&2
    exit 2
fi
router=$1 uplink=$2 router_addr=$3 prefix=$4 first=$5 count=$6
export LC_ALL=C

# Step 7 of the article, once per router.
ip netns exec "$router" sysctl -q -w net.ipv4.ip_forward=1

for ((i = first; i < first + count; i++)); do
    ns=$prefix$i
    net=10.$((100 + i / 250)).$((i % 250))
    host_side=vh$i
    inner_side=vi$i
    port=$((20000 + i))

    # Steps 1-6: namespace, veth pair with one end inside it, addresses, links up, route.
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$router" link add "$host_side" type veth peer name "$inner_side" netns "$ns"
    ip -n "$router" addr add "$net.1/24" dev "$host_side"
    ip -n "$router" link set "$host_side" up
    ip -n "$ns" addr add "$net.2/24" dev "$inner_side"
    ip -n "$ns" link set "$inner_side" up
    ip -n "$ns" route add default via "$net.1"

    # Step 8: masquerade the inner subnet out of the uplink.
    ip netns exec "$router" iptables -w -t nat -A POSTROUTING -s "$net.0/24" -o "$uplink" -j MASQUERADE
    # Step 9, scoped: new flows from the subnet out of the uplink, replies by conntrack state.
    ip netns exec "$router" iptables -w -A FORWARD -i "$host_side" -o "$uplink" -s "$net.0/24" -j ACCEPT
    ip netns exec "$router" iptables -w -A FORWARD -i "$uplink" -o "$host_side" -d "$net.0/24" \
        -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    # Section 2.3: publish inner:80 on the router, and let only DNAT'ed flows through.
    ip netns exec "$router" iptables -w -t nat -A PREROUTING -i "$uplink" -d "$router_addr" \
        -p tcp --dport "$port" -j DNAT --to-destination "$net.2:80"
    ip netns exec "$router" iptables -w -A FORWARD -i "$uplink" -o "$host_side" -d "$net.2" \
        -p tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT
done
