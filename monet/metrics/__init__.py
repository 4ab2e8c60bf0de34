"""Metrics. FID/KID/MiFID (monet.metrics.fid) import torchmetrics' image stack: import them
where they are used, not here, so `import monet` stays quick."""

from monet.metrics.diversity import diversity
from monet.metrics.memorization import MemorizationReport, memorization_report
from monet.metrics.swd import SWDResult, sliced_wasserstein_distance

__all__ = [
    "MemorizationReport",
    "SWDResult",
    "diversity",
    "memorization_report",
    "sliced_wasserstein_distance",
]
