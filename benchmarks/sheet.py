"""A sample sheet for docs/ from the rows `quality.py --out DIR` kept (DIR/rowN.pt): the first
`--num` images of each row asked for, at the size they were compared at, interleaved in strips
of `--per-line` so that a photo stands above its translation (rows 1 2 of a translator's run)
or one EMA length above another.

    python benchmarks/sheet.py /work/runs/cut20 1 2 --to docs/cut_128_20_cpu_minutes.jpg
    python benchmarks/sheet.py /work/runs/edm60 6 --num 64 --to docs/edm_small_60_cpu_minutes.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

from monet.images import to_uint8


def sheet(rows: list[torch.Tensor], num: int, per_line: int) -> torch.Tensor:
    """(3, H, W) uint8: strips of `per_line` images, row after row, until `num` of each."""
    strips = []
    for start in range(0, num, per_line):
        strips += [row[start : min(start + per_line, num)] for row in rows]
    images = torch.cat(strips)
    return make_grid(to_uint8(images), nrow=per_line, padding=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the --out folder of a quality.py run")
    parser.add_argument("rows", nargs="+", type=int, help="row numbers (rowN.pt)")
    parser.add_argument("--num", type=int, default=16, help="images of each row")
    parser.add_argument("--per-line", type=int, default=8)
    parser.add_argument("--to", required=True, help="the image to write (.jpg or .png)")
    args = parser.parse_args()
    rows = [torch.load(Path(args.out) / f"row{i}.pt") for i in args.rows]
    num = min([args.num, *(len(r) for r in rows)])
    to_pil_image(sheet(rows, num, args.per_line)).save(args.to, quality=90)
    print(f"{args.to}: {num} images of rows {', '.join(map(str, args.rows))}")


if __name__ == "__main__":
    main()
