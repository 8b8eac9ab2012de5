"""Tests under tests/manifests/ never reach the network.

Every test here runs with sockets limited to loopback (name lookups of anything but localhost fail,
connections to anything but 127.0.0.1/::1 fail), and with HTTP(S) proxies pointed at a closed
loopback port so that child processes (git, multiprocessing workers) fail at once too. Code that
would download must fail fast instead, and the tests assert on how it fails.
"""

from __future__ import annotations

import socket
import urllib.request

import pytest

_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "", None}


class NetworkBlocked(OSError):
    """Raised by the guarded socket functions: a test tried to leave the machine."""


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL_NAMES:
            raise socket.gaierror(f"network disabled in curation tests (lookup of {host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    def _check(address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in _LOCAL_NAMES:
            raise NetworkBlocked(f"network disabled in curation tests (connect to {address!r})")

    def connect(self, address):
        _check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        _check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, proxy)
    for var in ("no_proxy", "NO_PROXY"):  # loopback servers in tests stay reachable without the proxy
        monkeypatch.setenv(var, "localhost,127.0.0.1,::1")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    # urllib builds its global opener (with the proxies of that moment) on first use and keeps it:
    # an opener made here must not outlive the test, or later tests inherit the dead proxy.
    monkeypatch.setattr(urllib.request, "_opener", None)
    yield
