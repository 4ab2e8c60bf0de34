"""Every shipped config resolves to the values it had before the shared settings moved into the
CLI (`RUN_CALLBACKS`, `RUN_DEFAULTS` in monet/cli/main.py): the model, the data, the trainer,
the seed and each callback's init args. The fixture was written from the configs as they were, by
the `resolve` below run on that code (callbacks then listed under `trainer.callbacks`). Recipe
changes made on purpose since are listed in CHANGED, each with the measurement behind it."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import pytest
from support import CONFIGS

from monet.cli import main as monet_cli
from monet.errors import ConfigError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "configs_resolved_before_issue24.json"
BEFORE = json.loads(FIXTURE.read_text())

# Each callback a config listed under `trainer.callbacks`, and the key it has now
CALLBACK_KEYS = {
    "monet.callbacks.NonFiniteGuard": "guard",
    "monet.callbacks.LastCheckpoint": "checkpoint",
    "lightning.pytorch.callbacks.ModelCheckpoint": "best",
    "monet.callbacks.EvalMetrics": "metrics",
    "monet.callbacks.SampleGrid": "samples",
    "monet.callbacks.LossCurves": "loss_curves",
    "lightning.pytorch.callbacks.LearningRateMonitor": "lr_monitor",
}
# Top-level options that are now a callback's own key: (key then, (group now, key now))
RENAMED = {"inception": ("metrics", "inception")}
# Classes that moved with the package layout: path now -> path then
MOVED = {"monet.runtime.loggers.WandbLogger": "monet.loggers.WandbLogger"}
# Recipe changes made on purpose since, each measured (README): config -> {dotted key: value}
CHANGED = {
    "edm_small": {  # the EMA length that won a 60 CPU-minute run, the old one kept beside it
        "model.init_args.ema.half_life": 20000.0,
        "model.init_args.ema.lengths": [2500.0, 5000.0, 10000.0],
    },
    "fastcut_128": {"model.init_args.optimizer.init_args.lr": 4e-4},  # measured at 20 CPU-min
}


def with_changes(before: dict, stem: str) -> dict:
    """The fixture's values for `stem`, with the deliberate changes listed in CHANGED."""
    before = copy.deepcopy(before)
    for dotted, value in CHANGED.get(stem, {}).items():
        *path, last = dotted.split(".")
        node = before
        for key in path:
            node = node[key]
        assert last in node, f"{stem}: {dotted} is not a key of the fixture"
        node[last] = value
    return before


def resolve(config: Path, *extra: str) -> dict:
    """The config as parsed (defaults and links applied), nothing built; plain JSON types."""
    cli_class = monet_cli.MonetCLI
    original = cli_class.instantiate_classes
    cli_class.instantiate_classes = lambda self: None
    try:
        cli = monet_cli.cli_main(["--config", str(config), *extra], run=False)
    finally:
        cli_class.instantiate_classes = original
    resolved = cli.config.as_dict()
    resolved.pop("config")  # the files given
    return json.loads(json.dumps(resolved))


def test_the_fixture_covers_every_shipped_config():
    assert sorted(BEFORE) == [c.stem for c in CONFIGS]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_resolves_to_its_values_from_before(config):
    before, now = with_changes(BEFORE[config.stem], config.stem), resolve(config)
    for part in ("seed_everything", "model", "data"):
        assert now[part] == before[part], part
    trainer = dict(now["trainer"])
    assert trainer.pop("callbacks") is None  # every callback a shipped config has is a key now
    logger = trainer["logger"]
    logger["class_path"] = MOVED.get(logger["class_path"], logger["class_path"])
    assert trainer == before["trainer"]
    for key, value in before["rest"].items():
        group, renamed = RENAMED.get(key, (None, key))
        assert (now[group] if group else now)[renamed] == value, key
    # the same callbacks, in the same order, each with the same init args
    keys = [CALLBACK_KEYS[c["class_path"]] for c in before["callbacks"]]
    assert keys == list(monet_cli.RUN_CALLBACKS)
    for callback, key in zip(before["callbacks"], keys):
        module, name = callback["class_path"].rsplit(".", 1)
        assert monet_cli.RUN_CALLBACKS[key] is getattr(importlib.import_module(module), name)
        assert now[key] == callback["init_args"], key


def test_training_time_samples_follow_the_model_unless_the_grid_says_otherwise():
    """One key for the steps of grids and metric samples; null (the default) is the model's."""
    ddpm_small = next(c for c in CONFIGS if c.stem == "ddpm_small")
    now = resolve(ddpm_small, "--model.init_args.sampling_steps", "4")
    assert now["samples"]["sampling_steps"] is None and now["metrics"]["sampling_steps"] is None
    now = resolve(ddpm_small, "--samples.sampling_steps", "3")
    assert now["samples"]["sampling_steps"] == now["metrics"]["sampling_steps"] == 3


def test_the_best_checkpoint_is_judged_when_the_metrics_run():
    now = resolve(CONFIGS[0], "--metrics.every_n_epochs", "20", "--metrics.inception", "false")
    assert now["best"]["every_n_epochs"] == 20
    assert now["metrics"]["inception"] is False


def test_a_config_from_before_that_lists_the_run_callbacks_is_refused_in_one_line(tmp_path):
    """They would run twice (two guards, two metric passes); the error says where they go."""
    old = tmp_path / "old.yaml"
    old.write_text(
        "trainer:\n  callbacks:\n"
        "    - class_path: lightning.pytorch.callbacks.LearningRateMonitor\n"  # others may stay
        "    - class_path: monet.callbacks.EvalMetrics\n      init_args: {every_n_epochs: 50}\n"
        "model: {class_path: monet.models.GAN, init_args: {generator: "
        "{class_path: monet.nets.WGANGenerator}, critic: {class_path: monet.nets.WGANCritic}}}\n"
        "data: {root: data}\n"
    )
    with pytest.raises(ConfigError) as err:
        resolve(old)
    message = str(err.value)
    assert "\n" not in message and "monet.callbacks.EvalMetrics" in message
    assert "`metrics`" in message and "--metrics.<arg>" in message
