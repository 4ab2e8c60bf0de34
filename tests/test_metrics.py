"""Metrics: Inception weights resolution, FID / KID / MiFID against direct computations, SWD,
memorization. A random-weights Inception file in the real format stands in for the download."""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torchmetrics.image.fid import _compute_fid

from monet.errors import ConfigError, DataError
from monet.metrics.fid import GenerativeMetrics, frechet_distance, memorization_distance
from monet.metrics.inception import (
    INCEPTION_ENV,
    INCEPTION_FILENAME,
    INCEPTION_URL,
    build_inception,
    inception_cache_dir,
    resolve_inception_weights,
)
from monet.metrics.memorization import NEAR_COPY_THRESHOLD, memorization_report
from monet.metrics.swd import laplacian_pyramid, sliced_wasserstein_distance

# --------------------------------------------------------------------------- fixtures


def metrics(weights_file, **kwargs) -> GenerativeMetrics:
    kwargs.setdefault("feature", 64)  # the first Inception block: fast on a CPU
    return GenerativeMetrics(str(weights_file), **kwargs)


def paintings(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """n images in [-1, 1]: real Monet paintings where MONET_DATA is set, else structured ones."""
    root = os.environ.get("MONET_DATA")
    if root and (Path(root) / "monet_jpg").is_dir():
        from torchvision.io import decode_jpeg, read_file

        files = sorted((Path(root) / "monet_jpg").glob("*.jpg"))[seed : seed + n]
        x = torch.stack([decode_jpeg(read_file(str(f))) for f in files]).float() / 127.5 - 1
        return F.interpolate(x, size=size, mode="area")
    g = torch.Generator().manual_seed(seed)
    # Smooth colour fields plus oriented strokes: low and mid frequencies, like paintings.
    base = F.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=size, mode="bicubic")
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    angle = torch.rand(n, 1, 1, 1, generator=g) * 3.1416
    freq = 0.3 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    strokes = torch.sin(freq * (xx * angle.cos() + yy * angle.sin()))
    return (0.7 * base + 0.3 * strokes * torch.rand(n, 3, 1, 1, generator=g)).clamp(-1, 1)


# --------------------------------------------------------------------------- weights resolution


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


# --------------------------------------------------------------------------- FID / KID / MiFID


def _fid_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook computation (pytorch-fid): scipy's sqrtm, real part."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n1, n2", [(200, 150), (6, 9)])  # full-rank and rank-deficient
def test_frechet_distance_matches_scipy_and_torchmetrics(n1, n2):
    g = torch.Generator().manual_seed(n1)
    a = torch.randn(n1, 12, generator=g, dtype=torch.float64)
    mix = torch.randn(12, 12, generator=g, dtype=torch.float64)
    b = torch.randn(n2, 12, generator=g, dtype=torch.float64) @ mix
    b = b * 0.3 + 0.5
    args = (a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))
    ours = frechet_distance(*args)
    assert ours.dtype == torch.float64 and not ours.is_complex()
    assert ours.item() == pytest.approx(_compute_fid(*args).item(), rel=1e-7)
    assert ours.item() == pytest.approx(_fid_scipy(a.numpy(), b.numpy()), rel=1e-5)
    assert frechet_distance(args[0], args[1], args[0], args[1]).item() == pytest.approx(0, abs=1e-9)


def test_fid_kid_mifid_against_direct_computation(weights_file):
    gm = metrics(weights_file, kid_subsets=5)
    real, fake = paintings(6, 32, seed=0), paintings(5, 32, seed=10) * 0.5
    gm.update(real, real=True)
    gm.update(fake, real=False)
    got = gm.compute()

    fr, ff = gm.features(real).numpy(), gm.features(fake).numpy()
    assert got["fid"] == pytest.approx(_fid_scipy(fr, ff), rel=1e-4)
    assert got["fid"] > 1e-6
    # KID: subsets of half the smaller set, 5 // 2 = 2 images of each.
    assert gm.kid.subset_size == 2

    def k(x, y):
        return (x @ y.T / x.shape[1] + 1) ** 3

    mmd = []  # unbiased MMD^2 over every pair of 2-subsets, the KID estimator
    for x, y in itertools.product(itertools.combinations(fr, 2), itertools.combinations(ff, 2)):
        x, y = np.stack(x), np.stack(y)
        kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
        m = 2
        mmd.append(
            (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.sum() / m**2
        )
    assert min(mmd) - 1e-6 <= got["kid_mean"] <= max(mmd) + 1e-6
    assert got["kid_std"] >= 0
    # MiFID as the Kaggle scorer: FID / mean over fakes of min cosine distance to the reals.
    fn = ff / np.linalg.norm(ff, axis=1, keepdims=True)
    rn = fr / np.linalg.norm(fr, axis=1, keepdims=True)
    d = (1 - np.abs(fn @ rn.T)).min(axis=1).mean()
    d = d if d < 0.1 else 1.0
    assert got["mifid"] == pytest.approx(_fid_scipy(fr, ff) / (d + 1e-14), rel=1e-4)
    assert memorization_distance(torch.from_numpy(ff), torch.from_numpy(fr)) == pytest.approx(
        (1 - np.abs(fn @ rn.T)).min(axis=1).mean()
    )


def test_kid_subsets_are_at_most_half_the_images_so_the_std_is_a_spread(weights_file):
    # Subsets as large as the set are the whole set every time: kid_std was always 0.
    gm = metrics(weights_file, metrics=("kid",))
    g = torch.Generator().manual_seed(0)
    gm.kid.update(torch.randn(40, 64, generator=g), real=True)
    gm.kid.update(torch.randn(40, 64, generator=g) + 0.5, real=False)
    got = gm.compute()
    assert gm.kid.subset_size == 20
    assert got["kid_mean"] > 0 and got["kid_std"] > 0.01 * got["kid_mean"]
    capped = metrics(weights_file, metrics=("kid",), kid_subset_size=8)
    capped.kid.update(torch.randn(40, 64, generator=g), real=True)
    capped.kid.update(torch.randn(30, 64, generator=g), real=False)
    capped.compute()
    assert capped.kid.subset_size == 8


def test_a_set_against_itself_and_real_features_kept_across_reset(weights_file):
    gm = metrics(weights_file, kid_subset_size=3, kid_subsets=4)
    real = paintings(6, 32)
    gm.update(real, real=True)
    gm.update(real, real=False)
    same = gm.compute()
    assert same["fid"] == pytest.approx(0, abs=1e-9)
    assert abs(same["kid_mean"]) < 1e-3 and np.isfinite(same["kid_std"])
    assert same["mifid"] == 0  # FID below 1e-8: the Kaggle scorer's 0

    gm.reset()
    assert gm.num_real == 6 and int(gm.fid.fake_features_num_samples) == 0
    other = paintings(4, 32, seed=20)
    gm.update(other, real=False)
    after = gm.compute()
    fresh = metrics(weights_file, kid_subset_size=3, kid_subsets=4)
    fresh.update(real, real=True)
    fresh.update(other, real=False)
    assert after == pytest.approx(fresh.compute(), rel=1e-6)  # seeded KID: same subsets
    assert after["fid"] > 1e-6 and np.isfinite(after["mifid"]) and after["mifid"] > 0

    gm.reset_real()  # a new real set: the cached factor of the old one must not be used
    assert gm.num_real == 0
    gm.update(other, real=True)
    gm.update(real, real=False)
    direct = _fid_scipy(gm.features(other).numpy(), gm.features(real).numpy())
    assert gm.compute()["fid"] == pytest.approx(direct, rel=1e-4)


def test_too_few_images_and_bad_options(weights_file):
    gm = metrics(weights_file, metrics=("fid", "kid"))
    gm.update(paintings(3, 32), real=True)
    gm.update(paintings(1, 32), real=False)
    with pytest.raises(DataError, match="at least 2 real and 2 generated.*3 real and 1"):
        gm.compute()
    with pytest.raises(DataError, match="NaN"):
        gm.update(torch.full((2, 3, 32, 32), float("nan")), real=False)
    with pytest.raises(ConfigError, match="'is'"):
        metrics(weights_file, metrics=("fid", "is"))
    with pytest.raises(ConfigError, match="feature=100"):
        metrics(weights_file, feature=100)


def test_inception_stays_out_of_checkpoints_and_float32(weights_file):
    gm = metrics(weights_file, metrics=("fid",))
    assert gm.state_dict() == {} and list(gm.parameters()) == []
    model = torch.nn.Module()
    model.metrics = gm
    model.half()  # a 16-true precision cast must not round the Inception weights
    assert all(p.dtype == torch.float32 for p in gm.inception.parameters())
    gm.update(paintings(3, 32), real=True)
    gm.update(paintings(3, 32, seed=5), real=False)
    assert np.isfinite(gm.compute()["fid"])


# --------------------------------------------------------------------------- SWD


def test_laplacian_pyramid_reconstructs_the_image():
    x = paintings(2, 64)
    levels = laplacian_pyramid(x, 3)
    assert [lv.shape[-1] for lv in levels] == [64, 32, 16]
    from monet.metrics.swd import _up

    rebuilt = levels[-1]
    for band in reversed(levels[:-1]):
        rebuilt = band + _up(rebuilt, band.shape[-2:])
    assert torch.allclose(rebuilt, x, atol=1e-5)


def test_swd_orders_real_vs_real_below_real_vs_noise():
    real = paintings(32, 64)
    a, b = real[:16], real[16:]
    noise = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    kw = {"patches_per_image": 32, "directions": 64, "repeats": 1}
    rr = sliced_wasserstein_distance(a, b, **kw)
    rn = sliced_wasserstein_distance(a, noise, **kw)
    assert rr.resolutions == [64, 32, 16] and len(rr.per_level) == 3
    assert rr.mean < rn.mean and rr.per_level[0] < rn.per_level[0]
    assert rr.mean == pytest.approx(sum(rr.per_level) / 3)
    assert sliced_wasserstein_distance(a, b, **kw) == rr  # deterministic for a seed
    assert sliced_wasserstein_distance(a, b, seed=1, **kw) != rr
    assert set(rr.to_dict()) == {"swd_64", "swd_32", "swd_16", "swd_mean"}


def test_swd_with_reference_statistics_sees_a_colour_cast():
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(24, 3, 32, 32, generator=gen) for _ in range(2))
    cast = b * 0.5 + torch.tensor([0.4, 0.1, -0.3])[:, None, None]  # darker, tinted
    kw = {"patches_per_image": 32, "directions": 32, "repeats": 1}
    same = sliced_wasserstein_distance(a, b, normalise="reference", **kw).mean
    per_set = sliced_wasserstein_distance(a, cast, **kw).mean
    reference = sliced_wasserstein_distance(a, cast, normalise="reference", **kw).mean
    assert per_set < 2 * same  # ProGAN's per-set scaling hides the cast
    assert reference > 10 * same


def test_swd_rejects_mismatched_or_tiny_images():
    with pytest.raises(DataError, match="same image size"):
        sliced_wasserstein_distance(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 64, 64))
    with pytest.raises(DataError, match="smaller than min_resolution"):
        sliced_wasserstein_distance(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))


# --------------------------------------------------------------------------- memorization


def test_memorization_flags_copies_not_noise_or_new_images():
    training = paintings(40, 64)
    copy = F.interpolate(training[3:4], size=256, mode="bicubic").clamp(-1, 1)  # upsampled
    mirrored = training[7:8].flip(-1) * 0.9 + 0.05  # mirrored, contrast changed
    noisy = (training[11:12] + 0.1 * torch.randn(1, 3, 64, 64)).clamp(-1, 1)
    generated = torch.cat(
        [F.interpolate(t, size=64, mode="area") for t in (copy,)]
        + [mirrored, noisy, torch.rand(4, 3, 64, 64) * 2 - 1, paintings(4, 64, seed=200)]
    )
    report = memorization_report(generated, training.split(16))  # training as batches
    assert report.near_copies.tolist() == [0, 1, 2]
    assert report.nearest[:3].tolist() == [3, 7, 11]
    assert report.mirrored[:3].tolist() == [False, True, False]
    assert (report.distances[3:] > NEAR_COPY_THRESHOLD).all()
    d = json.loads(json.dumps(report.to_dict()))
    assert d["near_copies"] == 3 and d["num_generated"] == 11 and d["num_training"] == 40
    assert len(d["per_image"]["distance"]) == 11
    assert "3 near-copies" in report.summary()


def test_memorization_of_7000_images_in_chunks_against_300():
    g = torch.Generator().manual_seed(0)
    training = torch.rand(300, 3, 64, 64, generator=g) * 2 - 1
    base = torch.rand(500, 3, 64, 64, generator=g) * 2 - 1
    report = memorization_report((base for _ in range(14)), training)
    assert len(report.distances) == 7000 and report.near_copy_share == 0


def test_grid_share_finds_a_periodic_dot_pattern():
    from monet.metrics.spectrum import grid_share

    gen = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(16, 3, 8, 8, generator=gen), size=64, mode="bicubic")
    dots = smooth.clone()
    dots[:, :, ::4, ::4] -= 0.3  # a dark dot every 4 px
    clean = grid_share(smooth)
    assert clean < 0.01
    assert grid_share(dots) > 10 * clean
    assert grid_share(dots, period=8) > grid_share(smooth, period=8)  # 4-px dots are on 8's grid


def test_the_network_probe_gives_up_after_its_timeout(monkeypatch):
    """A resolver or firewall that never answers (a connect that blocks for good) costs the
    probe's timeout, not the system's minutes: the probe returns its reason while the connect
    is still blocked."""
    import socket

    from monet.connectivity import reachable

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
