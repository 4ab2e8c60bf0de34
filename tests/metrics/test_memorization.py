"""Memorization: near-copies of training images (upsampled, mirrored, noisy) are flagged, new
images and noise are not; 7,000 images in chunks against 300."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from support import paintings

from monet.metrics.memorization import NEAR_COPY_THRESHOLD, memorization_report


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
