from monet.callbacks.checkpoint import LastCheckpoint
from monet.callbacks.config import SaveConfig
from monet.callbacks.curves import LossCurves
from monet.callbacks.export import ImageExport
from monet.callbacks.guard import NonFiniteGuard, TrainingDiverged
from monet.callbacks.metrics import EvalMetrics
from monet.callbacks.samples import SampleGrid

__all__ = [
    "EvalMetrics",
    "ImageExport",
    "LastCheckpoint",
    "LossCurves",
    "NonFiniteGuard",
    "SampleGrid",
    "SaveConfig",
    "TrainingDiverged",
]
