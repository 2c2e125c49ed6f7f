#!/usr/bin/env bash
# Captures real frames from the Linux kernel into test/fixtures/, so the codecs are judged against
# the stack our users' clients run. Needs root, tshark, ethtool, iptables, iputils-ping, python3.
#
#   sudo scripts/capture-fixtures.sh                  capture anew
#   scripts/capture-fixtures.sh --fields-only         only re-run tshark over the stored capture
#
# Topology (namespaces created here and removed on any exit):
#
#   A (198.18.0.1, fd00:a::1) --veth-- R (router) --veth mtu 1280-- C (198.18.1.2, fd00:c::2)
#
# This kernel has no 802.1Q module, so the VLAN-tagged frames are built with scapy and sent from A's
# veth (they are the only frames in the capture not produced by the kernel's own stack).
# The capture is taken on A's veth, with checksum/segmentation offloads off everywhere so that
# every frame carries the bytes (and checksums) a wire would. Writes:
#   test/fixtures/kernel.pcap         the frames
#   test/fixtures/kernel.fields.tsv   tshark's decoding of each frame, the oracle for our codecs
set -euo pipefail
cd "$(dirname "$0")/.."
out=${FIXTURE_OUT:-test/fixtures}
mkdir -p "$out"

# tshark's decoding of every frame, the oracle the codec tests compare against.
write_fields() {
  local fields=(frame.number frame.len eth.dst eth.src ieee8021ad.id vlan.id eth.type
    arp.opcode arp.src.hw_mac arp.src.proto_ipv4 arp.dst.hw_mac arp.dst.proto_ipv4
    ip.hdr_len ip.dsfield ip.len ip.id ip.flags.df ip.flags.mf ip.frag_offset ip.ttl ip.proto ip.checksum ip.src ip.dst
    ipv6.tclass ipv6.flow ipv6.plen ipv6.nxt ipv6.hlim ipv6.src ipv6.dst ipv6.fraghdr.offset ipv6.fraghdr.more ipv6.fraghdr.ident
    tcp.srcport tcp.dstport tcp.seq_raw tcp.ack_raw tcp.hdr_len tcp.flags tcp.window_size_value tcp.checksum tcp.urgent_pointer
    tcp.options.mss_val tcp.options.wscale.shift tcp.options.sack_perm tcp.options.sack_le tcp.options.sack_re
    tcp.options.timestamp.tsval tcp.options.timestamp.tsecr tcp.len
    icmp.type icmp.code icmp.checksum icmp.ident icmp.seq icmp.mtu
    icmpv6.type icmpv6.code icmpv6.checksum icmpv6.echo.identifier icmpv6.echo.sequence_number icmpv6.mtu
    icmpv6.nd.ns.target_address icmpv6.nd.na.target_address icmpv6.nd.na.flag.r icmpv6.nd.na.flag.s icmpv6.nd.na.flag.o
    icmpv6.opt.linkaddr)
  local args=() f
  for f in "${fields[@]}"; do args+=(-e "$f"); done
  # occurrence=a with aggregator ';': every value, the outer header's first (ICMP errors quote an
  # inner packet with the same fields; SACK blocks repeat). Reassembly off: each frame as it is.
  tshark -r "$out/kernel.pcap" -o tcp.relative_sequence_numbers:FALSE -o tcp.analyze_sequence_numbers:FALSE \
    -o ip.defragment:FALSE -o ipv6.defragment:FALSE \
    -T fields -E header=y -E separator=/t -E occurrence=a -E aggregator=';' "${args[@]}" > "$out/kernel.fields.tsv"
}
if [ "${1:-}" = --fields-only ]; then write_fields; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "capture-fixtures: run as root (it creates network namespaces)." >&2; exit 1; }

id=$$
A=tkfA$id; R=tkfR$id; C=tkfC$id
PY=/usr/bin/python3
cleanup() {
  [ -n "${tspid:-}" ] && kill "$tspid" 2>/dev/null || true
  for ns in "$A" "$R" "$C"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT

for ns in "$A" "$R" "$C"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add a0 netns "$A" type veth peer name r0 netns "$R"
ip link add r1 netns "$R" type veth peer name c0 netns "$C"
offload_off() { ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off txvlan off rxvlan off >/dev/null 2>&1 || ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null; }
offload_off "$A" a0; offload_off "$R" r0; offload_off "$R" r1; offload_off "$C" c0
ip -n "$R" link set r1 mtu 1280; ip -n "$C" link set c0 mtu 1280
ip -n "$A" link set a0 address 02:00:00:00:00:0a
ip -n "$R" link set r0 address 02:00:00:00:00:01
ip -n "$A" link set a0 up; ip -n "$R" link set r0 up; ip -n "$R" link set r1 up; ip -n "$C" link set c0 up
ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

pcap=$(mktemp /tmp/tkf-XXXXXX.pcap)
rm -f "$pcap"
ip netns exec "$A" tshark -q -i a0 -w "$pcap" -F pcap >/dev/null 2>&1 &
tspid=$!
sleep 2

# Addresses come up after the capture starts: DAD, MLD reports (Hop-by-Hop router alert) appear.
ip -n "$A" addr add 198.18.0.1/24 dev a0
ip -n "$A" addr add fd00:a::1/64 dev a0 nodad
ip -n "$R" addr add 198.18.0.254/24 dev r0
ip -n "$R" addr add fd00:a::fe/64 dev r0 nodad
ip -n "$R" addr add 198.18.1.254/24 dev r1
ip -n "$R" addr add fd00:c::fe/64 dev r1 nodad
ip -n "$C" addr add 198.18.1.2/24 dev c0
ip -n "$C" addr add fd00:c::2/64 dev c0 nodad
ip -n "$A" route add default via 198.18.0.254
ip -n "$A" -6 route add default via fd00:a::fe
ip -n "$C" route add default via 198.18.1.254
ip -n "$C" -6 route add default via fd00:c::fe
sleep 1

# ARP, ICMP echo, NDP, ICMPv6 echo.
ip netns exec "$A" ping -c 2 -i 0.2 -W 1 198.18.0.254 >/dev/null
ip netns exec "$A" ping -6 -c 2 -i 0.2 -W 1 fd00:a::fe >/dev/null
# VLAN-tagged frames (802.1Q, and 802.1ad QinQ), built with scapy.
ip netns exec "$A" $PY -c "
from scapy.all import Ether, Dot1Q, Dot1AD, ARP, IP, ICMP, TCP, sendp, conf
conf.verb = 0
a, r = '02:00:00:00:00:0a', '02:00:00:00:00:01'
sendp(Ether(src=a, dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=100, prio=5)/ARP(hwsrc=a, psrc='198.18.100.1', pdst='198.18.100.2'), iface='a0')
sendp(Ether(src=a, dst=r)/Dot1Q(vlan=100)/IP(src='198.18.100.1', dst='198.18.100.2', id=77)/ICMP(id=9, seq=1)/(b'v'*32), iface='a0')
sendp(Ether(src=a, dst=r)/Dot1AD(vlan=300)/Dot1Q(vlan=100, id=1)/IP(src='198.18.100.1', dst='198.18.100.2')/TCP(sport=4000, dport=80, flags='S', seq=4294967290, options=[('MSS', 1460), ('SAckOK', b''), ('Timestamp', (1, 0)), ('NOP', None), ('WScale', 7)]), iface='a0')
"
# Fragments: IPv4 (MF, offsets) and IPv6 (Fragment extension header).
ip netns exec "$A" ping -c 1 -W 1 -s 3000 198.18.0.254 >/dev/null
ip netns exec "$A" ping -6 -c 1 -W 1 -s 3000 fd00:a::fe >/dev/null
# ICMP fragmentation needed (RFC 1191) and ICMPv6 packet too big (RFC 8201) from the router.
ip netns exec "$A" ping -c 1 -W 1 -M do -s 1400 198.18.1.2 >/dev/null || true
ip netns exec "$A" ping -6 -c 1 -W 1 -M do -s 1400 fd00:c::2 >/dev/null || true
# ICMP port unreachable (UDP to a closed port) and RST (TCP to a closed port).
ip netns exec "$A" $PY -c "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.sendto(b'x'*9,('198.18.1.2',9))"
ip netns exec "$A" $PY -c "import socket
try: socket.create_connection(('198.18.1.2',9),timeout=1)
except OSError: pass"

# TCP conversations with C, each with a sysctl variant on A (the SYN's option layout changes),
# v4 and v6. C drops every 12th segment it receives, so that several holes are open at once and it
# sends SACK blocks (deterministically: random drops would leave the coverage to chance).
ip netns exec "$C" iptables -A INPUT -p tcp --dport 7000 -m statistic --mode nth --every 12 --packet 5 -j DROP
ip netns exec "$C" ip6tables -A INPUT -p tcp --dport 7000 -m statistic --mode nth --every 12 --packet 5 -j DROP
ip netns exec "$C" $PY -c "
import socket,threading
def serve(fam,addr):
    s=socket.socket(fam,socket.SOCK_STREAM);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((addr,7000));s.listen(8)
    while True:
        c,_=s.accept()
        def echo(c):
            while True:
                d=c.recv(65536)
                if not d: break
                c.sendall(d)
            c.close()
        threading.Thread(target=echo,args=(c,),daemon=True).start()
serve(socket.AF_INET6,'::')  # dual-stack: IPv4 clients arrive as mapped addresses
" &
sleep 1
client() { # family address bytes
  ip netns exec "$A" $PY -c "
import socket,sys
s=socket.create_connection(('$2',7000),timeout=10)
s.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)
data=bytes((i*7+3)&255 for i in range($3))
s.sendall(data);s.shutdown(socket.SHUT_WR)
got=b''
while True:
    d=s.recv(65536)
    if not d: break
    got+=d
s.close()
assert got==data,(len(got),len(data))
"
}
client 4 198.18.1.2 60000
client 6 fd00:c::2 60000
for knob in tcp_timestamps tcp_sack tcp_window_scaling; do
  ip netns exec "$A" sysctl -qw "net.ipv4.$knob=0"
  client 4 198.18.1.2 3000
  ip netns exec "$A" sysctl -qw "net.ipv4.$knob=1"
done
sleep 1
kill "$tspid"; wait "$tspid" 2>/dev/null || true; tspid=

cp "$pcap" "$out/kernel.pcap"; rm -f "$pcap"
write_fields
echo "captured $(($(wc -l < "$out/kernel.fields.tsv") - 1)) frames into $out/kernel.pcap"
