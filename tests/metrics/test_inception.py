"""The Inception weights: an explicit path, then the env var, then the torch hub cache; a
download into that cache; a fast failure with the fix when offline; loading the file. A
random-weights Inception file in the real format stands in for the download."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

from monet.errors import ConfigError
from monet.metrics.fid import GenerativeMetrics
from monet.metrics.inception import (
    INCEPTION_ENV,
    INCEPTION_FILENAME,
    INCEPTION_URL,
    build_inception,
    inception_cache_dir,
    resolve_inception_weights,
)


def test_explicit_path_wins_and_a_missing_one_is_an_error(weights_file, no_weights, monkeypatch):
    monkeypatch.setenv(INCEPTION_ENV, "/elsewhere/x.pth")  # not consulted when a path is given
    assert resolve_inception_weights(weights_file) == str(weights_file)
    with pytest.raises(ConfigError, match="inception_weights=/no/such.pth: no such file") as err:
        resolve_inception_weights("/no/such.pth")
    assert INCEPTION_FILENAME in str(err.value) and INCEPTION_URL in str(err.value)


def test_env_var_then_hub_cache(weights_file, no_weights, monkeypatch):
    monkeypatch.setenv(INCEPTION_ENV, str(weights_file))
    assert resolve_inception_weights() == str(weights_file)
    monkeypatch.setenv(INCEPTION_ENV, str(no_weights / "missing.pth"))
    with pytest.raises(ConfigError, match=f"{INCEPTION_ENV}=.*missing.pth: no such file"):
        resolve_inception_weights()

    monkeypatch.delenv(INCEPTION_ENV)
    cached = inception_cache_dir() / INCEPTION_FILENAME
    cached.parent.mkdir(parents=True)
    cached.symlink_to(weights_file)
    assert resolve_inception_weights() == str(cached)


def _check_offline_message(message: str, url: str) -> None:
    for needle in (INCEPTION_FILENAME, url, str(inception_cache_dir()), INCEPTION_ENV):
        assert needle in message, needle
    assert "inception_weights:" in message


@pytest.mark.parametrize(
    "url",
    [
        # .invalid never resolves (RFC 6761): the offline case of this machine, name lookup fails.
        f"https://monet-offline.invalid/{INCEPTION_FILENAME}",
        # TEST-NET-1 (RFC 5737) drops packets: a firewalled machine, the connect would hang.
        f"https://192.0.2.1/{INCEPTION_FILENAME}",
    ],
)
def test_offline_missing_weights_fail_fast_with_the_fix(no_weights, url):
    with pytest.raises(ConfigError, match="download from .* failed") as err:
        resolve_inception_weights(url=url, timeout=1.0)
    _check_offline_message(str(err.value), url)
    cache = inception_cache_dir()
    assert not cache.exists() or not list(cache.iterdir())  # no partial download left


def test_download_off_and_metrics_fail_at_construction(no_weights, monkeypatch):
    with pytest.raises(ConfigError, match="downloading is off") as err:
        resolve_inception_weights(download=False)
    _check_offline_message(str(err.value), INCEPTION_URL)
    with pytest.raises(ConfigError, match="inception_weights=nope.pth: no such file"):
        GenerativeMetrics("nope.pth", feature=64)
    monkeypatch.setenv(INCEPTION_ENV, "nope.pth")
    with pytest.raises(ConfigError, match=f"{INCEPTION_ENV}=nope.pth: no such file"):
        GenerativeMetrics(feature=64)


def test_download_goes_into_the_hub_cache(weights_file, no_weights):
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(weights_file.parent)
    )
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{INCEPTION_FILENAME}"
        path = resolve_inception_weights(url=url)
    finally:
        server.shutdown()
        server.server_close()
    assert path == str(inception_cache_dir() / INCEPTION_FILENAME)
    assert Path(path).read_bytes() == weights_file.read_bytes()
    assert resolve_inception_weights(url="https://monet-offline.invalid/x") == path  # cached now


def test_build_inception_loads_the_file_and_rejects_a_broken_one(weights_file, tmp_path):
    net = build_inception(weights_file, feature=64)
    saved = torch.load(weights_file, weights_only=True)
    w = net.state_dict()["Conv2d_1a_3x3.conv.weight"]
    assert torch.equal(w, saved["Conv2d_1a_3x3.conv.weight"])
    out = net(torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8))
    assert out.shape == (2, 64) and not any(p.requires_grad for p in net.parameters())

    broken = tmp_path / INCEPTION_FILENAME
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="could not be loaded.*download it again"):
        build_inception(broken)
    with pytest.raises(ConfigError, match="feature=100"):
        build_inception(weights_file, feature=100)
