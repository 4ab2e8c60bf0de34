"""The Inception-v3 FID weights: find a local file, download once, or fail at startup.

FID, KID and MiFID are only comparable with the published numbers (and the Kaggle leaderboard)
when they use the same network: the TensorFlow Inception of 2015-12-05, converted to PyTorch by
torch-fidelity. torch-fidelity and torchmetrics download it on first use, hours into a run and
with no useful message offline; `resolve_inception_weights` does the same lookup up front.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import nn

from monet.errors import ConfigError
from monet.runtime.connectivity import reachable

INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILENAME}"
)
INCEPTION_ENV = "MONET_INCEPTION_WEIGHTS"
INCEPTION_OPTION = "inception_weights"
FEATURE_DIMS = (64, 192, 768, 2048)


def inception_cache_dir() -> Path:
    """Where torch-fidelity / torchmetrics keep the weights: `torch.hub.get_dir()/checkpoints`."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _how_to_fix(option: str) -> str:
    cache = inception_cache_dir()
    return (
        f"Fix it in one of these ways: set `{option}: /path/to/{INCEPTION_FILENAME}` in the YAML "
        f"(or --{option} on the command line); or export {INCEPTION_ENV}=/path/to/"
        f"{INCEPTION_FILENAME}; or put the file in the torch hub cache as "
        f"{cache / INCEPTION_FILENAME} (on a machine with network: "
        f"`curl -L -o {cache / INCEPTION_FILENAME} {INCEPTION_URL}`, or any `python -m monet fit` "
        f"with metrics on, then copy it)."
    )


def resolve_inception_weights(
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    url: str = INCEPTION_URL,
    timeout: float = 5.0,
    option: str = INCEPTION_OPTION,
) -> str:
    """The local path of the Inception FID weights, found or downloaded now, or a ConfigError.

    Looks, in order, at: `path` (the YAML option), the environment variable
    MONET_INCEPTION_WEIGHTS, the torch hub cache (where torchmetrics would download it), and
    finally downloads `url` into that cache. A path that is given but missing is an error at once
    rather than a silent fallback. Offline, the download gives up within about `timeout` seconds.
    `option` is the option name the error message tells the user to set.
    """
    if path is not None and str(path) != "":
        if not Path(path).expanduser().is_file():
            raise ConfigError(
                f"{option}={path}: no such file. Point it at the Inception FID weights "
                f"{INCEPTION_FILENAME} (download: {INCEPTION_URL}), or remove the option to use "
                f"${INCEPTION_ENV} or the cache {inception_cache_dir()}."
            )
        return str(Path(path).expanduser())

    env = os.environ.get(INCEPTION_ENV)
    if env:
        if not Path(env).expanduser().is_file():
            raise ConfigError(
                f"{INCEPTION_ENV}={env}: no such file. Point it at the Inception FID weights "
                f"{INCEPTION_FILENAME} (download: {INCEPTION_URL}), or unset it."
            )
        return str(Path(env).expanduser())

    cached = inception_cache_dir() / INCEPTION_FILENAME
    if cached.is_file():
        return str(cached)

    missing = (
        f"The Inception FID weights {INCEPTION_FILENAME} were not found: no `{option}` option, "
        f"no ${INCEPTION_ENV}, and not in the cache {cached.parent}"
    )
    if not download:
        raise ConfigError(f"{missing}; downloading is off. {_how_to_fix(option)}")
    reason = reachable(url, timeout)
    if reason is None:
        # urlopen inside download_url_to_file has no timeout: bound each socket operation
        # (process-wide, for the seconds of this startup download only).
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(max(timeout, 30.0))
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=True)
            return str(cached)
        except Exception as err:  # any failure: the same actionable error
            reason = f"{type(err).__name__}: {err}"
        finally:
            socket.setdefaulttimeout(previous)
    raise ConfigError(
        f"{missing}, and the download from {url} failed: {reason}. {_how_to_fix(option)}"
    )


def build_inception(weights: str | os.PathLike, feature: int = 2048) -> nn.Module:
    """The frozen FID Inception-v3 (torchmetrics' NoTrainInceptionV3) loaded from a local file.

    Never touches the network. Takes uint8 images (B, 3, H, W), resizes them to 299 px
    (antialiased bilinear) and returns (B, feature) pool features.
    """
    from torchmetrics.image.fid import NoTrainInceptionV3

    if feature not in FEATURE_DIMS:
        raise ConfigError(f"Inception feature={feature}: must be one of {FEATURE_DIMS}.")
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise ConfigError(
            f"Inception weights {weights}: no such file. {_how_to_fix(INCEPTION_OPTION)}"
        )
    try:
        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(feature)],
            feature_extractor_weights_path=str(weights),
        )
    except Exception as err:  # a corrupt file or another network
        raise ConfigError(
            f"Inception weights {weights} could not be loaded ({type(err).__name__}: "
            f"{str(err)[:300]}). Expected torch-fidelity's {INCEPTION_FILENAME}; delete the file "
            f"and download it again from {INCEPTION_URL}."
        ) from err
    return net.requires_grad_(False).eval()
