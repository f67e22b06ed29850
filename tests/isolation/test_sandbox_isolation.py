"""Sandbox isolation added for the review's findings: IPC/UTS namespaces, a per-run cgroup for
the whole program's memory and processes, and a PID-1 init that has the limits and cannot be
ptraced. Real child processes; each check skips where this platform cannot offer it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowsteer.isolation.cgroup import cgroup_layout, leftover_groups
from flowsteer.isolation.sandbox import run_python, sandbox_capabilities

CAPS = sandbox_capabilities()
needs_namespaces = pytest.mark.skipif(not CAPS.namespaces, reason=f"no namespaces: {CAPS.notes}")
needs_cgroup = pytest.mark.skipif(
    cgroup_layout() is None, reason="no writable memory cgroup here (needs root)"
)


@needs_namespaces
def test_ipc_and_uts_namespaces_are_private_and_shared_memory_does_not_persist():
    key = 0x5EED0000 + os.getpid() % 0xFFFF
    create = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"shmid = libc.shmget({key}, 1 << 20, 0o1666)\n"  # IPC_CREAT | 0666
        "[shmid, os.readlink('/proc/self/ns/ipc'), os.readlink('/proc/self/ns/uts')]"
    )
    try:
        first = run_python(create, timeout=5)
        assert first.status == "ok", first.stderr
        shmid, ipc, uts = first.value
        assert shmid >= 0  # the segment was made, inside the run
        assert ipc != os.readlink("/proc/self/ns/ipc")
        assert uts != os.readlink("/proc/self/ns/uts")
        host = Path("/proc/sysvipc/shm").read_text().split("\n")[1:]
        assert not [line for line in host if line.split() and int(line.split()[0]) == key]
        lookup = f"import ctypes\nctypes.CDLL(None).shmget({key}, 0, 0)"  # -1: no such key
        assert run_python(lookup, timeout=5).value == -1
    finally:  # on a sandbox without an IPC namespace the segment leaked into the host: remove
        for line in Path("/proc/sysvipc/shm").read_text().split("\n")[1:]:
            if line.split() and int(line.split()[0]) == key:
                os.system(f"ipcrm -m {line.split()[1]}")


@needs_namespaces
def test_the_init_has_the_limits_and_cannot_be_ptraced_or_read():
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "attach = libc.ptrace(16, 1, 0, 0)\n"  # PTRACE_ATTACH to PID 1
        "errno = ctypes.get_errno()\n"
        "try:\n"
        "    open('/proc/1/mem', 'rb').read(1)\n"
        "    mem = 'read'\n"
        "except OSError as exc:\n"
        "    mem = type(exc).__name__\n"
        "limits = {}\n"
        "for line in open('/proc/1/limits').read().splitlines()[1:]:\n"
        "    name = line[:26].strip()\n"
        "    limits[name] = line[26:47].strip()\n"
        "[attach, errno, mem, limits]"
    )
    result = run_python(code, timeout=3, memory_mb=256, max_processes=8)
    assert result.status == "ok", result.stderr
    attach, errno, mem, limits = result.value
    assert (attach, errno) == (-1, 1)  # EPERM
    assert mem in ("PermissionError", "FileNotFoundError")
    assert limits["Max address space"] == str(256 << 20)
    assert limits["Max cpu time"] == "4"
    assert limits["Max processes"] == "11"  # max_processes + 3


CHILDREN = """
import os, time
readers = []
for _ in range(6):
    r, w = os.pipe()
    if os.fork() == 0:
        block = b'x' * (200 << 20)  # touched, so resident
        os.write(w, b'1')
        time.sleep(1.5)
        os._exit(0)
    os.close(w)
    readers.append(r)
sum(len(os.read(r, 1)) for r in readers)
"""


@needs_cgroup
def test_memory_is_limited_for_the_whole_program_not_each_process():
    # Six children of 200 MiB each fit a 256 MiB per-process limit; together they must not.
    result = run_python(CHILDREN, timeout=10, memory_mb=256)
    assert result.status in ("ok", "memory"), result.stderr
    if result.status == "ok":
        assert result.value <= 1, f"{result.value} children held 200 MiB at once"
    assert leftover_groups() == []


@needs_cgroup
def test_memory_status_when_the_program_itself_is_killed_for_its_children():
    code = (
        "import os, time\n"
        "for _ in range(4):\n"
        "    if os.fork() == 0:\n"
        "        break\n"
        "x = b'y' * (120 << 20)\n"
        "time.sleep(1)\n"
        "1"
    )
    result = run_python(code, timeout=10, memory_mb=256)
    assert result.status in ("memory", "ok"), result.stderr
    assert leftover_groups() == []


@needs_cgroup
def test_cgroups_are_removed_after_timeouts_and_forks():
    layout = cgroup_layout()
    assert layout is not None
    stubborn = "import os\nfor _ in range(4):\n    os.fork()\nwhile True:\n    pass"
    assert run_python(stubborn, timeout=1.0, max_processes=32).status == "timeout"
    assert run_python("1", timeout=2).value == 1
    assert leftover_groups() == []
    mine = f"flowsteer-sandbox-{os.getpid()}-"
    assert not [n for n in os.listdir(layout.memory_base) if n.startswith(mine)]


@needs_cgroup
def test_a_group_left_by_a_dead_caller_is_swept():
    from flowsteer.isolation import cgroup as sandbox_cgroup

    layout = cgroup_layout()
    assert layout is not None
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    stale = os.path.join(layout.memory_base, f"flowsteer-sandbox-{dead}-000000000000")
    os.mkdir(stale)
    try:
        sandbox_cgroup._sweep(layout)
        assert not os.path.exists(stale)
    finally:
        if os.path.exists(stale):
            os.rmdir(stale)


@needs_cgroup
def test_process_count_is_limited_for_the_whole_program():
    # Threads count as processes for pids.max; 40 threads cannot start under a cap of 8.
    code = (
        "import threading, time\n"
        "started = 0\n"
        "for _ in range(40):\n"
        "    try:\n"
        "        threading.Thread(target=time.sleep, args=(1,), daemon=True).start()\n"
        "        started += 1\n"
        "    except RuntimeError:\n"
        "        break\n"
        "started"
    )
    result = run_python(code, timeout=5, max_processes=8)
    assert result.status == "ok", result.stderr
    assert result.value <= 8


needs_private_tmp = pytest.mark.skipif(
    not CAPS.private_tmp, reason=f"no private /tmp in mode {CAPS.mode!r}: {CAPS.notes}"
)


@needs_private_tmp
def test_tmp_var_tmp_and_dev_shm_are_private_to_each_run_and_capabilities_are_gone():
    name = f"flowsteer-private-{os.getpid()}"
    write = (
        "import ctypes, os\n"
        f"for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
        f"    open(os.path.join(d, {name!r}), 'w').write('x')\n"
        "open('mine.txt', 'w').write('ok')\n"  # the working directory still works
        "status = open('/proc/self/status').read().splitlines()\n"
        "caps = {l.split(':')[0]: int(l.split()[1], 16) for l in status if l.startswith('Cap')}\n"
        "umount = ctypes.CDLL(None).umount2(b'/tmp', 2)\n"  # MNT_DETACH: reveal the host's?
        "[caps, umount, open('mine.txt').read(), os.getcwd() == os.environ['TMPDIR']]"
    )
    try:
        result = run_python(write, timeout=5)
        assert result.status == "ok", result.stderr
        caps, umount, mine, cwd_is_tmpdir = result.value
        assert caps == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}
        assert umount == -1
        assert (mine, cwd_is_tmpdir) == ("ok", True)
        for directory in ("/tmp", "/var/tmp", "/dev/shm"):
            assert not os.path.exists(os.path.join(directory, name)), directory
        look = (
            f"import os\n[os.path.exists(os.path.join(d, {name!r})) for d in ('/tmp', '/dev/shm')]"
        )
        assert run_python(look, timeout=5).value == [False, False]
    finally:
        for directory in ("/tmp", "/var/tmp", "/dev/shm"):
            if os.path.exists(os.path.join(directory, name)):
                os.remove(os.path.join(directory, name))


@needs_private_tmp
def test_a_host_unix_socket_in_tmp_is_out_of_reach():
    import socket
    import tempfile

    directory = tempfile.mkdtemp(prefix="flowsteer-socket-", dir="/tmp")
    path = os.path.join(directory, "service.sock")
    os.chmod(directory, 0o755)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        os.chmod(path, 0o777)  # a service that lets everyone connect
        server.listen()
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.socket(socket.AF_UNIX).connect({path!r})\n"
            "    outcome = 'connected'\n"
            "except OSError as exc:\n"
            "    outcome = type(exc).__name__\n"
            "outcome"
        )
        try:
            assert run_python(code, timeout=5).value == "FileNotFoundError"
        finally:
            os.remove(path)
            os.rmdir(directory)


@pytest.mark.skipif(not CAPS.drop_uid, reason="RLIMIT_NPROC bounds a run only with its own uid")
def test_without_cgroups_each_process_is_still_bounded_by_memory_mb(monkeypatch):
    from flowsteer.isolation import sandbox

    monkeypatch.setattr(sandbox, "cgroup_layout", lambda: None)
    code = (
        "import os\n"
        "outcomes = []\n"
        "for _ in range(12):\n"
        "    r, w = os.pipe()\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        outcomes.append('no fork')\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            block = b'x' * (300 << 20)\n"
        "            os.write(w, b'big')\n"
        "        except MemoryError:\n"
        "            os.write(w, b'mem')\n"
        "        os._exit(0)\n"
        "    os.close(w)\n"
        "    outcomes.append(os.read(r, 3).decode())\n"
        "    os.waitpid(pid, 0)\n"
        "outcomes"
    )
    result = run_python(code, timeout=10, memory_mb=256, max_processes=4)
    assert result.status == "ok", result.stderr
    assert "big" not in result.value  # no process above memory_mb
    assert "mem" in result.value
