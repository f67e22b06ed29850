"""One control group per sandbox run, so memory and process limits hold for the whole program.

RLIMIT_AS and RLIMIT_NPROC are per process (per uid): a program that forks six children can
use six times ``memory_mb``. A cgroup counts every process of the run together. This module
creates one per run, under the caller's own cgroup (so limits set above still apply), with
``memory`` set to the run's ``memory_mb`` and ``pids`` to its process cap; the sandbox joins it
before anything of the program starts (a tiny ``/bin/sh`` writes itself into ``cgroup.procs``
and then execs the rest), and after the run every process left in it is killed and the group
is removed, also after a timeout. Groups left by a crashed caller (its pid in the name is dead)
are swept on first use.

Both layouts are supported: cgroup v1 (one hierarchy per controller, e.g.
``/sys/fs/cgroup/memory``; ``memory.limit_in_bytes``, ``pids.max``) and v2 (one unified
hierarchy; ``memory.max``, ``pids.max``, where the caller's cgroup delegates those controllers
to its children). It needs write access to the hierarchy, in practice root; where that is
missing `cgroup_layout` returns None and the sandbox falls back to per-process rlimits.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import time
from dataclasses import dataclass
from typing import Literal

_PREFIX = "flowsteer-sandbox-"


@dataclass(frozen=True)
class CgroupLayout:
    """Where this process can create per-run cgroups.

    Attributes:
        version: 1 (a hierarchy per controller) or 2 (the unified hierarchy).
        memory_base: Directory under which a run's memory cgroup is created.
        pids_base: Directory for the run's pids cgroup (v1), or None (v2: same as memory, or
            no pids controller).
    """

    version: Literal[1, 2]
    memory_base: str
    pids_base: str | None


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of each cgroup mount."""
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            left, _, right = line.partition(" - ")
            fstype, _, options = right.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((left.split()[4], fstype, set(options.split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and "" -> its v2 path."""
    paths = {}
    with open("/proc/self/cgroup") as own:
        for line in own:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _writable_dir(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)


def _v2_delegates(base: str) -> bool:
    """Whether children of ``base`` get the memory controller (enabling it where allowed)."""
    try:
        with open(os.path.join(base, "cgroup.subtree_control")) as control:
            enabled = set(control.read().split())
        if "memory" not in enabled:
            with open(os.path.join(base, "cgroup.controllers")) as available:
                offered = set(available.read().split()) & {"memory", "pids"}
            if "memory" not in offered:
                return False
            with open(os.path.join(base, "cgroup.subtree_control"), "w") as control:
                control.write(" ".join(f"+{name}" for name in sorted(offered)))
        return True
    except OSError:  # e.g. EBUSY: a non-root cgroup with processes in it cannot delegate
        return False


@functools.cache
def cgroup_layout() -> CgroupLayout | None:
    """Detect, once, whether per-run cgroups can be made here, and sweep stale ones.

    Returns:
        The layout to use, or None when no writable memory controller is available.
    """
    try:
        mounts, own = _mounts(), _own_paths()
    except (OSError, ValueError):
        return None
    layout = None
    v1 = {opt: point for point, fstype, opts in mounts if fstype == "cgroup" for opt in opts}
    if "memory" in v1 and "memory" in own:
        memory = os.path.normpath(v1["memory"] + own["memory"])
        pids = (
            os.path.normpath(v1["pids"] + own["pids"]) if "pids" in v1 and "pids" in own else None
        )
        if _writable_dir(memory):
            layout = CgroupLayout(1, memory, pids if pids and _writable_dir(pids) else None)
    if layout is None:
        unified = [point for point, fstype, _ in mounts if fstype == "cgroup2"]
        if unified and "" in own:
            base = os.path.normpath(unified[0] + own[""])
            if _writable_dir(base) and _v2_delegates(base):
                layout = CgroupLayout(2, base, None)
    if layout is not None:
        _sweep(layout)
    return layout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _sweep(layout: CgroupLayout) -> None:
    """Remove groups whose creating process is gone (a caller killed mid-run)."""
    for base in filter(None, (layout.memory_base, layout.pids_base)):
        with contextlib.suppress(OSError):
            for entry in os.scandir(base):
                owner = entry.name[len(_PREFIX) :].split("-")[0]
                if entry.name.startswith(_PREFIX) and owner.isdigit() and not _alive(int(owner)):
                    _empty_and_remove(entry.path)


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _empty_and_remove(path: str) -> None:
    """Kill every process in a group, then remove it (retrying while they exit)."""
    for _ in range(500):
        try:
            pids = [int(pid) for pid in _read(os.path.join(path, "cgroup.procs")).split()]
        except OSError:
            return  # already gone
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.002)


class RunCgroup:
    """The cgroups of one run: create, hand their ``cgroup.procs`` to the child, clean up.

    Args:
        layout: Where to create them (from `cgroup_layout`).
        memory_bytes: Limit on the memory of all the run's processes together.
        processes: Limit on the number of processes (and threads) the run has at once.
    """

    def __init__(self, layout: CgroupLayout, memory_bytes: int, processes: int) -> None:
        self.layout = layout
        name = f"{_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        self.paths: list[str] = []
        try:
            memory = os.path.join(layout.memory_base, name)
            os.mkdir(memory)
            self.paths.append(memory)
            if layout.version == 1:
                _write(os.path.join(memory, "memory.limit_in_bytes"), str(memory_bytes))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    _write(os.path.join(memory, "memory.memsw.limit_in_bytes"), str(memory_bytes))
                if layout.pids_base is not None:
                    pids = os.path.join(layout.pids_base, name)
                    os.mkdir(pids)
                    self.paths.append(pids)
                    _write(os.path.join(pids, "pids.max"), str(processes))
            else:
                _write(os.path.join(memory, "memory.max"), str(memory_bytes))
                with contextlib.suppress(OSError):
                    _write(os.path.join(memory, "memory.swap.max"), "0")
                with contextlib.suppress(OSError):
                    _write(os.path.join(memory, "pids.max"), str(processes))
        except BaseException:
            self.remove()
            raise

    @property
    def procs_files(self) -> list[str]:
        """The files a process writes its pid into to join the run's groups."""
        return [os.path.join(path, "cgroup.procs") for path in self.paths]

    def join_prefix(self) -> list[str]:
        """A command prefix that joins the groups, then execs the rest of the command line."""
        script = 'echo $$ > "$1" || exit 125; shift; ' * len(self.paths) + 'exec "$@"'
        return ["/bin/sh", "-c", script, "sh", *self.procs_files]

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the run for passing the memory limit."""
        name = "memory.oom_control" if self.layout.version == 1 else "memory.events"
        try:
            text = _read(os.path.join(self.paths[0], name))
        except (OSError, IndexError):
            return False
        for line in text.splitlines():
            key, _, count = line.partition(" ")
            if key == "oom_kill" and count.strip() not in ("", "0"):
                return True
        return False

    def remove(self) -> None:
        """Kill whatever is left in the groups and remove them."""
        for path in self.paths:
            if self.layout.version == 2 and os.path.exists(os.path.join(path, "cgroup.kill")):
                with contextlib.suppress(OSError):
                    _write(os.path.join(path, "cgroup.kill"), "1")
            _empty_and_remove(path)
        self.paths = []


def leftover_groups() -> list[str]:
    """This process's run groups that still exist (for tests: there should be none)."""
    layout = cgroup_layout()
    if layout is None:
        return []
    mine = f"{_PREFIX}{os.getpid()}-"
    found = []
    for base in filter(None, (layout.memory_base, layout.pids_base)):
        with contextlib.suppress(OSError):
            found += [e.path for e in os.scandir(base) if e.name.startswith(mine)]
    return found
