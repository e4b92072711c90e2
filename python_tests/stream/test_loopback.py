"""The DNS-rebinding rule of the loopback servers (``zsseg camera --preview``, ``zsseg serve``):
``host_header_allowed`` answers a loopback-bound server's request only when its ``Host`` names a loopback address,
exactly (a name that merely starts with one, ``localhost.evil.example``, is the rebinding name the rule exists to
refuse), and a request without ``Host`` is refused there; a server bound elsewhere answers every ``Host``. The cases
are written out here, not derived from the rule's own table, so a weakened rule (a prefix match, a missing-Host
pass) fails them."""

from __future__ import annotations

import pytest

from zsseg_rt.outputs.loopback import host_header_allowed

ALLOWED = ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:8080", " localhost ", "[::1]", "[::1]:80", "::1"]
REFUSED = [
    None,  # no Host header at all
    "",
    "localhost.evil.example",  # starts with a loopback name: the DNS-rebinding name itself
    "localhost.evil.example:8000",
    "127.0.0.1.evil.example",
    "evil.example",
    "evil.example:8000",
    "127.0.0.2",
    "0.0.0.0",
    "[::1].evil.example",
    "localhost:8000:9000",
    "xlocalhost",
    "[::1]x",
    "localhost:abc",
]


@pytest.mark.parametrize("bound", ["127.0.0.1", "localhost", "::1"])
@pytest.mark.parametrize("host", ALLOWED)
def test_a_loopback_server_answers_loopback_names(bound, host):
    assert host_header_allowed(bound, host)


@pytest.mark.parametrize("bound", ["127.0.0.1", "localhost", "::1"])
@pytest.mark.parametrize("host", REFUSED)
def test_a_loopback_server_refuses_every_other_host_and_a_missing_one(bound, host):
    assert not host_header_allowed(bound, host)


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", None, "192.168.1.20:8000"])
def test_a_server_bound_elsewhere_answers_every_host(host):
    assert host_header_allowed("0.0.0.0", host) and host_header_allowed("192.168.1.20", host)
