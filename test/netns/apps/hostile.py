"""Hostile traffic for test/netns/hostile.test.ts, run with Debian's python3 (scapy) in a host
namespace. Every mode prints one JSON line on stdout as its last line.

  hostile.py garbage  --dst-mac M --dst4 A --dst6 A6 [--random N]
      Frames no correct stack may crash on, all addressed to our MAC: N random-byte frames, then
      each malformed IPv4/IPv6/TCP class. TCP ones are SYNs to port 7 from a source port that
      names the class (CLASS_PORTS), so a capture of the stack's answers can say which class drew
      one.

  hostile.py rst --server A --port 7 --first N --second N [--rsts K] [--syns K] [--oow K] [--interval S]
      A kernel client and the attacker in one: connects, echoes N bytes, and while the connection
      is idle sends K RSTs (and then K SYNs) spoofed as the client, with sequence numbers inside
      the server's window but not RCV.NXT (RFC 5961 3.2, 4.2), then K RSTs outside the window;
      it sniffs what the server answers, then echoes N more bytes on the same connection and
      checks every byte.

  hostile.py synflood --dst-mac M --dst4 A --src4 A --count N --mode own|spoof [--exclude A,B]
                      [--first-port P] [--pps R]
      N SYNs to port 7 with random source ports, from our own address ('own', each a distinct
      port) or from random addresses of 198.18.0.0/24 that nobody owns ('spoof', minus
      --exclude), sent as fast as an AF_PACKET socket takes them (or paced at R a second).

  hostile.py icmp --server A --family 4|6 [--port 7] [--forged K] [--mb N]
      A kernel client and an off-path attacker who knows the 4-tuple (RFC 5927) in one: echoes
      N MB; echoes N MB more while sending K fragmentation-needed (IPv4, MTU 68-1000) or
      packet-too-big (IPv6, MTU 1280) errors quoting sequence numbers far outside the server's
      SND.UNA..SND.NXT; then, idle, K errors quoting SND.NXT (valid) with an MTU no path has
      (IPv4 40, IPv6 1000), and N MB; then one valid error with a real MTU (IPv4 600, IPv6 1280)
      as the control, and N MB. Reports the phases' start and end times (epoch seconds, for the
      caller's capture) and whether every byte came back.

  hostile.py options --dst-mac M --dst6 A --src6 A [--port 7]
      Probes of RFC 8200 4.2 option actions: SYNs (and echo requests to ff02::1) carrying one
      unrecognised option of each action in a Destination Options or Hop-by-Hop header; reports
      for each what came back (SYN-ACK, Parameter Problem code and pointer, nothing).

  hostile.py frag6 --in IF --out IF --dst-mac M --prefix P [--size N] [--order inorder|reverse|mixed]
      A fragmenting IPv6 router in user space (the kernel never fragments forwarded IPv6, nor
      TCP it sends): every IPv6 packet that arrives on --in for an address under prefix P (its
      first 8 bytes, e.g. fd00:1::) leaves on --out to MAC M cut into fragments of N bytes of
      data (RFC 8200 4.5), in the given order; the kernel (its FORWARD chain closed for that
      direction) forwards the rest. On SIGTERM prints its counts.
"""

import argparse
import hashlib
import json
import random
import socket
import struct
import sys
import threading
import time

import logging

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.all import (  # noqa: E402
    ICMP,
    IP,
    TCP,
    AsyncSniffer,
    Ether,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Raw,
    conf,
    get_if_hwaddr,
)

conf.verb = 0
IFACE = "eth0"

# Source ports of the TCP classes (one range of 100 each), for the test to attribute answers.
CLASS_PORTS = {
    "ipv4-bad-header-checksum": 40000,
    "tcp-bad-checksum": 40100,
    "tcp-data-offset-below-5": 40200,
    "tcp-data-offset-past-end": 40300,
    "tcp-malformed-options": 40400,
    "ipv4-total-length-past-frame": 40500,
    "ipv4-truncated-tcp": 40600,
    "ipv6-long-chain": 40700,
    "ipv6-bad-chain": 41200,
    "ipv6-truncated": 41300,
    "ipv4-fragment": 40800,
    "ipv4-wrong-version": 40900,
    "ipv4-ihl-below-5": 41000,
    "ipv6-wrong-version": 41100,
}


def raw_socket():
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((IFACE, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    return s


def send_all(s, frames):
    """Sends raw frames; a full transmit queue (ENOBUFS) is waited out, bounded."""
    sent = 0
    for f in frames:
        for _ in range(1000):
            try:
                s.send(f)
                sent += 1
                break
            except OSError as e:
                if e.errno not in (105, 11):  # ENOBUFS, EAGAIN
                    raise
                time.sleep(0.001)
    return sent


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


# ------------------------------------------------------------------------------------------------
# garbage


def garbage(a):
    rng = random.Random(7)
    me = get_if_hwaddr(IFACE)
    src4 = a.src4
    eth = Ether(dst=a.dst_mac, src=me)
    eth4 = bytes(Ether(dst=a.dst_mac, src=me, type=0x0800))
    eth6 = bytes(Ether(dst=a.dst_mac, src=me, type=0x86DD))
    frames = []  # (class, bytes)

    def add(cls, frame):
        frames.append((cls, bytes(frame)))

    # Random bytes after an Ethernet header to us: random EtherType, IPv4, IPv6, ARP, VLAN.
    for i in range(a.random):
        n = rng.randint(0, 1500)
        et = [0x0800, 0x86DD, 0x0806, 0x8100, rng.randint(0, 0xFFFF)][i % 5]
        hdr = bytes.fromhex(a.dst_mac.replace(":", "")) + bytes.fromhex(me.replace(":", ""))
        frames.append(("random", hdr + struct.pack("!H", et) + rng.randbytes(n)))

    def syn(cls, k, **kw):
        return TCP(sport=CLASS_PORTS[cls] + k, dport=7, flags="S", seq=rng.getrandbits(32), **kw)

    ip = lambda **kw: IP(src=src4, dst=a.dst4, **kw)  # noqa: E731

    # Truncated IPv4 headers: 1..19 bytes of a valid header.
    whole = bytes(ip() / syn("ipv4-truncated-tcp", 0))
    for n in range(1, 20):
        frames.append(("ipv4-truncated-header", eth4 + whole[:n]))
    # Truncated TCP headers: total length says 20 + n, TCP header cut at n < 20 bytes.
    for n in range(0, 20):
        seg = bytes(syn("ipv4-truncated-tcp", n))[:n]
        add("ipv4-truncated-tcp", eth / ip(proto=6) / Raw(seg))
    # Wrong IP version in an IPv4 EtherType (0..15 except 4).
    for v in [0, 1, 2, 3, 5, 6, 7, 8, 9, 15]:
        add("ipv4-wrong-version", eth / ip(version=v) / syn("ipv4-wrong-version", v))
    # IHL below 5.
    for ihl in range(0, 5):
        add("ipv4-ihl-below-5", eth / ip(ihl=ihl) / syn("ipv4-ihl-below-5", ihl))
    # Total length beyond the frame.
    for extra in [1, 20, 100, 1000, 65535 - 40]:
        p = ip() / syn("ipv4-total-length-past-frame", extra % 100)
        p = IP(bytes(p))
        p.len = min(65535, 40 + extra)
        del p.chksum
        add("ipv4-total-length-past-frame", eth / p)
    # Bad IPv4 header checksum, otherwise a valid SYN.
    for k in range(10):
        p = IP(bytes(ip() / syn("ipv4-bad-header-checksum", k)))
        p.chksum = (p.chksum + 1 + k) & 0xFFFF
        add("ipv4-bad-header-checksum", eth / p)
    # Bad TCP checksum, otherwise a valid SYN to port 7.
    for k in range(20):
        p = IP(bytes(ip() / syn("tcp-bad-checksum", k)))
        p[TCP].chksum = (p[TCP].chksum + 1 + k) & 0xFFFF
        add("tcp-bad-checksum", eth / p)
    # TCP data offset below 5 (checksum valid for the bytes sent).
    for k, off in enumerate(range(0, 5)):
        add("tcp-data-offset-below-5", eth / ip() / syn("tcp-data-offset-below-5", k, dataofs=off))
    # TCP data offset past the end of the segment.
    for k, off in enumerate([6, 10, 15]):
        add("tcp-data-offset-past-end", eth / ip() / syn("tcp-data-offset-past-end", k, dataofs=off))
    # Malformed TCP options (each padded to a multiple of 4 with NOPs where needed).
    bad_options = [
        b"\x02\x00\x00\x00",  # MSS length 0
        b"\x02\x01\x00\x00",  # MSS length 1
        b"\x02\x03\x05\x01",  # MSS length 3
        b"\x02\x28\x05\xb4",  # length 40 runs past the header
        b"\x03\x04\x07\x01",  # window scale length 4
        b"\x04\x03\x00\x01",  # SACK-permitted length 3
        b"\x01\x01\x01\x08\x09\x00\x00\x00\x00\x00\x00\x00",  # timestamps length 9
        b"\x01\x01\x05\x03\x00\x00\x00\x00",  # SACK length 3
        b"\x01\x01\x01\x02",  # a kind with no length byte at the end
        b"\xfe\x00\x00\x00",  # unknown kind, length 0
        b"\xfe\xff\x00\x00",  # unknown kind, length 255
    ]
    for k, opt in enumerate(bad_options):
        t = syn("tcp-malformed-options", k)
        t.dataofs = 5 + len(opt) // 4
        add("tcp-malformed-options", eth / ip() / (t / Raw(opt)))
    # Fragments that never complete (a first one whose length is no multiple of 8, last ones
    # alone): dropped or held until their timeout, never answered.
    for k in range(5):
        add("ipv4-fragment", eth / ip(flags="MF", frag=0) / syn("ipv4-fragment", k))
        add("ipv4-fragment", eth / ip(frag=100 + k) / Raw(rng.randbytes(40)))
    # IPv6 with hostile extension chains, then a SYN to port 7.
    ip6 = lambda: IPv6(src=a.src6, dst=a.dst6)  # noqa: E731
    s6 = lambda k, cls="ipv6-long-chain": TCP(sport=CLASS_PORTS[cls] + k, dport=7, flags="S")  # noqa: E731
    # 40 Destination Options headers in a row (a "loop" of the same header).
    chain = ip6()
    for _ in range(40):
        chain = chain / IPv6ExtHdrDestOpt()
    add("ipv6-long-chain", eth / chain / s6(0))
    # 170 of them: 1.4 kB of extension headers in one frame.
    chain = ip6()
    for _ in range(170):
        chain = chain / IPv6ExtHdrDestOpt()
    add("ipv6-long-chain", eth / chain / s6(1))
    # Hop-by-Hop after another header (RFC 8200 4.1: only first).
    add("ipv6-bad-chain", eth / ip6() / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / s6(2, "ipv6-bad-chain"))
    # Hop-by-Hop repeated.
    add("ipv6-bad-chain", eth / ip6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrHopByHop() / s6(3, "ipv6-bad-chain"))
    # An extension header whose length runs past the packet.
    p = bytes(ip6() / IPv6ExtHdrDestOpt() / s6(4, "ipv6-bad-chain"))
    p = bytearray(p)
    p[41] = 255  # Hdr Ext Len: 2048 bytes
    frames.append(("ipv6-bad-chain", eth6 + bytes(p)))
    # Routing headers chained to each other 20 times.
    chain = ip6()
    for _ in range(20):
        chain = chain / IPv6ExtHdrRouting(addresses=[])
    add("ipv6-long-chain", eth / chain / s6(5))
    # Payload length past the frame, and zero payload length with a Hop-by-Hop header (no jumbo).
    p = IPv6(bytes(ip6() / s6(6, "ipv6-bad-chain")))
    p.plen = 1400
    add("ipv6-bad-chain", eth / p)
    p = IPv6(bytes(ip6() / IPv6ExtHdrHopByHop() / s6(7, "ipv6-bad-chain")))
    p.plen = 0
    add("ipv6-bad-chain", eth / p)
    # Wrong version in an IPv6 EtherType; truncated IPv6 headers.
    for v in [4, 0, 15]:
        b = bytearray(bytes(ip6() / s6(v, "ipv6-wrong-version")))
        b[0] = (v << 4) | (b[0] & 0x0F)
        frames.append(("ipv6-wrong-version", eth6 + bytes(b)))
    whole6 = bytes(ip6() / s6(9, "ipv6-truncated"))
    for n in [1, 8, 20, 39, 40, 50]:
        frames.append(("ipv6-truncated", eth6 + whole6[:n]))

    if a.pcap:
        from scapy.all import wrpcap

        wrpcap(a.pcap, [Ether(f) for _, f in frames])
        return
    s = raw_socket()
    counts = {}
    for cls, f in frames:
        counts[cls] = counts.get(cls, 0) + 1
    t0 = time.time()
    sent = send_all(s, [f for _, f in frames])
    print(json.dumps({"sent": sent, "seconds": round(time.time() - t0, 3), "classes": counts, "ports": CLASS_PORTS}))


# ------------------------------------------------------------------------------------------------
# rst


def rst(a):
    server, port = a.server, a.port
    block = random.Random(1).randbytes(1 << 20)
    want = hashlib.sha256()
    got = hashlib.sha256()
    count = [0]

    started = threading.Event()
    sn = AsyncSniffer(
        iface=IFACE,
        filter=f"tcp and host {server} and port {port}",
        store=True,
        started_callback=started.set,
    )
    sn.start()
    if not started.wait(10):
        raise SystemExit("the sniffer did not start")
    time.sleep(0.2)

    s = socket.create_connection((server, port), timeout=60)
    lport = s.getsockname()[1]

    def rd():
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            got.update(d)
            count[0] += len(d)

    t = threading.Thread(target=rd, daemon=True)
    t.start()

    def send(n):
        left = n
        while left > 0:
            b = block[: min(left, len(block))]
            s.sendall(b)
            want.update(b)
            left -= len(b)

    # Phase 1: echo, then let the connection go idle (everything echoed and acknowledged).
    send(a.first)
    deadline = time.time() + 30
    while count[0] < a.first and time.time() < deadline:
        time.sleep(0.01)
    assert count[0] == a.first, ("phase 1 echo incomplete", count[0], a.first)
    time.sleep(0.5)

    pkts = list(sn.stop() or [])
    synack = next(p for p in pkts if p[TCP].flags == "SA" and p[TCP].dport == lport)
    wscale = dict((o[0], o[1]) for o in synack[TCP].options if isinstance(o, tuple)).get("WScale", 0)
    last_srv = [p for p in pkts if p[IP].src == server and p[TCP].dport == lport][-1]
    last_cli = [p for p in pkts if p[IP].dst == server and p[TCP].sport == lport][-1]
    rcv_nxt = last_srv[TCP].ack  # the server's RCV.NXT
    snd_nxt = last_cli[TCP].ack  # what the client has acknowledged = the server's SND.NXT
    wnd = last_srv[TCP].window << wscale
    cli_mac, srv_mac = last_cli[Ether].src, last_cli[Ether].dst
    cli_ip = last_cli[IP].src

    # Offsets inside the window, never 0: small, large, the last byte of the window.
    fixed = [1, 2, 3, 100, 1000, 1460, 65535, wnd // 4, wnd // 2, wnd - 1]
    ks = [k for k in dict.fromkeys(fixed) if 0 < k < wnd]
    while len(ks) < a.rsts:
        k = random.randint(1, wnd - 1)
        if k not in ks:
            ks.append(k)
    ks = ks[: a.rsts]

    started = threading.Event()
    sn = AsyncSniffer(
        iface=IFACE,
        filter=f"tcp and src host {server} and src port {port} and dst port {lport}",
        store=True,
        started_callback=started.set,
    )
    sn.start()
    started.wait(10)
    time.sleep(0.2)

    raw = raw_socket()
    base = Ether(src=cli_mac, dst=srv_mac) / IP(src=cli_ip, dst=server)
    rst_times = []
    for i, k in enumerate(ks):
        flags = "R" if i % 2 == 0 else "RA"
        seg = TCP(sport=lport, dport=port, flags=flags, seq=(rcv_nxt + k) & 0xFFFFFFFF, ack=snd_nxt if "A" in flags else 0, window=0)
        rst_times.append(time.time())
        raw.send(bytes(base / seg))
        time.sleep(a.interval)
    time.sleep(0.7)
    syn_times = []
    for i in range(a.syns):
        k = ks[i % len(ks)]
        seg = TCP(sport=lport, dport=port, flags="S", seq=(rcv_nxt + k) & 0xFFFFFFFF, window=65535)
        syn_times.append(time.time())
        raw.send(bytes(base / seg))
        time.sleep(a.interval)
    time.sleep(0.7)
    # RFC 5961 3.2: a RST outside the window is dropped without a word (no challenge ACK).
    oow_times = []
    for i in range(a.oow):
        k = [wnd, wnd + 1, wnd + 100000, (1 << 31) - 1, (1 << 32) - 1, (1 << 32) - 1000][i % 6]
        seg = TCP(sport=lport, dport=port, flags="R", seq=(rcv_nxt + k) & 0xFFFFFFFF, window=0)
        oow_times.append(time.time())
        raw.send(bytes(base / seg))
        time.sleep(a.interval)
    time.sleep(0.7)
    answers = list(sn.stop() or [])

    def acks_between(t0, t1):
        return [
            p
            for p in answers
            if t0 <= float(p.time) <= t1 and p[TCP].flags == "A" and len(p[TCP].payload) == 0 and p[TCP].ack == rcv_nxt
        ]

    end_rst = rst_times[-1] + 0.6 if rst_times else 0
    ch_rst = acks_between(rst_times[0], end_rst) if rst_times else []
    ch_syn = acks_between(syn_times[0], syn_times[-1] + 0.6) if syn_times else []
    ch_oow = [p for p in answers if oow_times and oow_times[0] <= float(p.time) <= oow_times[-1] + 0.6]
    resets = [p for p in answers if "R" in p[TCP].flags]

    def gaps(ps):
        ts = [float(p.time) for p in ps]
        return [round(b - x, 3) for x, b in zip(ts, ts[1:])]

    # Phase 2: the connection must still carry data both ways.
    send(a.second)
    s.shutdown(socket.SHUT_WR)
    t.join(120)
    total = a.first + a.second
    ok = count[0] == total and got.hexdigest() == want.hexdigest()
    print(
        json.dumps(
            {
                "ok": ok,
                "echoed": count[0],
                "expected": total,
                "localPort": lport,
                "rcvNxt": rcv_nxt,
                "window": wnd,
                "wscale": wscale,
                "rstOffsets": ks,
                "rstsSent": len(rst_times),
                "rstSeconds": round(rst_times[-1] - rst_times[0], 3) if rst_times else 0,
                "challengeAcksForRsts": len(ch_rst),
                "challengeAckGapsRst": gaps(ch_rst),
                "synsSent": len(syn_times),
                "synSeconds": round(syn_times[-1] - syn_times[0], 3) if syn_times else 0,
                "challengeAcksForSyns": len(ch_syn),
                "challengeAckGapsSyn": gaps(ch_syn),
                "outOfWindowRstsSent": len(oow_times),
                "answersToOutOfWindowRsts": len(ch_oow),
                "serverResets": len(resets),
                "serverSegmentsSeen": len(answers),
            }
        )
    )


# ------------------------------------------------------------------------------------------------
# synflood


def synflood(a):
    rng = random.Random(a.seed)
    me = get_if_hwaddr(IFACE)
    owned = set(a.exclude.split(",")) if a.exclude else set()
    pool = [f"198.18.0.{i}" for i in range(3, 255) if f"198.18.0.{i}" not in owned]
    eth = bytes(Ether(dst=a.dst_mac, src=me, type=0x0800))
    dst = socket.inet_aton(a.dst4)
    frames = []
    srcs = set()
    # Own address: distinct random ports (each SYN a new tuple); unowned: random address and port.
    ports = rng.sample(range(1024, 65536), a.count) if a.mode == "own" and a.count <= 64512 else None
    for i in range(a.count):
        src_ip = a.src4 if a.mode == "own" else rng.choice(pool)
        srcs.add(src_ip)
        src = socket.inet_aton(src_ip)
        sport = a.first_port + i if a.first_port else ports[i] if ports else rng.randint(1024, 65535)
        # IPv4: 20 bytes; TCP: 20 + MSS option (4) = 24.
        iph = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 44, rng.getrandbits(16), 0x4000, 64, 6, 0, src, dst))
        struct.pack_into("!H", iph, 10, checksum(bytes(iph)))
        tcp = bytearray(struct.pack("!HHIIBBHHH", sport, a.port, rng.getrandbits(32), 0, 6 << 4, 0x02, 64240, 0, 0) + b"\x02\x04\x05\xb4")
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        struct.pack_into("!H", tcp, 16, checksum(pseudo + bytes(tcp)))
        frames.append(eth + bytes(iph) + bytes(tcp))
    s = raw_socket()
    t0 = time.time()
    if a.pps:
        sent = 0
        for i, f in enumerate(frames):
            ahead = i / a.pps - (time.time() - t0)
            if ahead > 0:
                time.sleep(ahead)
            sent += send_all(s, [f])
    else:
        sent = send_all(s, frames)
    dt = time.time() - t0
    print(json.dumps({"mode": a.mode, "sent": sent, "seconds": round(dt, 3), "pps": round(sent / max(dt, 1e-6)), "sources": len(srcs)}))


# ------------------------------------------------------------------------------------------------
# icmp


def icmp(a):
    server, port, v4 = a.server, a.port, a.family == 4
    L3 = IP if v4 else IPv6
    block = random.Random(2).randbytes(1 << 20)
    want = hashlib.sha256()
    got = hashlib.sha256()
    count = [0]
    s = socket.create_connection((server, port), timeout=60)
    lport = s.getsockname()[1]

    def rd():
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            got.update(d)
            count[0] += len(d)

    t = threading.Thread(target=rd, daemon=True)
    t.start()
    sent = [0]

    def send(n):
        left = n
        while left > 0:
            b = block[: min(left, len(block))]
            s.sendall(b)
            want.update(b)
            left -= len(b)
        sent[0] += n

    def settle():
        deadline = time.time() + 60
        while count[0] < sent[0] and time.time() < deadline:
            time.sleep(0.01)
        assert count[0] == sent[0], ("echo incomplete", count[0], sent[0])
        time.sleep(0.3)

    def idle_snd_nxt():
        # The connection is idle: one byte echoed while a sniffer (no loss at this rate) watches
        # gives the server's SND.NXT (= SND.UNA once acknowledged) and the frames' addresses.
        seen = []
        started = threading.Event()
        sn = AsyncSniffer(
            iface=IFACE, filter=f"tcp and host {server} and port {port}", store=False, prn=seen.append, started_callback=started.set
        )
        sn.start()
        if not started.wait(10):
            raise SystemExit("the sniffer did not start")
        time.sleep(0.2)
        send(1)
        settle()
        sn.stop()
        srv = [p for p in seen if p[TCP].sport == port and len(p[TCP].payload) > 0]
        cli = [p for p in seen if p[TCP].dport == port]
        last = srv[-1]
        return (last[TCP].seq + len(last[TCP].payload)) & 0xFFFFFFFF, cli[-1][Ether].src, cli[-1][Ether].dst, cli[-1][L3].src

    marks = [time.time()]  # phase boundaries, for the caller's capture
    mb = a.mb << 20
    send(mb)
    settle()
    snd_nxt, cli_mac, srv_mac, cli_ip = idle_snd_nxt()
    marks.append(time.time())
    raw = raw_socket()
    base = Ether(src=cli_mac, dst=srv_mac)

    def error(seq, mtu):
        quoted = bytes(L3(src=server, dst=cli_ip) / TCP(sport=port, dport=lport, seq=seq & 0xFFFFFFFF, flags="A"))
        quoted = quoted[: (20 if v4 else 40) + 8]  # RFC 792: the header and 64 bits of data
        if v4:
            return bytes(base / IP(src=cli_ip, dst=server) / ICMP(type=3, code=4, nexthopmtu=mtu) / Raw(quoted))
        return bytes(base / IPv6(src=cli_ip, dst=server) / ICMPv6PacketTooBig(mtu=mtu) / Raw(quoted))

    # Phase 2: errors quoting sequence numbers at least 2^26 away from the flight, while the
    # echo runs (a believed too-big would resend what is in flight at once).
    rng = random.Random(3)
    forged = 0
    tx = threading.Thread(target=lambda: send(mb), daemon=True)
    tx.start()
    for i in range(a.forged):
        off = rng.randint(1 << 26, (1 << 31) - (1 << 26)) * rng.choice([1, -1])
        mtu = rng.choice([68, 296, 576, 1000]) if v4 else 1280
        raw.send(error(snd_nxt + off, mtu))
        forged += 1
        time.sleep(0.002)
    tx.join(120)
    settle()
    snd_nxt, _, _, _ = idle_snd_nxt()
    marks.append(time.time())

    # Phase 3: idle; the sequence number valid (SND.NXT), the MTU one no path has.
    for _ in range(a.forged):
        raw.send(error(snd_nxt, 40 if v4 else 1000))
    time.sleep(0.3)
    send(mb)
    settle()
    snd_nxt, _, _, _ = idle_snd_nxt()
    marks.append(time.time())

    # Phase 4, the control: valid sequence number and a real MTU; the server must believe it.
    control_mtu = 600 if v4 else 1280
    raw.send(error(snd_nxt, control_mtu))
    time.sleep(0.3)
    send(mb)
    settle()
    marks.append(time.time())
    s.shutdown(socket.SHUT_WR)
    t.join(60)
    print(
        json.dumps(
            {
                "ok": count[0] == sent[0] and got.hexdigest() == want.hexdigest(),
                "echoed": count[0],
                "localPort": lport,
                "forged": forged,
                "controlMtu": control_mtu,
                "marks": marks,
            }
        )
    )


# ------------------------------------------------------------------------------------------------
# options

# (name, header, option type, destination): what RFC 8200 4.2 asks for each is in the test.
# The types are RFC 4727's experimental ones (xx?11110), which no dissector interprets.
OPTION_PROBES = [
    ("dst-00-skip", 60, 0x1E, "unicast"),
    ("dst-01-discard", 60, 0x5E, "unicast"),
    ("dst-10-param-problem", 60, 0x9E, "unicast"),
    ("dst-11-param-problem-unicast", 60, 0xDE, "unicast"),
    ("hbh-01-discard", 0, 0x7E, "unicast"),
    ("hbh-10-param-problem", 0, 0xBE, "unicast"),
    ("dst-11-multicast-silent", 60, 0xDE, "multicast"),
    ("dst-10-multicast-answered", 60, 0x9E, "multicast"),
]


def options(a):
    me = get_if_hwaddr(IFACE)
    raw = raw_socket()
    started = threading.Event()
    sn = AsyncSniffer(iface=IFACE, filter="ip6", store=True, started_callback=started.set)
    sn.start()
    if not started.wait(10):
        raise SystemExit("the sniffer did not start")
    time.sleep(0.2)
    sent = {}
    for i, (name, header, otype, dest) in enumerate(OPTION_PROBES):
        sport = 45000 + i
        if dest == "unicast":
            upper = bytes(IPv6(src=a.src6, dst=a.dst6) / TCP(sport=sport, dport=a.port, flags="S", seq=1000 + i))[40:]
            nh, dst, dst_mac = 6, a.dst6, a.dst_mac
        else:
            dst = "ff02::1"
            upper = bytes(IPv6(src=a.src6, dst=dst) / ICMPv6EchoRequest(id=sport, seq=1))[40:]
            nh, dst_mac = 58, "33:33:00:00:00:01"
        # One option of 2 data bytes, then PadN(0): an 8-byte header.
        ext = bytes([nh, 0, otype, 2, 0xAB, 0xCD, 1, 0])
        ip = IPv6(src=a.src6, dst=dst, nh=header) / Raw(ext + upper)
        frame = bytes(Ether(src=me, dst=dst_mac) / ip)
        sent[name] = {"at": time.time(), "sport": sport, "bytes": frame[14:]}
        raw.send(frame)
        time.sleep(0.3)
    time.sleep(0.5)
    pkts = sn.stop() or []
    out = {}
    for name, header, otype, dest in OPTION_PROBES:
        probe = sent[name]
        r = {"synAck": False, "paramProblem": None, "answers": 0}
        for p in pkts:
            if not p.haslayer(IPv6) or p[IPv6].dst != a.src6 or p[Ether].src == me:
                continue
            if p.haslayer(TCP) and p[TCP].dport == probe["sport"] and p[TCP].flags == "SA":
                r["synAck"] = True
                r["answers"] += 1
            # Other kernels on the link answer the multicast probes too: only the server's count.
            if p.haslayer(ICMPv6ParamProblem) and p[IPv6].src == a.dst6:
                quoted = bytes(p[ICMPv6ParamProblem].payload)
                if quoted[:48] == probe["bytes"][:48]:
                    r["paramProblem"] = {"code": p[ICMPv6ParamProblem].code, "pointer": p[ICMPv6ParamProblem].ptr, "src": p[IPv6].src}
                    r["answers"] += 1
        out[name] = r
    print(json.dumps(out))


# ------------------------------------------------------------------------------------------------
# frag6


def frag6(a):
    import signal

    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
    rx.bind((a.in_, 0))
    rx.settimeout(0.2)
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((a.out, 0))
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    in_mac = bytes.fromhex(get_if_hwaddr(a.in_).replace(":", ""))
    out_mac = bytes.fromhex(get_if_hwaddr(a.out).replace(":", ""))
    dst_mac = bytes.fromhex(a.dst_mac.replace(":", ""))
    prefix = socket.inet_pton(socket.AF_INET6, a.prefix)[:8]
    size = a.size - a.size % 8
    stats = {"packets": 0, "fragments": 0, "whole": 0}
    ident = [random.Random(4).getrandbits(32)]
    stop = [False]

    def on_term(*_):
        stop[0] = True

    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    k = 0
    while not stop[0]:
        try:
            frame, addr = rx.recvfrom(65535)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        # Only frames the router receives for itself to route (not its own output).
        if addr[2] == socket.PACKET_OUTGOING or frame[0:6] != in_mac or len(frame) < 54:
            continue
        ip = bytearray(frame[14:])
        if ip[24:32] != prefix or ip[7] <= 1:
            continue
        ip[7] -= 1  # hop limit
        plen = struct.unpack_from("!H", ip, 4)[0]
        ip = ip[: 40 + plen]
        stats["packets"] += 1
        head = bytes(ip[:40])
        nh = ip[6]
        body = bytes(ip[40:])
        eth = dst_mac + out_mac + b"\x86\xdd"
        if len(body) <= size:
            stats["whole"] += 1
            tx.send(eth + bytes(ip))
            continue
        ident[0] = (ident[0] + 1) & 0xFFFFFFFF
        pieces = []
        for at in range(0, len(body), size):
            chunk = body[at : at + size]
            more = 1 if at + size < len(body) else 0
            h = bytearray(head)
            h[6] = 44
            struct.pack_into("!H", h, 4, 8 + len(chunk))
            fh = struct.pack("!BBHI", nh, 0, at | more, ident[0])
            pieces.append(eth + bytes(h) + fh + chunk)
        k += 1
        if a.order == "reverse" or (a.order == "mixed" and k % 2 == 0):
            pieces.reverse()
        for f in pieces:
            for _ in range(1000):
                try:
                    tx.send(f)
                    break
                except OSError as e:
                    if e.errno not in (105, 11):
                        raise
                    time.sleep(0.001)
        stats["fragments"] += len(pieces)
    print(json.dumps(stats), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode_", required=True)
    g = sub.add_parser("garbage")
    g.add_argument("--dst-mac", required=True)
    g.add_argument("--dst4", required=True)
    g.add_argument("--src4", required=True)
    g.add_argument("--dst6", required=True)
    g.add_argument("--src6", required=True)
    g.add_argument("--random", type=int, default=1000)
    g.add_argument("--pcap", help="write the frames here instead of sending them")
    r = sub.add_parser("rst")
    r.add_argument("--server", required=True)
    r.add_argument("--port", type=int, default=7)
    r.add_argument("--first", type=int, default=1 << 20)
    r.add_argument("--second", type=int, default=8 << 20)
    r.add_argument("--rsts", type=int, default=20)
    r.add_argument("--syns", type=int, default=5)
    r.add_argument("--oow", type=int, default=6, help="RSTs outside the window, after the SYNs")
    r.add_argument("--interval", type=float, default=0.1)
    f = sub.add_parser("synflood")
    f.add_argument("--dst-mac", required=True)
    f.add_argument("--dst4", required=True)
    f.add_argument("--src4", required=True)
    f.add_argument("--port", type=int, default=7)
    f.add_argument("--count", type=int, default=10000)
    f.add_argument("--mode", choices=["own", "spoof"], required=True)
    f.add_argument("--exclude", default="")
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--first-port", type=int, default=0, help="source ports from here up instead of random ones")
    f.add_argument("--pps", type=float, default=0, help="pace to this many SYNs a second (default: as fast as possible)")
    i = sub.add_parser("icmp")
    i.add_argument("--server", required=True)
    i.add_argument("--port", type=int, default=7)
    i.add_argument("--family", type=int, choices=[4, 6], required=True)
    i.add_argument("--forged", type=int, default=200)
    i.add_argument("--mb", type=int, default=1)
    o = sub.add_parser("options")
    o.add_argument("--dst-mac", required=True)
    o.add_argument("--dst6", required=True)
    o.add_argument("--src6", required=True)
    o.add_argument("--port", type=int, default=7)
    r6 = sub.add_parser("frag6")
    r6.add_argument("--in", dest="in_", required=True)
    r6.add_argument("--out", required=True)
    r6.add_argument("--dst-mac", required=True)
    r6.add_argument("--prefix", required=True)
    r6.add_argument("--size", type=int, default=1232)
    r6.add_argument("--order", choices=["inorder", "reverse", "mixed"], default="mixed")
    a = p.parse_args()
    {"garbage": garbage, "rst": rst, "synflood": synflood, "icmp": icmp, "options": options, "frag6": frag6}[a.mode_](a)


if __name__ == "__main__":
    sys.exit(main())
