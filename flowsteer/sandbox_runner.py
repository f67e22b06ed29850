"""The program that runs inside the sandbox child and executes untrusted code.

`flowsteer.sandbox` never imports this module: it reads this file's source once and hands it to a
fresh interpreter with `python -I -S -B -c`, so the child needs neither `site` nor the
`flowsteer` package (the sandbox uid may be unable to read either). Everything it needs arrives
on one inherited file descriptor (fd number in argv[1]): a JSON header line (nonce, limits,
extra `sys.path` entries, whether to act as a PID-namespace init), then the program text. The
result travels back on a second inherited fd (argv[2]) as one JSON line tagged with the nonce,
so a program that merely prints something, or exits early with `os._exit(0)`, cannot pass for a
finished run.

When `init` is set (the child is PID 1 of a new PID namespace) this process forks once and the
program runs in the grandchild: PID 1 ignores signals it has no handler for, so the program must
not be PID 1; PID 1 waits and exits with the program's status (128 + signal number for a signal).
"""

import ast
import json
import os
import resource
import sys
import traceback
import types

MAX_VALUE_BYTES = 1 << 20


def _send(ctl_fd, nonce, kind, **fields):
    message = dict(fields, nonce=nonce, kind=kind)
    try:
        data = json.dumps(message, allow_nan=True)
    except (TypeError, ValueError):
        message["value"] = repr(message.get("value"))
        data = json.dumps(message)
    if len(data) > MAX_VALUE_BYTES:
        message["value"] = None
        message["note"] = "value too large to transport"
        data = json.dumps(message)
    data = (data + "\n").encode()
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


def _set_limits(cfg):
    _limit("RLIMIT_CORE", 0)
    _limit("RLIMIT_CPU", cfg["cpu_seconds"])
    _limit("RLIMIT_FSIZE", cfg["file_bytes"])
    _limit("RLIMIT_NOFILE", cfg["open_files"])
    if cfg["memory_bytes"]:
        _limit("RLIMIT_AS", cfg["memory_bytes"])
    if cfg["processes"]:
        _limit("RLIMIT_NPROC", cfg["processes"])


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib would be one more import per run)
            stream.flush()
        except Exception:
            pass


def _run(code, ctl_fd, nonce):
    filename = "<program>"
    import linecache

    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    sys.argv = [filename]
    try:
        tree = ast.parse(code, filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, "exec"), module.__dict__)
        value = None
        if last is not None:
            value = eval(compile(last, filename, "eval"), module.__dict__)
    except SystemExit as exc:
        code_ = exc.code
        if code_ is None:
            code_ = 0
        elif not isinstance(code_, int):
            print(code_, file=sys.stderr)
            code_ = 1
        _flush()
        _send(ctl_fd, nonce, "exit", code=code_)
        os._exit(code_ & 0xFF)
    except BaseException as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        try:
            traceback.print_exception(type(exc), exc, tb)
        except BaseException:
            print(f"{type(exc).__name__}: <unprintable>", file=sys.stderr)
        _flush()
        kind = "memory" if isinstance(exc, MemoryError) else "exception"
        _send(ctl_fd, nonce, kind, error=type(exc).__name__)
        os._exit(1)
    _flush()
    _send(ctl_fd, nonce, "ok", value=value)
    os._exit(0)


def main():
    code_fd, ctl_fd = int(sys.argv[1]), int(sys.argv[2])
    with os.fdopen(code_fd, "rb") as source:
        header = json.loads(source.readline())
        code = source.read().decode("utf-8", "replace")
    nonce = header["nonce"]
    if header["init"]:
        pid = os.fork()
        if pid:
            os.close(ctl_fd)
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                os._exit(128 + os.WTERMSIG(status))
            os._exit(os.WEXITSTATUS(status))
    sys.path[:0] = [p for p in header["path"] if p not in sys.path]
    sys.argv = sys.argv[:1]
    try:
        _set_limits(header)
    except Exception as exc:
        print(f"sandbox: could not set resource limits: {exc}", file=sys.stderr)
        _send(ctl_fd, nonce, "setup", error=str(exc))
        os._exit(1)
    _run(code, ctl_fd, nonce)


main()
