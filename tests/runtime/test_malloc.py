"""monet.runtime.malloc: after keep_freed_memory, big buffers are reused instead of page-faulted
in."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

# Three 8 MiB blocks alive at once, written, then freed, 20 times after a warm-up (as a training
# step allocates and frees its activations); prints the minor page faults of those 20 cycles.
# glibc's own malloc and free, through ctypes: torch's CPU allocator calls the same ones, but its
# small bookkeeping blocks land between the big ones at random and blur the count.
PROBE = """
import ctypes, resource, sys
from monet.runtime.malloc import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 2**23
def step():
    blocks = [libc.malloc(size) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
for _ in range(30):
    step()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(20):
    step()
print(faults() - before)
"""


def minor_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_freed_blocks_are_reused_not_faulted_in_again():
    pages = 20 * 3 * 2**23 // 4096
    assert minor_faults("keep") < 0.01 * pages
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[always]" not in thp.read_text():  # huge pages would hide the cost
        assert minor_faults("default") > 0.3 * pages  # glibc's own: trimmed and faulted again
