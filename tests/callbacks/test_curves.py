"""LossCurves: metrics read only at log steps into a bounded history, and a panel per loss with
the raw and the smoothed line."""

from __future__ import annotations

import pytest
from PIL import Image


def test_loss_curves_read_metrics_only_at_log_steps_and_stay_bounded():
    from types import SimpleNamespace

    import torch

    from monet.callbacks import LossCurves

    class Metrics(dict):
        reads = 0

        def items(self):
            Metrics.reads += 1
            return super().items()

    curves = LossCurves(max_points=8)
    trainer = SimpleNamespace(
        log_every_n_steps=10,
        callback_metrics=Metrics(),
        lightning_module=SimpleNamespace(automatic_optimization=True),
    )
    for step in range(1, 201):  # batch `step` of automatic optimization: one optimizer step
        trainer.global_step = step - 1
        curves.on_train_batch_start(trainer)
        trainer.global_step = step
        trainer.callback_metrics["train/loss"] = torch.tensor(float(step))
        curves.on_train_batch_end(trainer)
    assert Metrics.reads == 20  # steps 10, 20, ..., 200: never in between
    series = curves.history["train/loss"]
    assert len(series) <= 8 and series[0] == (10, 10.0) and series[-1] == (200, 200.0)


def test_loss_curves_draw_a_panel_per_loss_with_the_raw_and_the_smoothed_line(tmp_path):
    import numpy as np

    from monet.callbacks.curves import draw_curves, smooth

    assert smooth([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])  # debiased
    history = {
        "train/loss": [(s, 1 / s + 0.1 * (s % 3)) for s in range(1, 300)],
        "train/gen_loss": [(s, float("nan") if s == 5 else s) for s in range(1, 50)],
        "train/empty": [],
    }
    image = np.asarray(Image.open(draw_curves(history, tmp_path / "c.png")).convert("L"))
    assert image.shape[0] > image.shape[1]  # three panels, stacked
    assert (image < 128).mean() > 0.01  # lines, ticks and labels, not a blank page
