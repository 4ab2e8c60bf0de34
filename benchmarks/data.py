"""Images/s of the training data path: Monet's decode-once cache + batched augmentation against
a per-image PIL + torchvision.transforms Dataset over the JPEG folder (what the report did).

    MONET_DATA=../shared/data python benchmarks/data.py [--images 1920] [--batch-size 64]

Both pipelines flip (p=0.5), rotate (p=1, +-15 degrees) and erase (p=0.5); both end in float
(B, 3, S, S) batches in [-1, 1]. Without MONET_DATA a synthetic 300-image JPEG folder is written.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from common import data_root
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from monet.data import Augment, Erasing, MonetDataModule, Rotation
from monet.runtime.malloc import keep_freed_memory


class PILFolder(Dataset):
    """The reference: open, decode and transform one JPEG per item."""

    def __init__(self, folder: Path, size: int) -> None:
        self.files = sorted(folder.glob("*.jpg"))
        self.transform = T.Compose(
            [
                T.Resize(size),
                T.RandomHorizontalFlip(0.5),
                T.RandomRotation(15),
                T.ToTensor(),
                T.Normalize([0.5] * 3, [0.5] * 3),
                T.RandomErasing(p=0.5),
            ]
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.files[i]) as im:
            return self.transform(im.convert("RGB"))


def throughput(batches, n_images: int, rounds: int, prepare=lambda b: b) -> float:
    """Images per second over at least `n_images`, after one warm-up batch; the best of `rounds`
    (timings on a shared machine only err on the slow side, as timeit's docs argue)."""
    it = batches()
    prepare(next(it))
    rates = []
    for _ in range(rounds):
        seen, start = 0, time.perf_counter()
        while seen < n_images:
            for batch in it:
                seen += len(prepare(batch))
                if seen >= n_images:
                    break
            else:
                it = batches()
        rates.append(seen / (time.perf_counter() - start))
    return max(rates)


def reference(root: Path, size: int, workers: int, args) -> tuple[str, float]:
    loader = DataLoader(
        PILFolder(root / "monet_jpg", size),
        args.batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    rate = throughput(lambda: iter(loader), args.images, args.rounds)
    return f"reference: PIL + transforms, {workers} workers", rate


def monet(root: Path, size: int, aug: Augment, args) -> tuple[str, float]:
    dm = MonetDataModule(
        str(root), format="jpg", image_size=size, batch_size=args.batch_size, augment=aug
    )
    start = time.perf_counter()
    dm.setup("fit")
    decode = time.perf_counter() - start
    dm.trainer = SimpleNamespace(training=True, predicting=False, global_rank=0)
    loader = dm.train_dataloader()
    prepare = dm.prepare_batch
    rate = throughput(lambda: iter(loader), args.images, args.rounds, prepare)
    return f"monet: cache + batched augment (decode {decode:.1f} s once)", rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1920)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=3, help="report the best of this many")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    root = data_root(Path(tmp.name))
    aug = Augment(hflip=0.5, rotation=Rotation(p=1.0, degrees=15.0), erasing=Erasing(p=0.5))
    print(
        f"data: {root}   torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batch {args.batch_size}, best of {args.rounds} rounds of >= {args.images} images\n"
    )
    header = f"{'size':>5} | {'malloc':<13} | {'pipeline':<46} | {'images/s':>9} | {'speed-up':>8}"
    print(header + "\n" + "-" * len(header))
    # mallopt is process-wide and one-way: every row under glibc's defaults first, then all again
    # as `python -m monet` runs (monet.runtime.malloc.keep_freed_memory), the references included.
    for malloc in ("glibc default", "freed kept"):
        if malloc == "freed kept" and not keep_freed_memory():
            print("(libc is not glibc: the second half would repeat the first)")
            break
        for size in args.sizes:
            rows = [reference(root, size, workers, args) for workers in (0, 2)]
            rows.append(monet(root, size, aug, args))
            best_ref = max(r for _, r in rows[:2])
            for name, r in rows:
                print(f"{size:>5} | {malloc:<13} | {name:<46} | {r:>9.0f} | {r / best_ref:>7.1f}x")
    tmp.cleanup()


if __name__ == "__main__":
    main()
