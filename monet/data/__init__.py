from monet.data.augment import Augment, Erasing, FiveCrop, ResizedCrop, Rotation, augment_batch_
from monet.data.datamodule import MonetDataModule
from monet.data.sources import find_files, read_images
from monet.data.unpaired import UnpairedDataModule

__all__ = [
    "Augment",
    "Erasing",
    "FiveCrop",
    "MonetDataModule",
    "ResizedCrop",
    "Rotation",
    "UnpairedDataModule",
    "augment_batch_",
    "find_files",
    "read_images",
]
