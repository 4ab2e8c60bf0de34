"""FID, KID and MiFID (GenerativeMetrics) against direct computations (scipy, the KID estimator,
the Kaggle scorer) on the features of a random-weights Inception in the real format."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch
from support import paintings
from torchmetrics.image.fid import _compute_fid

from monet.errors import ConfigError, DataError
from monet.metrics.fid import GenerativeMetrics, frechet_distance, memorization_distance


def metrics(weights_file, **kwargs) -> GenerativeMetrics:
    kwargs.setdefault("feature", 64)  # the first Inception block: fast on a CPU
    return GenerativeMetrics(str(weights_file), **kwargs)


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

    gm.update(other, real=True)  # more real images: the cached factor of the old set is stale
    assert gm.num_real == 10
    both = torch.cat([gm.features(real), gm.features(other)]).numpy()
    direct = _fid_scipy(both, gm.features(other).numpy())
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
