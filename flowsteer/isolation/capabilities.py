"""What isolation this platform allows the sandbox, detected once per process.

`flowsteer.isolation.sandbox` documents what each mode enforces; this module only finds the strongest
one that works here (by actually starting a probe interpreter under each candidate prefix) and
builds the command prefixes and the child environment the runs use.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SandboxMode = Literal["namespace+uid", "uid", "namespace", "process"]

UID_RANGE = (1 << 20, 1 << 30)

# New user, network, PID, mount (for the private /proc), IPC and UTS namespaces; the program
# runs under a forked PID 1 that the sandbox runner provides, and dies with unshare.
NS_PREFIX = ["unshare", "-Unpiu", "--fork", "--kill-child", "--mount-proc", "--"]
# The same, with the sandbox uid mapped to itself and the namespace's capabilities kept across
# exec, so the runner (PID 1) can mount private tmpfs over /tmp, /var/tmp and /dev/shm; it drops
# every capability before the program starts.
PRIVATE_TMP_NS_PREFIX = [*NS_PREFIX[:2], "--map-current-user", "--keep-caps", *NS_PREFIX[2:]]

# The child program (`flowsteer.isolation.runner`) and the root stage that may come before it
# (`flowsteer.isolation.bind_stage`), run from source: they may be unable to read the package.
RUNNER_SOURCE = Path(__file__).with_name("runner.py").read_text()
BIND_STAGE_SOURCE = Path(__file__).with_name("bind_stage.py").read_text()

log = logging.getLogger("flowsteer.isolation.sandbox")


@dataclass(frozen=True)
class SandboxCapabilities:
    """What this platform lets the sandbox enforce, detected once per process.

    Attributes:
        mode: Which isolation is active; the module docstring says what each enforces.
        interpreter: The Python executable the child runs (one the sandbox uid can read).
        drop_uid: Whether the child runs as a fresh unprivileged uid.
        namespaces: Whether the child gets its own user, network, PID and mount namespaces.
        notes: Why a stronger mode was not available, or what the sandbox cannot offer
            (e.g. site-packages it cannot read even when bound in), for logs.
        site_paths: The parent's site-packages directories the child can read; they are put
            on the child's ``sys.path`` so numpy, sympy etc. import inside the sandbox.
        private_tmp: Whether each run gets its own empty /tmp, /var/tmp and /dev/shm (tmpfs
            in its mount namespace; ``"namespace+uid"`` where mounting works).
        bind_paths: Import directories behind a parent the sandbox uid cannot search (a venv
            in a 0700 home, or the interpreter's own installation there): each run binds them
            read-only at their paths into a mount namespace of its own first (`bind_prefix`).
    """

    mode: SandboxMode
    interpreter: str
    drop_uid: bool
    namespaces: bool
    notes: tuple[str, ...] = ()
    site_paths: tuple[str, ...] = ()
    private_tmp: bool = False
    bind_paths: tuple[str, ...] = ()


# Prints the installation the child sees and which of the directories in argv it can read.
_PROBE = (
    "import sys, json, math, decimal, socket, os\n"
    "readable = [p for p in sys.argv[1:] if os.access(p, os.R_OK | os.X_OK)]\n"
    "print(json.dumps([sys.base_prefix, list(sys.version_info[:2]), readable]))"
)


# Mounts a tmpfs over /tmp the way the runner does, as the sandbox uid in its namespaces.
_MOUNT_PROBE = (
    "import ctypes, json\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "print(json.dumps(libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 6, b'size=1m,mode=1777') == 0))"
)


def _probe(
    prefix: list[str], interpreter: str, code: str = _PROBE, paths: tuple[str, ...] | None = None
) -> Any:
    """Run `code` under `prefix`; its JSON output, or None when it failed. `paths` (default
    `site_paths()`) are the directories `_PROBE` checks."""
    try:
        done = subprocess.run(
            [*prefix, interpreter, "-I", "-S", "-B", "-c", code, *(paths or site_paths())],
            capture_output=True,
            timeout=20,
            env=child_env(tempfile.gettempdir()),
            cwd="/",
        )
        return json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _candidates() -> list[str]:
    minor = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    found = [sys.executable, os.path.realpath(sys.executable)]
    found += [f"{d}/{minor}" for d in ("/usr/bin", "/usr/local/bin", "/bin")]
    which = shutil.which(minor)
    if which:
        found.append(which)
    unique = []
    for path in found:
        if path and path not in unique and os.access(path, os.X_OK):
            unique.append(path)
    return unique


def bind_prefix(interpreter: str, paths: tuple[str, ...] | list[str]) -> list[str]:
    """A command prefix that, as root, binds `paths` read-only into a new mount namespace and
    masks the rest of their private parents, then execs the rest of the command line
    (`flowsteer.isolation.bind_stage`); empty when there is nothing to bind."""
    if not paths:
        return []
    return [interpreter, "-I", "-S", "-B", "-c", BIND_STAGE_SOURCE, *paths, "--"]


def _behind_private_parent(path: str) -> bool:
    """Whether a directory above `path` denies strangers search (o+x), as the sandbox uid is
    one (the bind stage masks the topmost such directory by the same rule)."""
    parts = path.split(os.sep)
    try:
        return any(
            not os.stat(os.sep.join(parts[:end])).st_mode & 0o001 for end in range(2, len(parts))
        )
    except OSError:
        return False


def _hidden_installation(interpreter: str, base_prefix: str) -> list[str]:
    """The interpreter's installation, if it lies behind a private parent (e.g. pyenv in a 0700
    home); the bind stage can show it to the sandbox uid only if it holds the executable."""
    real, base = os.path.realpath(interpreter), os.path.realpath(base_prefix)
    if real.startswith(base + os.sep) and _behind_private_parent(base):
        return [base]
    return []


def uid_prefix(uid: int) -> list[str]:
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--no-new-privs",
        "--",
    ]


@functools.cache
def sandbox_capabilities() -> SandboxCapabilities:
    """Detect, once, the strongest isolation this platform allows (see the module docstring).

    Returns:
        The capabilities every later run uses.
    """
    notes: list[str] = []
    want = list(sys.version_info[:2])
    candidates = _candidates()
    have_unshare = shutil.which("unshare") is not None
    if os.geteuid() == 0 and shutil.which("setpriv"):
        uid = secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0]
        as_root = {path: _probe([], path) for path in candidates}  # [base_prefix, version, _]
        for with_ns in (True, False) if have_unshare else (False,):
            prefix = uid_prefix(uid) + (NS_PREFIX if with_ns else [])
            # An interpreter the sandbox uid reaches as it is first; one whose installation
            # must be bound in (pyenv in a 0700 home, no system Python of this version) next.
            for bind_installation in (False, True):
                for interpreter in candidates:
                    installed = as_root[interpreter]
                    if installed is None or installed[1] != want:
                        continue
                    binds = _hidden_installation(interpreter, installed[0])
                    if bool(binds) != bind_installation:
                        continue
                    # The sandbox uid must see the same installation root does: a symlink into
                    # a 0700 home silently falls back to another stdlib.
                    seen = _probe(bind_prefix(interpreter, binds) + prefix, interpreter)
                    if seen is not None and seen[:2] == installed[:2]:
                        mode: SandboxMode = "namespace+uid" if with_ns else "uid"
                        return _uid_capabilities(
                            mode, interpreter, uid, with_ns, binds, seen[2], notes
                        )
            notes.append(
                f"{'namespaces' if with_ns else 'uid drop'}: no Python {want} readable by an "
                f"unprivileged uid among {candidates}"
            )
    elif os.geteuid() == 0:
        notes.append("setpriv not found: cannot drop to an unprivileged uid")
    else:
        notes.append("not root: cannot drop to an unprivileged uid")
    if have_unshare and _probe(NS_PREFIX, sys.executable) is not None:
        return SandboxCapabilities(
            "namespace", sys.executable, False, True, tuple(notes), site_paths()
        )
    notes.append("user namespaces unavailable (unshare missing or not permitted)")
    return SandboxCapabilities("process", sys.executable, False, False, tuple(notes), site_paths())


def _uid_capabilities(
    mode: SandboxMode,
    interpreter: str,
    uid: int,
    with_ns: bool,
    binds: list[str],
    readable: list[str],
    notes: list[str],
) -> SandboxCapabilities:
    """The capabilities of a uid-drop mode, once an interpreter works: bind in what
    site-packages the sandbox uid cannot reach, and see whether a private /tmp mounts."""
    prefix = uid_prefix(uid) + (NS_PREFIX if with_ns else [])
    hidden = [p for p in site_paths() if p not in readable]
    if hidden:
        # Bound and imported at their real paths: a symlink on the way (a venv's lib64 -> lib)
        # would lead into the empty mask.
        real = tuple(dict.fromkeys(map(os.path.realpath, hidden)))
        seen = _probe(bind_prefix(interpreter, [*binds, *real]) + prefix, interpreter, paths=real)
        fixed = [p for p in real if seen is not None and p in seen[2]]
        if fixed:  # bind only what that made readable; a private directory itself stays out
            # A real path in the open (a symlink in the home led out) needs no bind at all.
            binds = [*binds, *filter(_behind_private_parent, fixed)]
            readable = list(dict.fromkeys([*readable, *fixed]))
            hidden = [p for p in hidden if os.path.realpath(p) not in fixed]
            if binds:
                log.info("sandbox: binding %s read-only into each run (private parent)", binds)
    if hidden:
        notes.append(
            f"site-packages not readable by the sandbox uid (a parent directory is private, "
            f"e.g. a 0700 home) and binding them into the run failed: {hidden}; sandboxed "
            "programs can import only the standard library and what is installed elsewhere"
        )
        log.warning("sandbox: %s", notes[-1])
    mounted = with_ns and _probe(
        bind_prefix(interpreter, binds) + uid_prefix(uid) + PRIVATE_TMP_NS_PREFIX,
        interpreter,
        _MOUNT_PROBE,
    )
    private_tmp = mounted is True  # the probe prints JSON true
    if with_ns and not private_tmp:
        notes.append("cannot mount a private /tmp in the namespaces: shared")
    return SandboxCapabilities(
        mode, interpreter, True, with_ns, tuple(notes), tuple(readable), private_tmp,
        tuple(binds),
    )  # fmt: skip


def child_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


@functools.cache
def site_paths() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    unique = dict.fromkeys(p for p in (paths["purelib"], paths["platlib"]) if os.path.isdir(p))
    return tuple(unique)
