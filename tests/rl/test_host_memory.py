"""`retain_freed_host_memory`: a step that frees and reallocates its activations faults no pages."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Ten 8 MiB blocks alive at once (activations), all freed (end of backward), three rounds: the
# page faults of the third round, in a fresh process.
PROBE = textwrap.dedent(
    """
    import resource, sys
    import torch
    if sys.argv[1] == "retain":
        from flowsteer.rl.host_memory import retain_freed_host_memory
        assert retain_freed_host_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        before = faults()
        blocks = [torch.ones(2 << 20) for _ in range(10)]
        del blocks
    print(faults() - before)
    """
)


def _third_round_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, check=True
    )
    return int(out.stdout.split()[-1])


def test_freed_activations_are_reused_without_page_faults():
    pages = 10 * (8 << 20) // 4096  # what one round touches
    assert _third_round_faults("default") > pages // 2  # glibc gives the memory back
    assert _third_round_faults("retain") < pages // 20
