"""The one network probe (monet.runtime.connectivity) that W&B and the Inception download ask: it
goes through the proxy where one is set, and costs no more than its timeout when nothing answers."""

from __future__ import annotations

import threading


def test_one_network_probe_goes_through_the_proxy(monkeypatch):
    """W&B and the Inception download ask the same probe; a cluster behind a proxy reaches the
    proxy, not the host (which it cannot resolve)."""
    import socket

    from monet.runtime.loggers import wandb_can_sync

    tried = []

    def connect(address, timeout=None):
        tried.append(address)
        return socket.socket()  # closed at once by the probe

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setenv("https_proxy", "http://proxy.cluster:3128")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert wandb_can_sync()
    assert tried == [("proxy.cluster", 3128)]


def test_the_network_probe_gives_up_after_its_timeout(monkeypatch):
    """A resolver or firewall that never answers (a connect that blocks for good) costs the
    probe's timeout, not the system's minutes: the probe returns its reason while the connect
    is still blocked."""
    import socket

    from monet.runtime.connectivity import reachable

    blocked, release = threading.Event(), threading.Event()

    def never_answers(*args, **kwargs):
        blocked.set()
        release.wait()
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", never_answers)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    try:
        reason = reachable("https://example.invalid/weights.pth", timeout=0.1)
        assert blocked.is_set() and not release.is_set()
        assert reason == "no answer from example.invalid:443 within 0.1 s"
    finally:
        release.set()
