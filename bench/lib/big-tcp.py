"""Sets a link's IPv4 GSO and GRO limits (BIG TCP) in the current network namespace.

Debian 12's iproute2 (6.1) predates the gso_ipv4_max_size option, so the benchmark sends
the RTM_SETLINK itself. Usage: python3 big-tcp.py IFNAME SIZE
"""
import socket
import struct
import sys

IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE = 63, 64
RTM_SETLINK, NLM_F_REQUEST, NLM_F_ACK = 19, 0x1, 0x4

name, size = sys.argv[1], int(sys.argv[2])
ifinfo = struct.pack("BxHiII", socket.AF_UNSPEC, 0, socket.if_nametoindex(name), 0, 0)
attrs = b"".join(struct.pack("HHI", 8, t, size) for t in (IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE))
body = ifinfo + attrs
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.send(struct.pack("IHHII", 16 + len(body), RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body)
err = struct.unpack("i", s.recv(4096)[16:20])[0]
if err:
    sys.exit(f"{name}: setting the GSO limit to {size} failed: {-err}")
