"""Config mistakes in one line: a YAML syntax error, an unknown class, a misspelt option.

The config files are checked before jsonargparse reads them (it reports a YAML error without
the file name, after the usage text); what it still rejects is condensed to its key and the fix.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from monet.errors import ConfigError

# where a misspelt class is looked for, beside its own module
PACKAGES = (
    "monet.nets",
    "monet.models",
    "monet.callbacks",
    "monet.data",
    "monet.runtime.loggers",
    "torch.optim",
    "lightning.pytorch.loggers",
    "lightning.pytorch.callbacks",
)


def config_paths(args: list[str]) -> Iterator[str]:
    """The files given with ``--config``/``-c`` on a command line."""
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            yield args[i + 1]
        elif arg.startswith("--config="):
            yield arg.split("=", 1)[1]


def check_config_file(path: str) -> None:
    """A missing file, a YAML syntax error or a class that does not exist, in one line."""
    if not Path(path).is_file():
        raise ConfigError(f"--config {path}: no such file.")
    try:
        config = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and start:
            problem += f" ({context} at line {start.line + 1}, column {start.column + 1})"
        raise ConfigError(f"{path}{where}: {problem}; fix the YAML syntax there.") from None
    for key, node in _classes(config):
        class_path, init_args = node["class_path"], node.get("init_args")
        cls = _import(class_path) if "." in class_path else None
        if "." in class_path and cls is None:
            raise ConfigError(f"{path}: {key}.class_path: {unknown_class(class_path)}")
        options = _options(cls) if isinstance(init_args, dict) else None
        for option in init_args if options is not None else ():
            if option not in options:
                raise ConfigError(
                    f"{path}: {key}.init_args.{option}: {unknown_option(cls, option, options)}"
                )


def _classes(node: Any, key: str = "") -> Iterator[tuple[str, dict]]:
    """Each ``{class_path: ..., init_args: ...}`` of a config, with its dotted key."""
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str):
            yield key, node
        for k, v in node.items():
            yield from _classes(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _classes(v, f"{key}[{i}]")


def _import(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def unknown_class(class_path: str) -> str:
    """'no class X; did you mean Y?' with the closest class of its module or of PACKAGES."""
    module = class_path.rpartition(".")[0]
    candidates = {}
    for package in (module, *PACKAGES):
        try:
            found = vars(importlib.import_module(package))
        except ImportError:
            continue
        for name, obj in found.items():
            if isinstance(obj, type) and not name.startswith("_"):
                candidates.setdefault(f"{package}.{name}".lower(), f"{package}.{name}")
    close = difflib.get_close_matches(class_path.lower(), candidates, n=1, cutoff=0.6)
    hint = f"did you mean {candidates[close[0]]}?" if close else "check the name and module."
    return f"there is no class {class_path}; {hint}"


def _options(cls: Any) -> list[str] | None:
    """The keyword options of a class (None when it takes any: **kwargs, or no signature)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is not p.VAR_POSITIONAL]


def unknown_option(cls: Any, option: str, options: list[str]) -> str:
    close = difflib.get_close_matches(option, options, n=1)
    hint = f"did you mean {close[0]}?" if close else f"it takes {', '.join(options)}."
    return f"{cls.__name__} has no option {option!r}; {hint}"


def one_line(message: str) -> str:
    """jsonargparse's many-line report condensed to the key, the problem and the fix."""
    option = re.search(r"Option '([^']+)' is not accepted", message)
    if option:
        head = message[: option.start()]
        class_path = re.findall(r"class_path '([^']+)'", head)
        key = _key(head, option.group(1))
        cls = _import(class_path[-1]) if class_path else None
        options = _options(cls) if cls is not None else None
        if options is not None:
            return f"{key}: {unknown_option(cls, option.group(1), options)}"
        return f"{key}: option {option.group(1)!r} is not accepted."
    for match in reversed(list(re.finditer(r"class_path '([^']+)'", message))):
        if "." in match.group(1) and _import(match.group(1)) is None:
            key = _key(message[: match.start()], "class_path")
            return f"{key}: {unknown_class(match.group(1))}"
    skip = ("Given value", "Subtypes:", "Errors:", "- Expected a <class 'NoneType'>")
    lines = [line.strip() for line in message.splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(skip))[:500]


def _key(head: str, last: str) -> str:
    """The dotted key of an error from the 'Parser key' lines that lead to it."""
    keys = re.findall(r'Parser key "([^"]+)"', head)
    return ".init_args.".join([*keys, last]).replace(".init_args.class_path", ".class_path")
