"""The one connectivity probe (TCP, not a neural network): W&B's sync and the Inception download
ask it before they try."""

from __future__ import annotations

import socket
import threading
import urllib.parse
import urllib.request


def reachable(url: str, timeout: float) -> str | None:
    """None if a TCP connection to the URL's host (or its proxy) opens within `timeout` seconds.

    Otherwise the reason. Name resolution has no timeout of its own, so the whole probe runs in a
    daemon thread: an offline machine whose resolver or firewall stays silent costs `timeout`
    seconds, not the minutes of the system defaults.
    """
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as err:
            result.append(f"cannot connect to {host}:{port} ({err})")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else f"no answer from {host}:{port} within {timeout:g} s"
