"""The program that runs inside the sandbox child and executes untrusted code.

The isolation layer never imports this module: `flowsteer.isolation.capabilities` reads this
file's source once and `flowsteer.isolation.sandbox` hands it to a fresh interpreter with
`python -I -S -B -c`, so the child needs neither `site` nor the `flowsteer` package (the
sandbox uid may be unable to read either). Everything it needs arrives
on one inherited file descriptor (fd number in argv[1]): a header line (nonce, whether to act as
a PID-namespace init, descriptors handed to the program, limits), a line of extra `sys.path`
entries, then the program text. The result travels back on a second inherited fd (argv[2]) as
one line tagged with the nonce, so a program that merely prints something, or exits early with `os._exit(0)`, cannot pass for a
finished run. The final value travels as its `repr`; the parent turns it into JSON with
`ast.literal_eval`.

It imports only what Python has loaded at startup plus `_ast` and `resource` (both cheap), and
`ctypes` in a PID namespace: `ast`, `json` and `traceback` would add about 10 ms to every run.
`traceback` is imported only when there is a traceback to print.

When `init` is set (the child is PID 1 of a new PID namespace) this process forks once and the
program runs in the grandchild: PID 1 ignores signals it has no handler for, so the program must
not be PID 1; PID 1 waits and exits with the program's status (128 + signal number for a signal).
The rlimits are set before that fork, so PID 1 has them too, and PID 1 makes itself
non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`, via `ctypes`, about 3 ms) before forking: the program
runs as the same uid but without capabilities, so it can neither ptrace PID 1 nor open its
`/proc/1/mem`. The child turns dumpable again before running the program.

When `init` is 2 (mode "namespace+uid" where mounting works) PID 1 also starts with the
namespace's capabilities: it mounts empty tmpfs over /tmp, /var/tmp and /dev/shm (binding the
working directory back at its path), then clears all its capabilities before anything else.

Where import directories sit behind a private parent, `flowsteer.isolation.bind_stage` runs
first, as root, and execs the rest of the command line, which ends in this program.
"""

import _ast
import os
import resource
import sys

MAX_VALUE_CHARS = 1 << 20
FILENAME = "<program>"


def _send(ctl_fd, nonce, kind, payload=""):
    data = f"{nonce} {kind} {payload}".replace("\n", "\\n")
    data = (data + "\n").encode("utf-8", "backslashreplace")
    while data:
        data = data[os.write(ctl_fd, data) :]


def _limit(name, soft):
    which = getattr(resource, name)
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(which, (soft, soft))
    except (ValueError, OSError):
        resource.setrlimit(which, (soft, hard))


def _set_limits(cpu_seconds, memory_bytes, processes, file_bytes, open_files):
    _limit("RLIMIT_CORE", 0)
    _limit("RLIMIT_CPU", cpu_seconds)
    _limit("RLIMIT_FSIZE", file_bytes)
    _limit("RLIMIT_NOFILE", open_files)
    _limit("RLIMIT_AS", memory_bytes)
    _limit("RLIMIT_NPROC", processes)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib would be one more import per run)
            stream.flush()
        except Exception:
            pass


def _print_traceback(exc, code):
    import linecache
    import traceback

    linecache.cache[FILENAME] = (len(code), None, code.splitlines(True), FILENAME)
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    traceback.print_exception(type(exc), exc, tb)


def _run(code, ctl_fd, nonce):
    module = type(sys)("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    sys.argv = [FILENAME]
    try:
        tree = compile(code, FILENAME, "exec", _ast.PyCF_ONLY_AST)
        last = None
        if tree.body and isinstance(tree.body[-1], _ast.Expr):
            last = _ast.Expression(tree.body.pop().value)
        exec(compile(tree, FILENAME, "exec"), module.__dict__)
        value = None
        if last is not None:
            value = eval(compile(last, FILENAME, "eval"), module.__dict__)
        try:
            text = repr(value)
        except Exception:
            text = f"<unrepresentable {type(value).__name__}>"
    except SystemExit as exc:
        status = exc.code
        if status is None:
            status = 0
        elif not isinstance(status, int):
            print(status, file=sys.stderr)
            status = 1
        _flush()
        _send(ctl_fd, nonce, "exit", status)
        os._exit(status & 0xFF)
    except BaseException as exc:
        try:
            _print_traceback(exc, code)
        except BaseException:
            print(f"{type(exc).__name__}: <unprintable>", file=sys.stderr)
        _flush()
        kind = "memory" if isinstance(exc, MemoryError) else "exception"
        _send(ctl_fd, nonce, kind, type(exc).__name__)
        os._exit(1)
    _flush()
    if len(text) > MAX_VALUE_CHARS:
        _send(ctl_fd, nonce, "ok-large")
    else:
        _send(ctl_fd, nonce, "ok", text)
    os._exit(0)


def _set_dumpable(flag):
    """prctl(PR_SET_DUMPABLE): a non-dumpable process cannot be ptraced by its own uid."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, int(flag), 0, 0, 0) != 0:  # 4 = PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _private_tmp(size, keep=()):
    """Mount empty tmpfs over the world-writable directories; keep what the program runs from.

    Runs as PID 1 with the namespace's capabilities (unshare --keep-caps), before the program.
    The working directory and every directory the program imports from (``keep`` and this
    interpreter's ``sys.path``) are bound back at their paths when they were under a masked
    directory, so a checkout or virtualenv that lives under /tmp still imports.
    """
    import contextlib
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    cwd = os.getcwd()
    held = {}  # path -> descriptor opened before the masks, ancestors first
    for path in sorted({cwd, *keep, *sys.path}, key=len):
        if path and os.path.isabs(path) and os.path.isdir(path):
            with contextlib.suppress(OSError):  # unreadable for the sandbox uid: stays hidden
                held[path] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    for target in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(target) and not os.path.islink(target):
            options = f"size={size},mode=1777".encode()
            if libc.mount(b"tmpfs", target.encode(), b"tmpfs", 6, options) != 0:  # nosuid,nodev
                raise OSError(ctypes.get_errno(), f"mount tmpfs on {target}")
    for path, fd in held.items():
        try:
            hidden = not os.path.samestat(os.stat(path), os.fstat(fd))
        except OSError:
            hidden = True
        if hidden:  # it was under one of them: bind it back at its path
            os.makedirs(path, mode=0o755, exist_ok=True)
            if libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, 4096, None) != 0:
                raise OSError(ctypes.get_errno(), f"bind {path}")  # 4096: MS_BIND
        os.close(fd)
    os.chdir(cwd)


def _drop_capabilities():
    """Clear every capability (bounding, ambient, effective, permitted, inheritable)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(47, 4, 0, 0, 0) != 0:  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
        raise OSError(ctypes.get_errno(), "clear ambient capabilities")
    for cap in range(64):  # PR_CAPBSET_DROP; EINVAL past the last capability
        libc.prctl(24, cap, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable}, all empty
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def main():
    code_fd, ctl_fd = int(sys.argv[1]), int(sys.argv[2])
    with os.fdopen(code_fd, "rb") as source:
        header = source.readline().split()
        path = source.readline().decode().rstrip("\n")
        code = source.read().decode("utf-8", "replace")
    nonce, init, private_tmp = header[0].decode(), header[1] != b"0", header[1] == b"2"
    extra_fds = [int(fd) for fd in header[2].split(b",")] if header[2] != b"-" else []
    limits = [int(x) for x in header[3:]]
    # Limits first: the namespace's init gets them too, before anything else happens.
    try:
        _set_limits(*limits)
        if private_tmp:
            _private_tmp(limits[1], path.split(os.pathsep))
            _drop_capabilities()
        if init:
            _set_dumpable(False)
    except Exception as exc:
        print(f"sandbox: could not set resource limits: {exc}", file=sys.stderr)
        _send(ctl_fd, nonce, "setup", exc)
        os._exit(1)
    if init:
        pid = os.fork()
        if pid:
            for fd in (ctl_fd, *extra_fds):
                os.close(fd)
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                os._exit(128 + os.WTERMSIG(status))
            os._exit(os.WEXITSTATUS(status))
        try:  # the program itself may be traced by its own children, as usual
            _set_dumpable(True)
        except Exception as exc:
            _send(ctl_fd, nonce, "setup", exc)
            os._exit(1)
    sys.path[:0] = [p for p in path.split(os.pathsep) if p and p not in sys.path]
    sys.argv = sys.argv[:1]
    _run(code, ctl_fd, nonce)


if __name__ == "__main__":  # run as `python -c <this source>` by the sandbox
    main()
