"""FID, KID and MiFID (torchmetrics) on one shared Inception-v3, for validation during training.

The images go through the Inception once per batch; the three torchmetrics metrics receive the
features (their own `feature` network is an identity), keep their usual states and synchronise
them under DDP. Real-image features survive `reset()`, so the 300 paintings are embedded once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.image.mifid import MemorizationInformedFrechetInceptionDistance
from torchmetrics.utilities.data import dim_zero_cat

from monet.errors import ConfigError, DataError
from monet.metrics.inception import (
    FEATURE_DIMS,
    INCEPTION_OPTION,
    build_inception,
    resolve_inception_weights,
)

METRICS = ("fid", "kid", "mifid")


def sqrt_factor(sigma: Tensor) -> Tensor:
    """H (d, r) with sigma = H H^T, by `eigh` in float64; eigenvalues at rounding level dropped."""
    sigma = sigma.double()
    lam, vec = torch.linalg.eigh((sigma + sigma.T) / 2)
    tol = lam.abs().max() * len(lam) * torch.finfo(lam.dtype).eps
    if lam.min() < -1e3 * tol:
        warnings.warn(
            f"covariance has a negative eigenvalue {lam.min().item():.3g}; clamped to 0 "
            "(features may contain NaN/inf).",
            stacklevel=2,
        )
    keep = lam > tol
    return vec[:, keep] * lam[keep].sqrt()


def frechet_distance(
    mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor, factor1: Tensor | None = None
) -> Tensor:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64, never complex.

    d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))  (Heusel et al. 2017, Eq. 6).
    With S1 = H H^T (H of shape (d, r), `factor1`, by default `sqrt_factor(S1)`), the non-zero
    eigenvalues of S1 S2 are those of the symmetric PSD r x r matrix H^T S2 H. They are real and
    >= 0 up to rounding (clamped), so the trace of the square root needs no complex `sqrtm` —
    the source of the "imaginary component" error of scipy-based FID code. With r <= number of
    real images - 1 the cost is one `eigh` of S1, or none when H is known (centred features).
    """
    mu1, sigma1, mu2, sigma2 = (t.double() for t in (mu1, sigma1, mu2, sigma2))
    half = sqrt_factor(sigma1) if factor1 is None else factor1.double()  # (d, r)
    inner = half.T @ sigma2 @ half  # (r, r)
    eig = torch.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = eig.clamp_min(0).sqrt().sum()
    d2 = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return d2.clamp_min(0)  # a squared distance; rounding can leave -1e-12 for equal sets


def memorization_distance(fake: Tensor, real: Tensor) -> Tensor:
    """Mean over generated images of the cosine distance 1 - |cos| to the closest real image.

    The memorization term of MiFID as the Kaggle scorer computes it (Bai et al. 2021, "On
    Training Sample Memorization", Eq. 2): features of all-zero rows are dropped.
    torchmetrics' MiFID takes the minimum the other way round (for each real image); the
    Kaggle direction is the one that asks "is this generated image a copy?".
    """
    fake = fake[fake.sum(dim=1) != 0].double()
    real = real[real.sum(dim=1) != 0].double()
    fake = fake / fake.norm(dim=1, keepdim=True)
    real = real / real.norm(dim=1, keepdim=True)
    d = 1.0 - (fake @ real.T).abs()  # (N_fake, N_real)
    return d.min(dim=1).values.mean()


def _check_counts(name: str, n_real: int, n_fake: int) -> None:
    if n_real < 2 or n_fake < 2:
        raise DataError(
            f"{name} needs at least 2 real and 2 generated images; got {n_real} real and "
            f"{n_fake} generated. Call update(images, real=True/False) with more images."
        )


def _cat(state: Tensor | list[Tensor]) -> Tensor:
    """A list state of torchmetrics (a tensor after some DDP syncs) as one tensor."""
    if isinstance(state, Tensor):
        return state
    return dim_zero_cat(state) if len(state) else torch.zeros(0, 1)


class _Identity(nn.Module):
    """The `feature` network handed to torchmetrics: features are extracted before update()."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


class _FID(FrechetInceptionDistance):
    """torchmetrics FID computed by `frechet_distance` (float64), caching the real factor.

    The real features do not change between validations, so the one `eigh` of their covariance
    (seconds for 2048 x 2048 on a CPU) is done once; later calls cost a few matrix products.
    """

    _factor: tuple[Tensor, Tensor] | None = None  # (fingerprint of the real statistics, H)

    def compute(self) -> Tensor:
        n_real = int(self.real_features_num_samples)
        n_fake = int(self.fake_features_num_samples)
        _check_counts("FID", n_real, n_fake)
        mean_r = self.real_features_sum / n_real
        mean_f = self.fake_features_sum / n_fake
        cov_r = (self.real_features_cov_sum - n_real * torch.outer(mean_r, mean_r)) / (n_real - 1)
        cov_f = (self.fake_features_cov_sum - n_fake * torch.outer(mean_f, mean_f)) / (n_fake - 1)
        key = torch.cat([mean_r, cov_r.diagonal(), mean_r.new_tensor([n_real])])
        cached = self._factor
        if cached is None or cached[0].device != key.device or not torch.equal(cached[0], key):
            self._factor = (key, sqrt_factor(cov_r))
        return frechet_distance(mean_r, cov_r, mean_f, cov_f, factor1=self._factor[1])


class _KID(KernelInceptionDistance):
    """torchmetrics KID whose subsets are at most half the images seen, with a seeded sampler.

    The subset size is min(`max_subset_size`, n_real // 2, n_fake // 2), at least 2. KID's
    mean and std are over random subsets (Bińkowski et al. 2018); a subset as large as the set
    (300 paintings, 300 samples) is the whole set every time, and the std is always 0.
    """

    def __init__(self, max_subset_size: int, seed: int, **kwargs) -> None:
        super().__init__(subset_size=max_subset_size, **kwargs)
        self.max_subset_size = max_subset_size
        self.seed = seed

    def compute(self) -> tuple[Tensor, Tensor]:
        # Runs after the DDP sync, so the counts are the global ones.
        n_real, n_fake = len(_cat(self.real_features)), len(_cat(self.fake_features))
        _check_counts("KID", n_real, n_fake)
        self.subset_size = max(2, min(self.max_subset_size, n_real // 2, n_fake // 2))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # the same subsets every epoch and on every rank
            return super().compute()


class _MiFID(MemorizationInformedFrechetInceptionDistance):
    """torchmetrics MiFID computed like the Kaggle scorer: FID / memorization term."""

    def compute(self) -> Tensor:
        real, fake = _cat(self.real_features), _cat(self.fake_features)
        _check_counts("MiFID", len(real), len(fake))
        real, fake = real.double(), fake.double()
        centred = real - real.mean(0)  # S_real = H H^T with H = centred^T / sqrt(n - 1)
        fid = frechet_distance(
            real.mean(0),
            torch.cov(real.T),
            fake.mean(0),
            torch.cov(fake.T),
            factor1=centred.T / (len(real) - 1) ** 0.5,
        )
        d = memorization_distance(fake, real)
        # Kaggle: the penalty counts only below eps (distance_thresholding), 1 otherwise.
        d = d if d < self.cosine_distance_eps else torch.ones_like(d)
        return fid / (d + 1e-14) if fid > 1e-8 else torch.zeros_like(fid)


class GenerativeMetrics(nn.Module):
    """FID, KID and MiFID of generated vs real images, sharing one frozen Inception-v3.

    `update(images, real)` takes (B, 3, H, W) floats in [-1, 1]; `compute()` returns a dict with
    the keys of the enabled metrics: fid, kid_mean, kid_std, mifid. `reset()` clears the
    generated images only. KID averages `kid_subsets` random subsets of `kid_subset_size`
    images, or of half the smaller set if that is fewer (so `kid_std` measures a spread). The
    weights are resolved at construction (see `resolve_inception_weights`), so a missing file
    stops a run at startup.

    The Inception is kept out of `state_dict()` and `parameters()` (checkpoints stay small, DDP
    and optimizers never see it) but follows `.to(device)` (to the metric states' device, when it
    next computes); it always runs in float32.
    """

    def __init__(
        self,
        inception_weights: str | os.PathLike | None = None,
        metrics: Sequence[str] = METRICS,
        feature: int = 2048,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        mifid_cosine_eps: float = 0.1,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        metrics = tuple(metrics)
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown or not metrics:
            raise ConfigError(
                f"metrics={list(metrics)}: choose one or more of {list(METRICS)}"
                + (f" ({unknown} unknown)." if unknown else ".")
            )
        if feature not in FEATURE_DIMS:
            raise ConfigError(f"feature={feature}: must be one of {FEATURE_DIMS} (FID uses 2048).")
        if kid_subset_size < 2 or kid_subsets < 1 or batch_size < 1:
            raise ConfigError(
                f"kid_subset_size={kid_subset_size}, kid_subsets={kid_subsets}, "
                f"batch_size={batch_size}: need kid_subset_size >= 2 and the others >= 1."
            )
        self.metrics = metrics
        self.feature = feature
        self.batch_size = batch_size
        self.weights_path = resolve_inception_weights(inception_weights, option=INCEPTION_OPTION)
        # A plain attribute, not a submodule: see the class docstring.
        self.__dict__["_inception"] = build_inception(self.weights_path, feature)

        identity = _Identity(feature)
        common = {"reset_real_features": False}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            if "fid" in metrics:
                self.fid = _FID(feature=identity, **common)
            if "kid" in metrics:
                self.kid = _KID(
                    kid_subset_size, seed, feature=identity, subsets=kid_subsets, **common
                )
            if "mifid" in metrics:
                self.mifid = _MiFID(
                    feature=identity, cosine_distance_eps=mifid_cosine_eps, **common
                )

    @property
    def inception(self) -> nn.Module:
        """The shared, frozen feature extractor (uint8 images in, (B, feature) out)."""
        return self._inception

    def _metrics(self) -> list[nn.Module]:
        return [getattr(self, name) for name in self.metrics]

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Inception features (B, feature) of images in [-1, 1], in batches of `batch_size`."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"expected images of shape (B, 3, H, W); got {tuple(images.shape)}.")
        if not torch.isfinite(images).all():
            raise DataError("images contain NaN or inf; the generator may have diverged.")
        # where torchmetrics keeps the states (`.to(device)` moved them); a plain attribute,
        # the Inception follows here, and no `.half()` or bf16 cast of a model ever reaches it
        device = self._metrics()[0].device
        self._inception.to(device)  # a no-op where it is already
        out = []
        with torch.autocast(device.type, enabled=False):
            for chunk in images.split(self.batch_size):
                uint8 = ((chunk.to(device).float() + 1) * 127.5).round().clamp(0, 255)
                out.append(self._inception(uint8.to(torch.uint8)).double())
        return torch.cat(out)

    def update(self, images: Tensor, real: bool) -> None:
        """Add a batch of real or generated images (B, 3, H, W) in [-1, 1]."""
        feats = self.features(images)
        for metric in self._metrics():
            metric.update(feats.float() if metric is getattr(self, "kid", None) else feats, real)

    def compute(self) -> dict[str, float]:
        """{fid, kid_mean, kid_std, mifid} for the enabled metrics (synchronised under DDP)."""
        out: dict[str, float] = {}
        if "fid" in self.metrics:
            out["fid"] = float(self.fid.compute())
        if "kid" in self.metrics:
            mean, std = self.kid.compute()
            out["kid_mean"], out["kid_std"] = float(mean), float(std)
        if "mifid" in self.metrics:
            out["mifid"] = float(self.mifid.compute())
        return out

    def reset(self) -> None:
        """Forget the generated images; the real-image features are kept."""
        for metric in self._metrics():
            metric.reset()

    @property
    def num_real(self) -> int:
        """Real images seen so far (on this process)."""
        metric = self._metrics()[0]
        if isinstance(metric, FrechetInceptionDistance):
            return int(metric.real_features_num_samples)
        return len(_cat(metric.real_features))
