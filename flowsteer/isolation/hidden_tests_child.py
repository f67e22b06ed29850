"""The two programs of a hidden-test run: the candidate's server and the trusted judge.

`flowsteer.isolation.hidden_tests` never imports this module: it reads this source once and runs it in
two sandboxes, ending with a call of `serve` (the candidate's sandbox) or `judge` (the
judge's). The two talk over a pair of pipes, one JSON value per line. Only the judge decides
whether a test passed; everything that comes from the candidate is decoded into fresh builtin
values (None, bool, int, float, complex, str, bytes, list, tuple, set, frozenset, dict) or into
`Remote`, an opaque stand-in for an object that lives in the candidate process. So the test's
own comparisons, `isinstance`, `AssertionError` etc. are the judge's, never the candidate's.

Imports: only the builtin `_json` scanner (no `json`, which pulls in `re`: ~20 ms a run).
"""

import _json
import builtins
import os
import sys

MAX_LINE = 64 << 20  # a reply longer than this is a failure, not a memory bomb in the judge


class CandidateLost(BaseException):
    """The candidate died or broke the protocol; every later test fails too.

    A BaseException, so a test's ``except Exception`` cannot take it for an expected error.
    """


class CandidateError(Exception):
    """The candidate raised an exception that is not one of Python's builtin exceptions."""


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": -float("inf")}.get

    def __init__(self):
        self.memo = {}


_SCAN = _json.make_scanner(_ScanContext())
_STR = _json.encode_basestring_ascii
_TAGS = {"T": tuple, "S": set, "F": frozenset}


def _encode(value, out, handle_of):
    """Append the JSON text of ``value`` to ``out``; ``handle_of`` covers anything else."""
    if value is None or value is True or value is False:
        out.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, int):
        out.append(int.__repr__(int(value)))
    elif isinstance(value, float):
        number = float(value)
        if number != number:
            out.append("NaN")
        elif number in (float("inf"), -float("inf")):
            out.append("Infinity" if number > 0 else "-Infinity")
        else:
            out.append(float.__repr__(number))
    elif isinstance(value, str):
        out.append(_STR(str.__str__(value)))
    elif isinstance(value, list | tuple | set | frozenset):
        tag = (
            ""
            if isinstance(value, list)
            else '{"%s":'
            % ("T" if isinstance(value, tuple) else "S" if isinstance(value, set) else "F")
        )
        out.append(tag + "[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, handle_of)
        out.append("]}" if tag else "]")
    elif isinstance(value, dict):
        out.append('{"D":[')
        for index, (key, item) in enumerate(dict.items(value)):
            out.append(",[" if index else "[")
            _encode(key, out, handle_of)
            out.append(",")
            _encode(item, out, handle_of)
            out.append("]")
        out.append("]}")
    elif isinstance(value, bytes | bytearray):
        out.append(f'{{"B":"{bytes(value).hex()}"}}')
    elif isinstance(value, complex):
        out.append('{"C":[')
        _encode(value.real, out, handle_of)
        out.append(",")
        _encode(value.imag, out, handle_of)
        out.append("]}")
    elif callable(getattr(type(value), "tolist", None)):  # numpy arrays and scalars
        _encode(value.tolist(), out, handle_of)
    else:
        handle = handle_of(value)  # an int, or (a global of the candidate's) a str
        out.append('{"H":%s}' % (_STR(handle) if isinstance(handle, str) else int(handle)))


def _decode(node, resolve):
    """Builtin values from a scanned JSON tree; ``resolve`` turns a handle id into an object."""
    if isinstance(node, list):
        return [_decode(item, resolve) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) != 1:
        raise ValueError("malformed value")
    ((tag, body),) = node.items()
    if tag in _TAGS:
        return _TAGS[tag](_decode(item, resolve) for item in body)
    if tag == "D":
        return {_decode(key, resolve): _decode(item, resolve) for key, item in body}
    if tag == "B":
        return bytes.fromhex(body)
    if tag == "C":
        return complex(float(body[0]), float(body[1]))
    if tag == "H" and type(body) in (int, str):
        return resolve(body)
    raise ValueError("malformed value")


def _loads(line):
    value, end = _SCAN(line, 0)
    if line[end:].strip():
        raise ValueError("trailing data")
    return value


class _Channel:
    def __init__(self, read_fd, write_fd):
        self.reader = os.fdopen(read_fd, "rb", buffering=1 << 16)
        self.write_fd = write_fd

    def send(self, text):
        data = (text + "\n").encode()
        while data:
            data = data[os.write(self.write_fd, data) :]

    def receive(self):
        line = self.reader.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            return None
        return _loads(line.decode("ascii"))


# --- the candidate's side -----------------------------------------------------------------


def serve(read_fd, write_fd, code):
    """Run the candidate's code, then answer the judge's requests until it hangs up."""
    channel = _Channel(read_fd, write_fd)
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec(compile(code, "<candidate>", "exec"), namespace)
        channel.send('["ready"]')
    except BaseException as exc:
        channel.send(f'["failed",{_STR(f"{type(exc).__name__}: {exc}")}]')
        raise
    objects = []

    def handle_of(value):
        objects.append(value)
        return len(objects) - 1

    def resolve(handle):
        if not isinstance(handle, str):
            return objects[handle]
        if handle not in namespace:
            raise NameError(f"name {handle!r} is not defined")
        return namespace[handle]

    while True:
        request = channel.receive()
        if request is None:
            return
        try:
            op, target, payload = request
            obj = resolve(target)
            if op == "call":
                args, kwargs = _decode(payload, resolve)
                result = obj(*args, **kwargs)
            elif op == "global":
                result = obj
            elif op == "getattr":
                result = getattr(obj, payload)
            elif op == "iter":
                result = iter(obj)
            elif op == "next":
                result = next(obj)
            elif op == "len":
                result = len(obj)
            elif op == "bool":
                result = bool(obj)
            elif op == "getitem":
                result = obj[_decode(payload, resolve)]
            elif op == "contains":
                result = _decode(payload, resolve) in obj
            else:
                raise ValueError(op)
            out = ['["ok",']
            _encode(result, out, handle_of)
            out.append("]")
            reply = "".join(out)
        except BaseException as exc:
            reply = f'["err",{_STR(type(exc).__name__)},{_STR(str(exc)[:1000])}]'
        channel.send(reply)


# --- the judge's side ---------------------------------------------------------------------

_channel = None


def _rpc(op, target, payload=None):
    if _channel is None:
        raise CandidateLost("the candidate is gone")
    out = ["[", _STR(op), ","]
    out.append(_STR(target) if isinstance(target, str) else str(target))
    out.append(",")
    _encode(payload, out, _local_object)
    out.append("]")
    _channel.send("".join(out))
    return _reply()


def _reply():
    global _channel
    try:
        reply = _channel.receive()
        if reply is None:
            raise ValueError("no reply")
        if reply[0] == "ok" and len(reply) == 2:
            return _decode(reply[1], Remote)
        kind, name, message = reply
        if kind != "err" or type(name) is not str or type(message) is not str:
            raise ValueError("malformed reply")
    except Exception as exc:  # anything malformed (deep, huge, wrong types) ends the candidate
        _channel = None
        raise CandidateLost(f"the candidate broke the protocol: {type(exc).__name__}") from None
    exception = getattr(builtins, name, None)
    is_builtin = isinstance(exception, type) and issubclass(exception, Exception)
    raise (exception if is_builtin else CandidateError)(message)


def _local_object(value):
    if type(value) is Remote:
        return object.__getattribute__(value, "_handle")
    raise TypeError(f"cannot pass a {type(value).__name__} to the candidate")


class Remote:
    """An object that lives in the candidate process; every use is a request to it."""

    __slots__ = ("_handle",)

    def __init__(self, handle):
        object.__setattr__(self, "_handle", handle)

    def _ask(self, op, payload=None):
        return _rpc(op, object.__getattribute__(self, "_handle"), payload)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._ask("getattr", name)

    def __call__(self, *args, **kwargs):
        return self._ask("call", [list(args), kwargs])

    def __iter__(self):
        return self._ask("iter")

    def __next__(self):
        return self._ask("next")

    def __len__(self):
        size = self._ask("len")
        if type(size) is not int:
            raise TypeError("len() of a candidate object is not an int")
        return size

    def __bool__(self):
        truth = self._ask("bool")
        if type(truth) is not bool:
            raise TypeError("bool() of a candidate object is not a bool")
        return truth

    def __getitem__(self, key):
        return self._ask("getitem", key)

    def __contains__(self, item):
        return self._ask("contains", item) is True

    def __repr__(self):
        return "<candidate object>"


def _module_or_none(name):
    try:
        return __import__(name)
    except BaseException:
        return None


def _candidate_global(name):
    """The candidate's global: a decoded value, or a `Remote` (functions, classes, objects)."""
    try:
        return _rpc("global", name)
    except Exception:  # e.g. NameError: the tests that use it fail when they do
        return Remote(name)


def judge(read_fd, write_fd, setup, tests, names, forced):
    """Run each test against the candidate; return which passed (a list of bools).

    Args:
        setup: Trusted code run first in the tests' namespace (task setup, prompt stubs).
        tests: The test snippets, each run in that namespace.
        names: Names the tests use and do not bind themselves; each that the trusted setup
            does not define is an importable module (imported here) or the candidate's.
        forced: Names that are always the candidate's (the entry point).
    """
    global _channel
    _channel = _Channel(read_fd, write_fd)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        ready = _channel.receive()
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:
        ready = exc
    if ready != ["ready"]:
        print(f"[candidate] did not load: {ready!r:.2000}", file=sys.stderr)
        return [False] * len(tests)
    exec(compile(setup, "<setup>", "exec"), namespace)
    for name in names:
        if name in forced or name not in namespace:
            module = None if name in forced else _module_or_none(name)
            namespace[name] = module if module is not None else _candidate_global(name)
    verdicts = []
    for index, test in enumerate(tests):
        try:
            exec(compile(test, f"<hidden test {index}>", "exec"), namespace)
            verdicts.append(True)
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:500]}"
            print(f"[hidden test {index}] {reason}", file=sys.stderr)
            verdicts.append(False)
    return verdicts
