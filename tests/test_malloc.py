"""monet.malloc: after keep_freed_memory, big buffers are reused instead of page-faulted in."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

# 20 allocations of 64 MiB after a warm-up; prints the minor page faults they caused
PROBE = """
import resource, sys, torch
from monet.malloc import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    torch.ones(2**24)
before = faults()
for _ in range(20):
    torch.ones(2**24)
print(faults() - before)
"""


def minor_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_freed_blocks_are_reused_not_faulted_in_again():
    pages = 20 * 2**26 // 4096
    assert minor_faults("keep") < 0.01 * pages
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[always]" not in thp.read_text():  # huge pages would hide the cost
        assert minor_faults("default") > 0.5 * pages  # glibc's own: mmap, fault, unmap each time
