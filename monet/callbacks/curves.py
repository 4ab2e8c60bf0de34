"""A loss-curve PNG in the run folder, drawn with PIL (no plotting library needed)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image, ImageDraw

from monet.rundir import run_dir

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


class LossCurves(L.Callback):
    """Record the logged ``train/*`` scalars and draw them, one panel each, at the end.

    They are read every `every_n_steps` steps (by default the trainer's `log_every_n_steps`,
    when the loggers read them too) and at the end of each epoch, never in between: reading a
    metric on a GPU waits for the step to finish. At most `max_points` points a series are
    kept (every other one is dropped when full), so checkpoints stay small in long runs.
    """

    def __init__(
        self, prefix: str = "train/", every_n_steps: int | None = None, max_points: int = 2000
    ) -> None:
        self.prefix, self.every_n_steps, self.max_points = prefix, every_n_steps, max_points
        self.history: dict[str, list[tuple[int, float]]] = {}

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if is_log_step(trainer, self.every_n_steps):
            self.record(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, *args) -> None:
        self.record(trainer)  # short runs get their points too

    def record(self, trainer: L.Trainer) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith(self.prefix) and value.numel() == 1:
                series = self.history.setdefault(key, [])
                if not series or series[-1][0] != trainer.global_step:
                    series.append((trainer.global_step, float(value)))
                if len(series) > self.max_points:
                    del series[1:-1:2]  # the first and the newest stay

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.history and not trainer.fast_dev_run:
            draw_curves(self.history, run_dir(trainer) / "loss_curves.png")

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = state_dict["history"]


def is_log_step(trainer: L.Trainer, every: int | None = None) -> bool:
    """Whether this training batch is one the loggers log (or every `every`-th batch): the
    batches where reading a metric costs no extra wait on a GPU. Call it in on_train_batch_end."""
    every = every or trainer.log_every_n_steps or 50
    return (trainer.fit_loop.epoch_loop._batches_that_stepped + 1) % every == 0


def draw_curves(
    history: dict[str, list[tuple[int, float]]], path: Path, panel: tuple[int, int] = (420, 220)
) -> Path:
    """One panel per series: the line, its name, and the min/max of both axes."""
    w, h = panel
    names = sorted(history)
    image = Image.new("RGB", (w, h * len(names)), "white")
    draw = ImageDraw.Draw(image)
    pad = 36
    for i, name in enumerate(names):
        points = [(s, v) for s, v in history[name] if v == v and abs(v) != float("inf")]
        top = i * h
        draw.rectangle([pad, top + 18, w - 8, top + h - pad + 10], outline="#888888")
        draw.text((pad, top + 2), name, fill="black")
        if len(points) < 2:
            continue
        steps, values = zip(*points)
        s0, s1 = min(steps), max(steps) or 1
        v0, v1 = min(values), max(values)
        span_s, span_v = (s1 - s0) or 1, (v1 - v0) or 1.0

        x_scale, y_scale = (w - pad - 8) / span_s, (h - pad - 28) / span_v
        bottom = top + h - pad + 10
        line = [(pad + (s - s0) * x_scale, bottom - (v - v0) * y_scale) for s, v in points]
        draw.line(line, fill=COLOURS[i % len(COLOURS)], width=2)
        draw.text((2, top + 18), f"{v1:.3g}", fill="black")
        draw.text((2, top + h - pad), f"{v0:.3g}", fill="black")
        draw.text((pad, top + h - pad + 12), f"step {s0}", fill="black")
        draw.text((w - 80, top + h - pad + 12), f"step {s1}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
