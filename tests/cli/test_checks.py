"""Config mistakes in one line (monet.cli.checks): a YAML syntax error names the file, line and
column; a misspelt class or option names its key and the closest name, in a config file or
on the command line."""

from __future__ import annotations

import re

import pytest
from support import ROOT, one_line_error


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path, capsys, monkeypatch):
    broken = tmp_path / "mine.yaml"
    broken.write_text("model:\n  class_path: monet.models.GAN\n  init_args:\n    loss: [wgan\n")
    line = one_line_error(["fit", "--config", str(broken)], capsys, monkeypatch)
    assert line.startswith(f"monet: error: {broken}, line 5, column 1: expected ','")
    assert line.endswith("flow sequence at line 4, column 11); fix the YAML syntax there.")


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "monet.nets.WGANGenerator",
            "monet.nets.WganGenerator",
            r"model.init_args.generator.class_path: there is no class monet.nets.WganGenerator; "
            r"did you mean monet.nets.WGANGenerator\?",
        ),
        ("    n_critic: 5", "    n_critc: 5", "model.init_args.n_critc: GAN has no option "),
    ],
)
def test_a_misspelt_class_or_key_names_the_key_and_the_closest_name(
    old, new, message, tmp_path, capsys, monkeypatch
):
    text = (ROOT / "configs/wgan_gp.yaml").read_text()
    assert old in text
    mine = tmp_path / "mine.yaml"
    mine.write_text(text.replace(old, new))
    line = one_line_error(["fit", "--config", str(mine)], capsys, monkeypatch)
    assert re.fullmatch(rf"monet: error: {re.escape(str(mine))}: {message}.*", line)
    if "n_critc" in new:
        assert line.endswith("did you mean n_critic?")


@pytest.mark.parametrize(
    "arg, value, message",
    [
        (
            "--model.init_args.generator.class_path",
            "monet.nets.ResNetGenerator",
            "model.init_args.generator.class_path: there is no class monet.nets.ResNetGenerator; "
            "did you mean monet.nets.ResnetGenerator?",
        ),
        (
            "--model.init_args.gp_weigth",
            "3",
            "model.init_args.gp_weigth: GAN has no option 'gp_weigth'; did you mean gp_weight?",
        ),
    ],
)
def test_a_misspelt_class_or_key_on_the_command_line(arg, value, message, capsys, monkeypatch):
    config = str(ROOT / "configs/wgan_gp.yaml")
    line = one_line_error(["fit", "--config", config, arg, value], capsys, monkeypatch)
    assert line == f"monet: error: {message}"
