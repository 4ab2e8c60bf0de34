"""Fixtures: one thread for tiny networks, a Kaggle-layout data folder, the real data where
MONET_DATA points at it, a random-weights Inception file, and a machine without weights. The
helpers they build on are in support.py."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch
from support import RandomInception, make_kaggle_dir

from monet.metrics.inception import INCEPTION_ENV, INCEPTION_FILENAME, inception_cache_dir


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test`: a worker per core) each worker, and every process it
    starts (DDP ranks, `python -m monet`, benchmarks), computes on one thread: OpenMP threads
    that share cores with the other workers spin instead of working."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest tests first (slow end-to-end runs, then other slow tests), so that the xdist
    workers share them and the last minutes are not one long run beside an idle worker; the
    order within each group stays."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("slow") is None,
            "end_to_end" not in item.path.parts,
        )
    )


@pytest.fixture
def one_thread():
    """These networks are tiny: threads gain nothing, and OpenMP threads on cores that another
    job is using make them 10-20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def kaggle_dir(tmp_path: Path) -> Path:
    return make_kaggle_dir(tmp_path / "data")


@pytest.fixture
def shared_data() -> Path:
    """The real Kaggle data, where MONET_DATA points at it."""
    root = os.environ.get("MONET_DATA")
    if not root or not (Path(root) / "monet_tfrec").is_dir():
        pytest.skip("set MONET_DATA to the Kaggle data folder to run this test")
    return Path(root)


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    """A random-weights Inception file with the real name, keys and shapes (95 MB)."""
    torch.manual_seed(0)
    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    net = RandomInception("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
    path = tmp_path_factory.mktemp("weights") / INCEPTION_FILENAME
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def no_weights(tmp_path, monkeypatch) -> Path:
    """No option, no env var, no proxy, an empty torch hub cache; returns TORCH_HOME."""
    for var in (INCEPTION_ENV, "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # undo any torch.hub.set_dir of the process
    assert inception_cache_dir() == tmp_path / "torch" / "hub" / "checkpoints"
    return tmp_path / "torch"
