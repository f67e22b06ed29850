"""The sandbox against ordinary and hostile programs, with real child processes.

Each hostile test checks the status, that the run ended within its timeout plus one second, and
that the test process and the machine are unharmed (the next run still works)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from flowsteer.isolation import sandbox
from flowsteer.isolation.cgroup import cgroup_layout
from flowsteer.isolation.sandbox import (
    SandboxResult,
    run_python,
    run_python_async,
    sandbox_capabilities,
)

CAPS = sandbox_capabilities()
ISOLATED_FILES = CAPS.drop_uid
ISOLATED_PROCESSES = CAPS.drop_uid or CAPS.namespaces
needs_uid = pytest.mark.skipif(
    not ISOLATED_FILES, reason=f"mode {CAPS.mode!r} runs as the caller's uid: {CAPS.notes}"
)
needs_process_isolation = pytest.mark.skipif(
    not ISOLATED_PROCESSES,
    reason=f"mode {CAPS.mode!r} can signal the caller's processes: {CAPS.notes}",
)


def timed(code: str, timeout: float = 2.0, **kwargs) -> SandboxResult:
    start = time.monotonic()
    result = run_python(code, timeout=timeout, **kwargs)
    elapsed = time.monotonic() - start
    assert elapsed <= timeout + 1.0, f"took {elapsed:.2f} s for a {timeout} s timeout"
    return result


def assert_machine_fine() -> None:
    result = run_python("6 * 7", timeout=5)
    assert (result.status, result.value) == ("ok", 42)


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            ppid = next(line for line in status.splitlines() if line.startswith("PPid:"))
            parents[int(entry)] = int(ppid.split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, p in parents.items() if p == parent]
        found += children
        frontier += children
    return found


# --- ordinary programs --------------------------------------------------------------------


def test_final_expression_value_and_stdout():
    result = timed("print('hello')\ndef solve():\n    return {'a': [1, 2.5, None]}\nsolve()")
    assert result.status == "ok"
    assert result.stdout == "hello\n"
    assert result.value == {"a": [1, 2.5, None]}
    assert result.seconds > 0


def test_no_final_expression_gives_none_and_odd_values_fall_back_to_repr():
    assert timed("x = 1").value is None
    assert timed("(1, 2)").value == [1, 2]
    assert timed("{1, 2}").value == "{1, 2}"
    assert timed("if True:\n    3").value is None


def test_stdin_and_error_traceback():
    assert timed("input()[::-1]", stdin="abc\n").value == "cba"
    result = timed("def f():\n    raise ValueError('bad input')\nf()")
    assert result.status == "error"
    assert "ValueError: bad input" in result.stderr
    assert 'File "<program>", line 2, in f' in result.stderr
    assert "sandbox_runner" not in result.stderr
    syntax = timed("def (:")
    assert syntax.status == "error" and "SyntaxError" in syntax.stderr


def test_printed_or_written_fake_results_cannot_pass_for_a_finished_run():
    # A line in the runner's own result format, with a guessed nonce.
    fake = "0123456789abcdef0123456789abcdef ok 42\n"
    code = (
        "import os\n"
        f"print({fake!r})\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        f"        os.write(fd, {fake!r}.encode())\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n"
    )
    result = timed(code)
    assert result.status == "error"
    assert result.value is None
    assert "before its end" in result.stderr


def test_site_packages_are_importable_where_the_sandbox_can_read_them():
    numpy_dir = os.path.dirname(os.path.dirname(__import__("numpy").__file__))
    result = timed("import numpy\nint(numpy.arange(4).sum())", timeout=10)
    if numpy_dir in CAPS.site_paths:
        assert (result.status, result.value) == ("ok", 6), result.stderr
    else:  # e.g. site-packages itself private (0700): even bound in, the uid cannot read it
        assert result.status == "error" and "No module named 'numpy'" in result.stderr
        if numpy_dir in sandbox._site_paths():  # not e.g. from PYTHONPATH, which -I ignores
            assert any(numpy_dir in note and "not readable" in note for note in CAPS.notes)


def test_capabilities_list_only_site_paths_the_child_can_read():
    import sysconfig

    parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    parent |= {os.path.realpath(p) for p in parent}  # bound ones are imported at real paths
    assert set(CAPS.site_paths) <= parent
    probe = "import os, sys\n[p for p in sys.path if os.access(p, os.R_OK)]"
    child_path = timed(probe).value
    assert all(p in child_path for p in CAPS.site_paths)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="code must be a str"):
        run_python(b"1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        run_python("1", timeout=0)
    with pytest.raises(ValueError, match="memory_mb"):
        run_python("1", memory_mb=1)
    with pytest.raises(TypeError, match="stdin"):
        run_python("1", stdin=3)  # type: ignore[arg-type]


# --- hostile programs ---------------------------------------------------------------------


def test_infinite_loop_times_out():
    result = timed("while True:\n    pass", timeout=1.0)
    assert result.status == "timeout"
    assert "timed out" in result.stderr
    assert_machine_fine()


def test_fork_bomb_is_contained_and_leaves_no_process():
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    result = timed(code, timeout=2.0, max_processes=16)
    assert result.status in ("timeout", "killed")
    time.sleep(0.2)
    assert descendants(os.getpid()) == []
    assert_machine_fine()


def test_memory_bomb_reports_memory():
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))"
    result = timed(code, timeout=5.0, memory_mb=256)
    assert result.status == "memory", result.stderr
    assert timed("bytearray(10**11)", memory_mb=256).status == "memory"
    assert_machine_fine()


def test_gigabyte_of_output_is_capped():
    code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)"
    result = timed(code, timeout=5.0, max_output_bytes=1 << 20)
    assert result.status == "killed"
    assert len(result.stdout) <= 1 << 20
    assert "output passed" in result.stderr
    assert_machine_fine()


@needs_uid
def test_files_outside_its_directory_are_out_of_reach():
    # With a private /tmp the host's /tmp is not even visible; look next to this file instead,
    # or (for a checkout that itself lives under a masked directory) in /var/lib.
    where = None
    if CAPS.private_tmp:
        here = Path(__file__).resolve().parent
        masked = any(here.is_relative_to(m) for m in ("/tmp", "/var/tmp", "/dev/shm"))
        where = "/var/lib" if masked else str(here)
    outside = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir=where))
    try:
        outside.chmod(0o755)  # others may look, as in most real directories
        sentinel = outside / "sentinel.txt"
        sentinel.write_text("precious")
        sentinel.chmod(0o644)
        code = (
            "import os\n"
            f"path = {str(sentinel)!r}\n"
            "seen = open(path).read()\n"
            "errors = []\n"
            "for attempt in (lambda: open(path, 'w').write('gone'), lambda: os.remove(path),\n"
            "                lambda: open(os.path.join(os.path.dirname(path), 'new'), 'w')):\n"
            "    try:\n"
            "        attempt()\n"
            "    except OSError as exc:\n"
            "        errors.append(type(exc).__name__)\n"
            "open('mine.txt', 'w').write('ok')\n"
            "[seen, errors, open('mine.txt').read()]"
        )
        result = timed(code)
        assert result.status == "ok", result.stderr
        assert result.value == ["precious", ["PermissionError"] * 3, "ok"]
        assert sentinel.read_text() == "precious"
        assert sorted(os.listdir(outside)) == ["sentinel.txt"]
    finally:
        shutil.rmtree(outside)


def test_environment_secrets_are_invisible(monkeypatch: pytest.MonkeyPatch):
    secret = "sk-fake-secret-0123456789"
    monkeypatch.setenv("FLOWSTEER_FAKE_API_KEY", secret)
    code = "import os\n[dict(os.environ), open('/proc/self/environ').read()]"
    result = timed(code)
    assert result.status == "ok"
    assert secret not in str(result.value)
    assert "FLOWSTEER_FAKE_API_KEY" not in result.value[0]
    if ISOLATED_PROCESSES:  # the caller's own /proc entry is out of reach too
        probe = f"open('/proc/{os.getpid()}/environ').read()"
        leaked = timed(probe)
        assert secret not in leaked.stdout + leaked.stderr + str(leaked.value)


def test_socket_to_local_server_fails():
    if not CAPS.namespaces:
        pytest.skip(f"mode {CAPS.mode!r} has no network namespace: {CAPS.notes}")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n"
            "    outcome = 'connected'\n"
            "except OSError as exc:\n"
            "    outcome = type(exc).__name__\n"
            "outcome"
        )
        result = timed(code)
        assert result.status == "ok", result.stderr
        assert result.value.endswith("Error"), result.value
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # the kernel queued no connection either
            server.accept()


@needs_process_isolation
def test_killing_its_parent_and_the_caller_leaves_the_test_alive():
    code = (
        "import os, signal\n"
        f"for pid in (os.getppid(), {os.getpid()}):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
        "'survived'"
    )
    result = timed(code)
    assert result.status in ("ok", "killed")
    assert_machine_fine()


def test_sys_exit_is_an_error():
    result = timed("import sys\nprint('partial')\nsys.exit(3)")
    assert result.status == "error"
    assert result.stdout == "partial\n"
    assert "sys.exit(3)" in result.stderr
    assert timed("import sys\nsys.exit(0)\n1").status == "error"


def test_deep_recursion():
    result = timed("def f(n):\n    return f(n + 1)\nf(0)")
    assert result.status == "error"
    assert "RecursionError" in result.stderr
    # Lifting Python's guard and recursing through C overflows the C stack: a signal.
    code = "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return list(map(f, [n]))\nf(0)"
    crashed = timed(code)
    assert crashed.status == "killed"
    assert "SIGSEGV" in crashed.stderr
    # Pure-Python frames live on the heap in 3.11+: they run into the timeout, never a hang.
    code = "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)"
    assert timed(code, timeout=1.0).status in ("timeout", "memory", "error")
    assert_machine_fine()


# --- concurrency --------------------------------------------------------------------------


def test_32_concurrent_runs_leak_no_process_or_directory(monkeypatch: pytest.MonkeyPatch):
    base = tempfile.mkdtemp(prefix="sandbox-concurrency-")
    os.chmod(base, 0o755)  # the sandbox uid must reach its working directory
    monkeypatch.setattr(tempfile, "tempdir", base)
    programs = (
        [
            f"import time\ntime.sleep(0.2)\nopen('f', 'w').write('x')\nprint({i})\n{i} * 2"
            for i in range(28)
        ]
        + ["while True:\n    pass"] * 2
        + ["import os\nos.fork()\nos.fork()\nwhile True: pass"] * 2
    )

    async def main() -> list[SandboxResult]:
        return await asyncio.gather(*(run_python_async(p, timeout=3.0) for p in programs))

    try:
        start = time.monotonic()
        results = asyncio.run(main())
        assert time.monotonic() - start < 3.0 + 4.0
        assert [r.value for r in results[:28]] == [i * 2 for i in range(28)]
        assert [r.stdout for r in results[:28]] == [f"{i}\n" for i in range(28)]
        assert [r.status for r in results[28:]] == ["timeout"] * 4
        assert descendants(os.getpid()) == []
        assert os.listdir(base) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- weaker modes, as a platform without root or namespaces gets them ---------------------


@pytest.mark.parametrize("mode", ["uid", "namespace", "process"])
def test_fallback_modes_still_enforce_time_memory_output_and_cleanup(
    mode: str, monkeypatch: pytest.MonkeyPatch
):
    import flowsteer.isolation.sandbox as sandbox

    if mode == "uid" and not CAPS.drop_uid:
        pytest.skip("cannot drop to an unprivileged uid here")
    if mode == "namespace" and not CAPS.namespaces:
        pytest.skip("no user namespaces here")
    interpreter = CAPS.interpreter if mode == "uid" else sys.executable
    weaker = sandbox.SandboxCapabilities(
        mode, interpreter, drop_uid=mode == "uid", namespaces=mode == "namespace"
    )
    monkeypatch.setattr(sandbox, "sandbox_capabilities", lambda: weaker)
    uid = timed("import os\nos.getuid()").value
    assert uid != 0 if mode == "uid" else uid == (os.getuid() if mode == "process" else 65534)
    assert timed("while True:\n    pass", timeout=1.0).status == "timeout"
    assert timed("bytearray(10**11)", memory_mb=256).status == "memory"
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)"
    assert timed(flood, max_output_bytes=1 << 16).status == "killed"
    # A child that leaves the process group: the uid sweep or the PID namespace must get it.
    marker = f"{30 + time.monotonic() % 1:.9f}"
    escape = (
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execv('/bin/sleep', ['sleep', {marker!r}])\n"
        "'parent'"
    )
    assert timed(escape).value == "parent"
    # A child that stays in the process group dies with the run in every mode.
    stay = f"{31 + time.monotonic() % 1:.9f}"
    child = f"import os\nif os.fork() == 0:\n    os.execv('/bin/sleep', ['sleep', {stay!r}])\n1"
    assert timed(child).value == 1
    time.sleep(0.2)
    assert sleepers(stay) == []
    survivors = sleepers(marker)
    for pid in survivors:
        os.kill(pid, 9)
    # A plain process group cannot hold a child that calls setsid() (a per-run cgroup can);
    # that it survives there also shows this check can see an escaped child.
    assert bool(survivors) is (mode == "process" and cgroup_layout() is None)


def sleepers(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline == f"sleep\0{marker}\0".encode():
                found.append(int(entry))
    return found


# --- limits, as the program itself sees them ----------------------------------------------


def test_rlimits_are_applied_in_the_child():
    import resource

    names = ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")
    code = f"import resource\n[resource.getrlimit(getattr(resource, n))[0] for n in {names!r}]"
    core = resource.getrlimit(resource.RLIMIT_CORE)
    if core[1] != 0:  # let the child inherit a nonzero soft limit, so the sandbox must lower it
        soft = 1 << 20 if core[1] == resource.RLIM_INFINITY else core[1]
        resource.setrlimit(resource.RLIMIT_CORE, (soft, core[1]))
    try:
        result = timed(code, timeout=2.0, memory_mb=256)
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, core)
    assert result.status == "ok", result.stderr
    wanted = (3, 256 << 20, 64 << 20, 256, 0)  # CPU: ceil(timeout) + 1
    for name, want, got in zip(names, wanted, result.value, strict=True):
        hard = resource.getrlimit(getattr(resource, name))[1]
        assert got == (want if hard == resource.RLIM_INFINITY else min(want, hard)), name


def test_memory_limit_is_memory_mb():
    assert timed("len(bytearray(150 << 20))", memory_mb=256).value == 150 << 20
    assert timed("len(bytearray(300 << 20))", memory_mb=256).status == "memory"


def test_file_size_and_open_file_limits():
    big = "f = open('big', 'wb')\nf.seek(64 << 20)\nf.write(b'x')\nf.close()"
    result = timed(big)
    assert result.status == "error" and "File too large" in result.stderr, result.stderr
    many = "files = [open('f%d' % i, 'w') for i in range(300)]"
    result = timed(many)
    assert result.status == "error" and "Too many open files" in result.stderr, result.stderr


@needs_uid
def test_process_limit_bounds_forks():
    # Zombies count against RLIMIT_NPROC, so the children stay counted until the run ends.
    code = (
        "import os\n"
        "started = 0\n"
        "for _ in range(40):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    started += 1\n"
        "started"
    )
    result = timed(code, max_processes=4)
    assert result.status == "ok", result.stderr
    assert 1 <= result.value <= 4 + 2  # + the runner and the namespace init it may need


def test_cpu_limit_signal_is_a_timeout():
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (1, resource.getrlimit(resource.RLIMIT_CPU)[1]))\n"
        "while True:\n"
        "    pass"
    )
    result = timed(code, timeout=5.0)
    assert result.status == "timeout"
    assert "CPU time limit" in result.stderr
    assert result.seconds < 4.0


def test_output_cap_counts_both_streams_and_ends_a_finished_program_too():
    cap = 1 << 16
    stdout_only = timed(f"print('x' * {2 * cap})", max_output_bytes=cap)
    assert stdout_only.status == "killed" and len(stdout_only.stdout) <= cap
    flood = "import sys\nwhile True:\n    sys.stderr.write('e' * 4096)"
    result = timed(flood, timeout=5.0, max_output_bytes=cap)
    assert result.status == "killed" and "output passed" in result.stderr
    assert result.seconds < 4.0
    assert len(result.stderr) < cap + 200  # the cap plus the sandbox's note


@pytest.mark.skipif(not CAPS.private_tmp, reason="no private /tmp on this platform")
def test_a_site_directory_under_the_masked_tmp_stays_importable(monkeypatch: pytest.MonkeyPatch):
    """A checkout or venv under /tmp (as CI clones may be) must still import inside the sandbox,
    though /tmp itself is replaced by an empty private one."""
    import dataclasses

    import flowsteer.isolation.sandbox as sandbox

    site = Path(tempfile.mkdtemp(prefix="sandbox-site-", dir="/tmp"))
    try:
        site.chmod(0o755)
        (site / "fs_probe_pkg.py").write_text("VALUE = 42\n")
        (site / "fs_probe_pkg.py").chmod(0o644)
        caps = dataclasses.replace(CAPS, site_paths=(*CAPS.site_paths, str(site)))
        monkeypatch.setattr(sandbox, "sandbox_capabilities", lambda: caps)
        neighbour = Path(tempfile.mkstemp(prefix="sandbox-neighbour-", dir="/tmp")[1])
        neighbour.chmod(0o644)  # world-readable, but in the host's /tmp: it stays hidden
        code = (
            "import os, fs_probe_pkg\n"
            f"[fs_probe_pkg.VALUE, sorted(os.listdir({str(site)!r})), "
            f"os.path.exists({str(neighbour)!r})]"
        )
        result = timed(code)
        assert result.status == "ok", result.stderr
        assert result.value == [42, ["fs_probe_pkg.py"], False]
    finally:
        shutil.rmtree(site)
        if "neighbour" in locals():
            neighbour.unlink()
