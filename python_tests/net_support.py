"""What a process listens on, read from the kernel (Linux /proc), not probed through ports that other processes of a
test run may hold (issue 91: a refusal expected at 127.0.0.1:PORT, because the server listened on 127.0.0.2:PORT,
came from another xdist worker's server holding 127.0.0.1:PORT)."""

from __future__ import annotations

import os
import re
import socket
from typing import Set, Tuple

__all__ = ["listening_addresses"]

_LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp


def _address(hex_address: str) -> Tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # the kernel prints each 32-bit word of the address in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port, 16)


def listening_addresses(pid: int) -> Set[Tuple[str, int]]:
    """(host, port) of every TCP socket process ``pid`` listens on (IPv4 and IPv6)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        found = re.fullmatch(r"socket:\[(\d+)\]", target)
        if found:
            inodes.add(found.group(1))
    addresses = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}", encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == _LISTEN and fields[9] in inodes:
                addresses.add(_address(fields[1]))
    return addresses
