#!/usr/bin/env python3
"""Times route installation in several network namespaces from kernel events.

Usage: route_watch.py N NS:PROTO [NS:PROTO ...]

With ROUTE_WATCH_FAMILIES=46 in the environment, IPv6 routes count too (a dual-stack
node's N routes are its IPv4 and its IPv6 ones together); 4 (the default) is IPv4 only.

Opens an rtnetlink socket subscribed to IPv4 route events in each namespace (with a
64 MiB receive buffer, so a burst of 10,000 routes loses nothing), prints "ready", then
follows RTM_NEWROUTE/RTM_DELROUTE of the given protocol in the main table and, for each
namespace, prints "NS FIRST LAST" once it holds N such routes: the wall-clock times
(seconds since the epoch) of its first and of its N-th installed route, to about a
millisecond (each namespace has its own reader process, draining every millisecond). Polling
`ip route show` instead costs a full dump per look and measures in steps of tens of
milliseconds; the kernel's own events time each side to the route.
"""

import ctypes
import os
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
WITH_V6 = "6" in os.environ.get("ROUTE_WATCH_FAMILIES", "4")
FAMILIES = (socket.AF_INET, socket.AF_INET6) if WITH_V6 else (socket.AF_INET,)
SO_RCVBUFFORCE = 33
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTA_DST = 1
RT_TABLE_MAIN = 254
PROTOCOLS = {"bird": 12, "boot": 3, "static": 4, "kernel": 2}

libc = ctypes.CDLL("libc.so.6", use_errno=True)


def socket_in(ns):
    """An rtnetlink route-event socket created inside namespace `ns`."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        s.bind((0, RTMGRP_IPV4_ROUTE | (RTMGRP_IPV6_ROUTE if WITH_V6 else 0)))
        return s
    finally:
        libc.setns(home, CLONE_NEWNET)
        os.close(home)
        os.close(target)


def routes(data, proto):
    """(added, dst) for each route message of protocol `proto` in the main table."""
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            family, dst_len, _, _, table, protocol = struct.unpack_from("=BBBBBB", data, off + 16)
            if protocol == proto and table == RT_TABLE_MAIN and family in FAMILIES:
                dst = None
                a = off + 16 + 12
                while a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atype == RTA_DST:
                        dst = (data[a + 4 : a + alen], dst_len)
                    a += (alen + 3) & ~3
                yield kind == RTM_NEWROUTE, dst
        off += (length + 3) & ~3


def follow(n, side):
    """Reads one namespace's route events until it holds `n` routes; prints its line.

    Each namespace is followed by a process of its own, timed at the read of each
    event: one reader for both would time the second namespace late by however long
    the first one's events took to parse. Sockets are drained every millisecond rather
    than woken per event, which would cost the CPU the measured agents need.
    """
    s, have, first = side["socket"], set(), None
    deadline = time.time() + 120
    while len(have) < n:
        if time.time() > deadline:
            sys.exit(f"route_watch.py: {side['ns']}: not all routes arrived in 120 s")
        while len(have) < n:
            try:
                data = s.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            now = time.time()
            for added, dst in routes(data, side["proto"]):
                if added:
                    have.add(dst)
                    first = first or now
                else:
                    have.discard(dst)
        else:
            break
        time.sleep(0.001)
    print(side["ns"], f"{first:.6f}", f"{now:.6f}", flush=True)


def main():
    n = int(sys.argv[1])
    sides = []
    for arg in sys.argv[2:]:
        ns, proto = arg.rsplit(":", 1)
        proto = PROTOCOLS.get(proto) or int(proto)
        sides.append({"ns": ns, "proto": proto, "socket": socket_in(ns)})
    # Every socket is subscribed before "ready": nothing after it is missed.
    children = []
    for side in sides:
        pid = os.fork()
        if pid == 0:
            try:
                follow(n, side)
            finally:
                os._exit(0)
        children.append(pid)
    print("ready", flush=True)
    failed = 0
    for pid in children:
        failed |= os.waitpid(pid, 0)[1]
    sys.exit(1 if failed else 0)

if __name__ == "__main__":
    main()
