"""Keep freed memory in the process: the CPU counterpart of CUDA's caching allocator.

Each training step on a CPU allocates and frees the same multi-megabyte buffers (a 64-image
batch at 64 px is 3 MiB in float32). glibc's malloc serves blocks of 128 KiB and up with fresh
`mmap`s and hands them back to the kernel when freed (its adaptive threshold helps only while
the sizes repeat), so a step can page-fault its buffers in again each time: up to half the time
of the augmented data path at 64 px in `benchmarks/data.py`. PyTorch's CPU tuning guide
points at jemalloc or tcmalloc for the same reason; these two `mallopt` settings get glibc most
of the way with nothing to install.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # free memory at the top of the heap above this goes back to the kernel
M_MMAP_THRESHOLD = -3  # blocks from this size up get their own mmap, unmapped when freed
MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for it on 64-bit systems
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Have glibc serve blocks under 32 MiB from its heap and keep up to 1 GiB of it free.

    Larger blocks keep their own mmaps, returned when freed, so big activations cannot pile up
    in a fragmented heap (turning mmap off altogether made a 24 GB machine run out of memory on
    a 128 px, batch 32 U-Net step). Process-wide, one-way and idempotent; DataLoader workers
    forked later inherit it. Returns False, changing nothing, where libc is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # glibc's, already loaded in this process
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
