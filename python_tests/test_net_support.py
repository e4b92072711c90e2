"""net_support.listening_addresses reads what a process listens on from the kernel: the sockets of this process on
two interfaces are listed with their own addresses, a closed one is not, and another process's are not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from net_support import listening_addresses


def test_this_processes_listening_sockets_are_listed_with_their_interfaces():
    with socket.socket() as two, socket.socket() as every, socket.socket(socket.AF_INET6) as six:
        two.bind(("127.0.0.2", 0))
        two.listen()
        every.bind(("0.0.0.0", 0))
        every.listen()
        six.bind(("::1", 0))
        six.listen()
        found = listening_addresses(os.getpid())
        assert ("127.0.0.2", two.getsockname()[1]) in found
        assert ("0.0.0.0", every.getsockname()[1]) in found
        assert ("::1", six.getsockname()[1]) in found
        port = two.getsockname()[1]
    assert ("127.0.0.2", port) not in listening_addresses(os.getpid())  # closed: gone


def test_another_processes_sockets_are_not_this_ones():
    code = "import socket, sys; s = socket.socket(); s.bind(('127.0.0.3', 0)); s.listen(); print(s.getsockname()[1]); sys.stdout.flush(); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        assert ("127.0.0.3", port) in listening_addresses(child.pid)
        assert ("127.0.0.3", port) not in listening_addresses(os.getpid())
    finally:
        child.stdin.close()
        child.wait(timeout=30)
