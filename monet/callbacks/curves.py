"""A loss-curve PNG in the run folder, drawn with matplotlib."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from monet.runtime.rundir import run_dir


class LossCurves(L.Callback):
    """Record the logged ``train/*`` scalars and draw them, one panel each, at the end.

    They are read at the batches the loggers log (or every `every_n_steps`-th) and at the end
    of each epoch, never in between: reading a metric on a GPU waits for the step to finish. At
    most `max_points` points a series are kept (every other one is dropped when full), so
    checkpoints stay small in long runs. Each panel shows the raw values faintly and their
    exponential moving average (weight `smoothing`, debiased as TensorBoard does) over them.
    """

    def __init__(
        self,
        prefix: str = "train/",
        every_n_steps: int | None = None,
        max_points: int = 2000,
        smoothing: float = 0.9,
    ) -> None:
        self.prefix, self.every_n_steps, self.max_points = prefix, every_n_steps, max_points
        self.smoothing = smoothing
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._log_step = False

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        self._log_step = is_log_step(trainer, self.every_n_steps)

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if self._log_step:
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
            draw_curves(self.history, run_dir(trainer) / "loss_curves.png", self.smoothing)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = state_dict["history"]


def is_log_step(trainer: L.Trainer, every: int | None = None) -> bool:
    """Whether the loggers log this training batch (or it is every `every`-th): the batches
    where reading a metric costs no extra wait on a GPU. Lightning counts the batches that
    stepped an optimizer: the optimizer steps in automatic optimization (one optimizer), every
    batch in manual optimization. Call it in on_train_batch_start, before this batch's step."""
    every = every or trainer.log_every_n_steps or 50
    automatic = trainer.lightning_module.automatic_optimization
    stepped = trainer.global_step if automatic else trainer.fit_loop.total_batch_idx
    return (stepped + 1) % every == 0


def smooth(values: list[float], weight: float) -> list[float]:
    """The exponential moving average of `values`, debiased (its first value is the first's)."""
    out, average = [], 0.0
    for n, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**n))
    return out


def draw_curves(
    history: dict[str, list[tuple[int, float]]], path: Path, smoothing: float = 0.9
) -> Path:
    """One panel per series, the step on the x axis: the values faintly, their average boldly."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global state

    names = sorted(history)
    fig = Figure(figsize=(6, 2.2 * len(names)), layout="constrained")
    for i, (ax, name) in enumerate(zip(fig.subplots(len(names), 1, squeeze=False)[:, 0], names)):
        points = [(s, v) for s, v in history[name] if v == v and abs(v) != float("inf")]
        steps, values = zip(*points) if points else ((), ())
        colour = f"C{i}"
        ax.plot(steps, values, color=colour, alpha=0.25, linewidth=1)
        ax.plot(steps, smooth(list(values), smoothing), color=colour, linewidth=1.8)
        ax.set(title=name, xlabel="step")
        ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
