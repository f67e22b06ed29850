"""Run untrusted, model-written Python in an isolated child process.

The Programmer and Test operators and the code rewards execute Python that a model wrote; it is
hostile until proven otherwise. `run_python` runs it in a fresh interpreter and returns a
`SandboxResult`; `run_python_async` does the same from asyncio (many runs in flight).

What a run gets, in every mode:

* its own interpreter (`python -I -S -B`: no user site, no PYTHON* variables, no `site` import;
  the parent's site-packages directories are put on `sys.path` so numpy/sympy still import),
  started without a shell, in a new session and process group;
* a wall-clock timeout after which the whole process group is SIGKILLed (status "timeout");
* rlimits, per process: CPU seconds (timeout + 1), address space (`memory_mb`; exhaustion shows
  as MemoryError, status "memory"), processes (`max_processes`), file size (64 MiB), open files
  (256), no core dumps;
* where a cgroup can be made (root, cgroup v1 ``memory``/``pids`` or v2 with those controllers
  delegated; `flowsteer.isolation.cgroup`): one cgroup per run that limits the WHOLE program,
  all its processes together, to `memory_mb` (the kernel OOM-kills inside it; status
  "memory") and to `max_processes` + 3 processes and threads. The run joins it before anything
  of the program starts, and everything left in it is killed and the group removed after the
  run, also after a timeout. Without cgroups the documented fallback is the per-process
  rlimits: at most `memory_mb` x the process cap in total;
* an output cap: stdout and stderr are read as they come and the run is killed once together
  they pass `max_output_bytes` (status "killed", output truncated, a note on stderr);
* a fresh temporary working directory (also HOME and TMPDIR), removed afterwards;
* an environment built from scratch (PATH, LANG, HOME, TMPDIR, single-threaded BLAS): nothing
  from `os.environ` reaches the child, so no API keys.

What the detected mode adds (see `sandbox_capabilities`):

* ``"namespace+uid"`` (running as root, `setpriv` and unprivileged user namespaces work): the
  child drops to a random unprivileged uid/gid with no supplementary groups and no-new-privs
  (`setpriv`), then enters new user, network, PID, mount, IPC and UTS namespaces
  (`unshare -Unpiu --fork --kill-child --mount-proc`). Files of other users that are not
  world-readable/writable are out of reach (so the trainer's files and the test's sentinels),
  the network is a down loopback only, `/proc` shows only the sandbox's processes, every
  process it starts dies with it (PID namespace), System V IPC objects (shared memory,
  semaphores, message queues) die with the run and are invisible to other runs (IPC
  namespace), the hostname is its own (UTS), and RLIMIT_NPROC counts only its own uid. The
  namespace's PID 1 is the sandbox runner: it sets the rlimits before it forks the program
  (so PID 1 has them too) and is non-dumpable, so the program cannot ptrace it or read its
  memory.
* ``"uid"`` (root, no user namespaces): the uid drop as above, but the network is reachable
  and `/proc` shows the host; leftover processes are found by uid and killed after the run.
* ``"namespace"`` (not root, user namespaces work): network and PID isolation as above, but
  the code runs as the calling user and can read and write whatever that user can;
  RLIMIT_NPROC counts all of that user's processes, so the limit is raised by their current
  number.
* ``"process"`` (neither): only the guarantees of every mode. The code can read and write the
  user's files and use the network; processes that leave the process group can survive.

Shared surfaces, and which are closed:

* /tmp, /var/tmp and /dev/shm: in ``"namespace+uid"`` (where the platform lets the namespace
  mount; `SandboxCapabilities.private_tmp`) each run gets its own empty tmpfs there (size
  `memory_mb`, counted in its memory cgroup), so nothing it writes outlives it or reaches
  another run or the host, and the host's files and unix sockets there are invisible; the
  run's working directory and the directories it imports from (site-packages, a checkout or
  venv that lives under /tmp) are bound back at their paths. PID 1 mounts them with the
  namespace's capabilities and then clears all its capabilities (bounding set included)
  before the program starts. In the other modes these directories are the host's: files a
  run creates there outlive it and can be read by later runs and host processes;
* unix sockets with a path elsewhere (e.g. under /run) that a host service opened to everyone
  can be connected to, since filesystem sockets ignore network namespaces; abstract sockets
  are per network namespace and so closed in the namespace modes;
* world-readable files: the repository, /etc, site-packages, other users' 0644 files are
  readable in every mode (hiding the host tree needs a chroot this sandbox does not build);
  only files that are not world-readable are out of reach (modes with a uid drop);
* import directories behind a private parent (site-packages of a venv in a 0700 home; the
  interpreter's own installation there when no other Python of this version is reachable;
  `SandboxCapabilities.bind_paths`): in the uid-drop modes a bind stage, still root, gives each
  run a mount namespace of its own in which an empty read-only tmpfs masks the private parent
  and only those directories are bound back at their real paths (which go on `sys.path`),
  read-only. The program imports from them but cannot write to them, and no other file of the
  private parent exists for it; the host's mounts are unchanged. Where binding does not make
  them readable (the directory itself is private) the probe logs a warning and runs import
  only what they can read. The bind stage costs one more interpreter start per run;
* CPU time beyond one core per process until the wall timeout;
* a program can always forge its OWN final value (it can find the nonce in its interpreter's
  memory); printing or `os._exit(0)` alone cannot. Verdicts that must not be forgeable come
  from another process: `flowsteer.isolation.hidden_tests` runs trusted tests in a judge process the
  candidate cannot reach.

The value: if the program's last statement is an expression (REPL semantics; the Programmer
appends `solve()`), its `repr` is sent back on a private pipe and the parent turns it into a JSON
value with `ast.literal_eval` (never `eval`): str, int, float (also nan/inf at top level), bool,
None, lists, tuples (as lists) and dicts with str keys come back as such; anything else (sets,
objects, NaN inside a container) comes back as its repr string; otherwise `value` is None. Status
"ok" means the program ran to its end without an exception. `sys.exit(0)` or `os._exit(0)`
before the end is "error": a code reward must not pass a program that exits before its tests.

`run_with_fds` is `run_python` plus descriptors handed to the program (pipes between runs;
`flowsteer.isolation.hidden_tests` joins a candidate and a judge this way).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import functools
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from flowsteer.isolation.capabilities import (
    NS_PREFIX,
    PRIVATE_TMP_NS_PREFIX,
    RUNNER_SOURCE,
    UID_RANGE,
    SandboxCapabilities,
    SandboxMode,  # noqa: F401 (re-exported: part of this module's API)
    bind_prefix,
    child_env,
    sandbox_capabilities,
    site_paths,
    uid_prefix,
)
from flowsteer.isolation.cgroup import RunCgroup, cgroup_layout

SandboxStatus = Literal["ok", "error", "timeout", "memory", "killed"]

_FILE_BYTES = 64 << 20
_OPEN_FILES = 256
_READ_CHUNK = 1 << 16
_TMP_PREFIX = "flowsteer-sandbox-"

_site_paths = site_paths  # the name tests and older callers use


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run produced.

    Attributes:
        status: "ok" (ran to its end), "error" (exception, nonzero or early exit; traceback in
            stderr), "timeout" (wall or CPU limit), "memory" (MemoryError / address-space
            limit), "killed" (a signal, or the output cap).
        stdout: What the program printed (UTF-8, undecodable bytes replaced; truncated at the
            output cap).
        stderr: Its standard error, plus a line starting with "[sandbox]" when the sandbox
            explains the status (timeout, output cap, early exit).
        value: The value of the final expression statement as JSON (dict/list/str/number/
            bool/None), or its repr string when it is not such a literal; None when the
            program does not end with an expression or did not finish.
        seconds: Wall-clock time of the run, spawn to cleanup.
    """

    status: SandboxStatus
    stdout: str
    stderr: str
    value: Any
    seconds: float


def _own_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _kill_uid(uid: int) -> None:
    """Kill every process of a sandbox uid (modes without a PID namespace)."""
    for _ in range(100):
        pids = _processes_of(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)


def _validate(code: Any, timeout: float, memory_mb: int, stdin: Any, max_output_bytes: int,
              max_processes: int) -> None:  # fmt: skip
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    if stdin is not None and not isinstance(stdin, str):
        raise TypeError(f"stdin must be a str or None, got {type(stdin).__name__}")
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not (isinstance(memory_mb, int) and memory_mb >= 64):
        raise ValueError(f"memory_mb must be an int >= 64 (Python needs that), got {memory_mb!r}")
    if not (isinstance(max_output_bytes, int) and max_output_bytes > 0):
        raise ValueError(f"max_output_bytes must be a positive int, got {max_output_bytes!r}")
    if not (isinstance(max_processes, int) and max_processes >= 1):
        raise ValueError(f"max_processes must be an int >= 1, got {max_processes!r}")


def run_python(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 512,
    stdin: str | None = None,
    max_output_bytes: int = 1 << 20,
    max_processes: int = 32,
) -> SandboxResult:
    """Run untrusted Python in an isolated child process and report what happened.

    Never raises for anything the program does; only bad arguments raise.

    Args:
        code: The program text. If its last statement is an expression, its value is returned.
        timeout: Wall-clock seconds before the whole run is killed (status "timeout").
        memory_mb: Memory limit in MiB: of the whole program (all its processes together) where
            cgroups are available, else of each process (status "memory" when hit).
        stdin: Text for the program's standard input; None gives it an empty one.
        max_output_bytes: Cap on stdout plus stderr; past it the run is killed ("killed").
        max_processes: Processes (and threads) the program may have at once.

    Returns:
        The status, output, final value and wall time of the run.
    """
    _validate(code, timeout, memory_mb, stdin, max_output_bytes, max_processes)
    return run_with_fds(code, (), timeout=timeout, memory_mb=memory_mb, stdin=stdin,
                        max_output_bytes=max_output_bytes, max_processes=max_processes)  # fmt: skip


def run_with_fds(
    code: str,
    pass_fds: tuple[int, ...],
    *,
    timeout: float = 10.0,
    memory_mb: int = 512,
    stdin: str | None = None,
    max_output_bytes: int = 1 << 20,
    max_processes: int = 32,
) -> SandboxResult:
    """`run_python`, with extra file descriptors handed to the program (for pipes between runs).

    The program finds them open under the same numbers. This call takes them over: they are
    closed here once the child has started (or failed to), so end-of-file reaches the other end
    when the child exits. The sandbox's PID-1 init closes its copies too.

    Args:
        code: See `run_python`.
        pass_fds: Descriptors to hand to the program, e.g. ends of `os.pipe()`.
        timeout: See `run_python`.
        memory_mb: See `run_python`.
        stdin: See `run_python`.
        max_output_bytes: See `run_python`.
        max_processes: See `run_python`.

    Returns:
        See `run_python`.
    """
    caps = sandbox_capabilities()
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix=_TMP_PREFIX)
    uid = None
    group = None
    handed = False
    try:
        prefix: list[str] = []
        processes = max_processes + 3  # setpriv/unshare, the namespace init, the runner
        layout = cgroup_layout()
        if layout is not None:
            group = RunCgroup(layout, memory_mb << 20, processes)
            prefix += group.join_prefix()
        prefix += bind_prefix(caps.interpreter, caps.bind_paths)  # as root, before the drop
        if caps.drop_uid:
            uid = secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0]
            os.chown(workdir, uid, uid)
            prefix += uid_prefix(uid)
        elif caps.mode in ("namespace", "process"):
            processes += _own_process_count()
        if caps.namespaces:
            prefix += PRIVATE_TMP_NS_PREFIX if caps.private_tmp else NS_PREFIX
        nonce = secrets.token_hex(16)
        limits = (math.ceil(timeout) + 1, memory_mb << 20, processes, _FILE_BYTES, _OPEN_FILES)
        extra = ",".join(map(str, pass_fds)) or "-"
        init = 2 if caps.private_tmp else int(caps.namespaces)  # 2: mount the private /tmp
        header = f"{nonce} {init} {extra} {' '.join(map(str, limits))}\n"
        header += os.pathsep.join(caps.site_paths) + "\n"
        handed = True  # _execute closes them from here on
        result = _execute(prefix, caps, header, nonce, code, stdin, timeout, max_output_bytes,
                          workdir, start, pass_fds)  # fmt: skip
        if group is not None and result.status in ("killed", "error") and group.oom_killed():
            note = "[sandbox] the program's processes together passed memory_mb; killed\n"
            result = dataclasses.replace(result, status="memory", stderr=result.stderr + note)
        return result
    finally:
        if not handed:
            for fd in pass_fds:
                os.close(fd)
        if group is not None:
            group.remove()
        if uid is not None and not caps.namespaces:
            _kill_uid(uid)
        shutil.rmtree(workdir, ignore_errors=True)


def _execute(
    prefix: list[str],
    caps: SandboxCapabilities,
    header: str,
    nonce: str,
    code: str,
    stdin: str | None,
    timeout: float,
    max_output_bytes: int,
    workdir: str,
    start: float,
    pass_fds: tuple[int, ...],
) -> SandboxResult:
    with tempfile.TemporaryFile() as source, tempfile.TemporaryFile() as stdin_file:
        source.write(header.encode() + code.encode("utf-8", "replace"))
        source.seek(0)
        stdin_file.write((stdin or "").encode())
        stdin_file.seek(0)
        ctl_r, ctl_w = os.pipe()
        code_fd = source.fileno()
        argv = [*prefix, caps.interpreter, "-I", "-S", "-B", "-c", RUNNER_SOURCE]
        argv += [str(code_fd), str(ctl_w)]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=stdin_file,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=child_env(workdir),
                pass_fds=(code_fd, ctl_w, *pass_fds),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(ctl_r)
            return SandboxResult(
                "error", "", f"[sandbox] could not start: {exc}", None, time.monotonic() - start
            )
        finally:
            for fd in (ctl_w, *pass_fds):
                os.close(fd)
    return _collect(proc, ctl_r, nonce, timeout, max_output_bytes, start)


def _collect(
    proc: subprocess.Popen, ctl_r: int, nonce: str, timeout: float, cap: int, start: float
) -> SandboxResult:
    assert proc.stdout is not None and proc.stderr is not None
    out, err, ctl = bytearray(), bytearray(), bytearray()
    buffers = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, ctl_r: ctl}
    deadline = start + timeout
    reason: str | None = None
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = "timeout"
                break
            if _exited(proc.pid):
                # The main process is gone; give lingering writers a moment, then stop.
                remaining = min(remaining, 0.05)
            events = selector.select(remaining)
            if not events and _exited(proc.pid):
                break
            for key, _ in events:
                fd = key.fd
                try:
                    chunk = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(fd)
                    continue
                buffers[fd] += chunk
                if len(ctl) > (2 << 20):
                    selector.unregister(ctl_r)
                    ctl.clear()
            if len(out) + len(err) > cap:
                reason = "output"
                break
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    returncode = proc.wait()
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    os.close(ctl_r)
    seconds = time.monotonic() - start
    return _judge(returncode, bytes(out), bytes(err), bytes(ctl), nonce, reason, cap, timeout,
                  seconds)  # fmt: skip


def _exited(pid: int) -> bool:
    """Whether the child exited, without reaping it (its pid keeps the process group alive)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _message(ctl: bytes, nonce: str) -> tuple[str, str] | None:
    """The runner's (kind, payload) line, if one carries this run's nonce."""
    for line in ctl.decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and secrets.compare_digest(parts[0], nonce):
            return parts[1], parts[2]
    return None


_JSON_LEAVES = (str, int, float, bool, type(None))


def _as_json(value: Any) -> Any:
    if isinstance(value, _JSON_LEAVES):
        return value
    if isinstance(value, list | tuple):
        return [_as_json(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _as_json(item) for key, item in value.items()}
    raise TypeError(type(value).__name__)


def _decode_value(text: str) -> Any:
    """A final value from its repr: JSON-able literals as such, anything else as the repr."""
    if text in ("nan", "inf", "-inf"):
        return float(text)
    try:
        return _as_json(ast.literal_eval(text))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def _judge(
    returncode: int,
    out: bytes,
    err: bytes,
    ctl: bytes,
    nonce: str,
    reason: str | None,
    cap: int,
    timeout: float,
    seconds: float,
) -> SandboxResult:
    stdout = out[:cap].decode("utf-8", "replace")
    stderr = err[: max(cap - len(out), 0)].decode("utf-8", "replace")
    notes: list[str] = []
    value = None
    message = _message(ctl, nonce)
    # PID-namespace init reports a signal as 128 + signal number.
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    status: SandboxStatus
    if reason == "timeout":
        status = "timeout"
        notes.append(f"timed out after {timeout:g} s; killed")
    elif reason == "output":
        status = "killed"
        notes.append(f"output passed {cap} bytes; killed")
    elif message is not None:
        kind, payload = message
        if kind in ("ok", "ok-large") and returncode == 0:
            status = "ok"
            value = _decode_value(payload) if kind == "ok" else None
            if kind == "ok-large":
                notes.append("final value too large to return; value is None")
        elif kind == "memory":
            status = "memory"
        elif kind == "exit":
            status = "error"
            notes.append(f"program exited with sys.exit({payload}) before its end")
        else:
            status = "error"
    elif signum == signal.SIGXCPU:
        status = "timeout"
        notes.append("CPU time limit reached; killed")
    elif b"MemoryError" in err[-4096:]:
        status = "memory"
    elif signum:
        status = "killed"
        name = signal.Signals(signum).name if signum in signal.valid_signals() else signum
        notes.append(f"killed by signal {name}")
    else:
        status = "error"
        notes.append(f"program exited with code {returncode} before its end")
    if notes:
        if stderr and not stderr.endswith("\n"):
            stderr += "\n"
        stderr += "".join(f"[sandbox] {note}\n" for note in notes)
    return SandboxResult(status, stdout, stderr, value, seconds)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sandbox")
        return _executor


async def run_python_async(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 512,
    stdin: str | None = None,
    max_output_bytes: int = 1 << 20,
    max_processes: int = 32,
) -> SandboxResult:
    """`run_python` for asyncio callers; up to 64 runs proceed at once on a private pool.

    Cancelling the awaiting task does not stop a run early; it still ends by its timeout.

    Args:
        code: See `run_python`.
        timeout: See `run_python`.
        memory_mb: See `run_python`.
        stdin: See `run_python`.
        max_output_bytes: See `run_python`.
        max_processes: See `run_python`.

    Returns:
        The same result `run_python` gives.
    """
    _validate(code, timeout, memory_mb, stdin, max_output_bytes, max_processes)
    call = functools.partial(
        run_python,
        code,
        timeout=timeout,
        memory_mb=memory_mb,
        stdin=stdin,
        max_output_bytes=max_output_bytes,
        max_processes=max_processes,
    )
    return await asyncio.get_running_loop().run_in_executor(_pool(), call)
