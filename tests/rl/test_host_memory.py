"""`retain_freed_host_memory`: memory a step frees stays in the process for the next step.

By default glibc serves these 8 MiB blocks with mmap and unmaps them on free, so the next step
faults every page in again; once retained, they come from the heap and stay mapped. Measured as
the resident set kept after the free, in a fresh process (deterministic, unlike page-fault counts,
which glibc's adaptive thresholds make depend on the history of the process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import os, sys
    import torch
    if sys.argv[1] == "retain":
        from flowsteer.rl.host_memory import retain_freed_host_memory
        assert retain_freed_host_memory()
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    before = rss()
    blocks = [torch.ones(2 << 20) for _ in range(10)]  # 80 MiB of activations
    del blocks  # the end of the backward pass
    print((rss() - before) >> 20)
    """
)


def _mib_kept_after_free(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, check=True
    )
    return int(out.stdout.split()[-1])


def test_freed_activations_stay_mapped_for_the_next_step():
    assert _mib_kept_after_free("default") < 20  # glibc gave the 80 MiB back to the kernel
    assert _mib_kept_after_free("retain") > 70
