"""Weights & Biases that works on a laptop, a cluster node without internet, and in CI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from monet.runtime.compat import drop_wandb_anonymous
from monet.runtime.connectivity import reachable


def wandb_can_sync(host: str = "api.wandb.ai", timeout: float = 2.0) -> bool:
    """True when W&B has an API key and its server answers; otherwise runs go offline."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return False
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and host in netrc.read_text(errors="ignore")
    )
    if not has_key:
        return False
    return reachable(f"https://{host}", timeout) is None  # through a proxy where one is set


class WandbLogger(_WandbLogger):
    """Lightning's WandbLogger, offline by itself with no API key or no network.

    Offline runs are written under `save_dir/wandb/`; at the end the logger prints the
    `wandb sync` command that uploads them later.
    """

    def __init__(
        self,
        project: str = "monet",
        name: str | None = None,
        save_dir: str = "runs",
        tags: list[str] | None = None,
        log_model: bool | str = False,
        offline: bool | None = None,
        **kwargs: Any,
    ) -> None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        self._auto_offline = not wandb_can_sync() if offline is None else offline
        super().__init__(
            project=project,
            name=name,
            save_dir=save_dir,
            tags=tags,
            log_model=log_model,
            offline=self._auto_offline,
            **kwargs,
        )
        drop_wandb_anonymous(self)

    def finalize(self, status: str) -> None:
        super().finalize(status)
        import wandb  # (slow to import: only at the end of a run)

        run = wandb.run  # this logger's run, when it started one (W&B's one run per process)
        if self._auto_offline and run is not None:
            run_dir = Path(run.dir).parent
            rank_zero_info(f"W&B ran offline; upload this run with: wandb sync {run_dir}")
