"""The DNS-rebinding rule of the HTTP servers zsseg runs on this machine's loopback address: the camera's preview
(``zsseg camera --preview``) and ``zsseg serve``.

A browser page of another site can re-point its own host name at 127.0.0.1 (DNS rebinding) and then read what a
loopback server answers; its requests carry that foreign name in ``Host``. So a server bound to a loopback address
answers only requests addressed to a loopback name. A server bound to another interface (``--host 0.0.0.0``, a LAN
address) cannot know the names it is reached by, and answers every ``Host``.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["LOOPBACK_HOSTS", "host_header_allowed"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_header_allowed(bound_host: str, host_header: Optional[str]) -> bool:
    """Whether a request with ``Host: host_header`` may be answered by a server listening on ``bound_host``: always
    when that is not a loopback address; else only a loopback name (``127.0.0.1:8000``, ``localhost``, ``[::1]:80``).
    A missing ``Host`` is refused on loopback (every browser sends one)."""
    if bound_host not in LOOPBACK_HOSTS:
        return True
    host = (host_header or "").strip().lower()
    if host.startswith("["):  # [::1] or [::1]:8080; anything else after the bracket ([::1].evil.example) is refused
        name, _, rest = host[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
    elif host.count(":") == 1:  # name:port
        name, port = host.split(":")
        if not port.isdigit():
            return False
    else:
        name = host
    return name in LOOPBACK_HOSTS
