"""A venv (or a whole Python) inside a private (0700) home, end to end.

`python -m venv ~/...` puts site-packages behind a directory the sandbox uid cannot search. Each
test builds such a venv for real, with a tiny package in its site-packages and a .pth that makes
this checkout importable, and runs a script with the venv's own python in a subprocess: the
capabilities are detected once per process, from the running interpreter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowsteer.isolation.sandbox import sandbox_capabilities

CAPS = sandbox_capabilities()
ROOT = Path(__file__).resolve().parents[2]
MASKED = ("/tmp", "/var/tmp", "/dev/shm")

pytestmark = pytest.mark.skipif(
    not (CAPS.drop_uid and os.geteuid() == 0),
    reason=f"mode {CAPS.mode!r} does not drop to another uid: {CAPS.notes}",
)


def _unmasked_dir() -> str:
    """A place a private /tmp does not hide (a checkout under /tmp uses /var/lib)."""
    here = Path(__file__).resolve().parent
    return "/var/lib" if any(here.is_relative_to(m) for m in MASKED) else str(here)


@pytest.fixture
def home(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A 0700 directory with a venv inside, privpkg in its site-packages and a secret beside it;
    outside the masked directories, or (param "tmp") under /tmp, where a private /tmp replaces
    it with the run's own directories and binds site-packages back once more, or (param
    "symlink") with the venv reached through a symlink, which does not exist inside the mask."""
    kind = getattr(request, "param", "unmasked")
    where = tempfile.gettempdir() if kind == "tmp" else _unmasked_dir()
    path = Path(tempfile.mkdtemp(prefix="sandbox-home-", dir=where)).resolve()
    try:
        path.chmod(0o700)
        if kind == "symlink":
            (path / "real").mkdir()
            (path / "link").symlink_to("real")
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(_venv(path))],
            check=True,
            timeout=60,
        )
        site = _site(path)
        (site / "privpkg").mkdir()
        (site / "privpkg" / "__init__.py").write_text("VALUE = 42\n")
        (site / "flowsteer-checkout.pth").write_text(f"{ROOT}\n")
        (path / "secret.txt").write_text("precious")
        (path / "secret.txt").chmod(0o644)  # readable by anyone who can reach it
        yield path
    finally:
        shutil.rmtree(path)


def _venv(home: Path) -> Path:
    """The venv, as its python is started (through the symlink, if there is one)."""
    return home / "link" / "venv" if (home / "link").is_symlink() else home / "venv"


def _site(home: Path) -> Path:
    """The venv's site-packages, at its real path."""
    return next((_venv(home) / "lib").glob("python3.*")).resolve() / "site-packages"


def _in_venv(home: Path, script: str) -> dict:
    """Run `script` (which prints one JSON line last) with the venv's python."""
    done = subprocess.run(
        [str(_venv(home) / "bin" / "python"), "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


PROGRAM = """\
import errno, os, privpkg
def attempt(action):
    try:
        action()
        return "done"
    except OSError as exc:
        return errno.errorcode[exc.errno]
home, venv, site = {home!r}, {venv!r}, {site!r}
[privpkg.VALUE, os.listdir(home),
 attempt(lambda: open(os.path.join(home, "secret.txt")).read()),
 attempt(lambda: open(os.path.join(venv, "pyvenv.cfg")).read()),
 attempt(lambda: open(os.path.join(site, "planted.py"), "w")),
 attempt(lambda: open(os.path.join(home, "planted.txt"), "w"))]
"""

# The program in one sandbox; then hidden tests, whose judge and candidate both import privpkg.
SCRIPT = """\
import dataclasses, json
from flowsteer.isolation.hidden_tests import run_hidden_tests
from flowsteer.isolation.sandbox import run_python, sandbox_capabilities
caps = sandbox_capabilities()
result = run_python({program!r}, timeout=10)
candidate = "import privpkg\\ndef f():\\n    return privpkg.VALUE\\n"
judged = run_hidden_tests(candidate, ["import privpkg\\nassert f() == privpkg.VALUE == 42"],
                          candidate_names=["f"])
print(json.dumps({{"caps": dataclasses.asdict(caps), "result": dataclasses.asdict(result),
                  "hidden": judged.passed}}))
"""


@pytest.mark.parametrize("home", ["unmasked", "tmp", "symlink"], indirect=True)
def test_a_venv_in_a_private_home_imports_and_nothing_else_of_the_home_is_visible(home: Path):
    site = _site(home)
    site.chmod(0o777)  # so only the read-only bind keeps the program from writing there
    venv = _venv(home).resolve()
    assert (venv / "pyvenv.cfg").is_file()
    program = PROGRAM.format(home=str(home), venv=str(venv), site=str(site))
    out = _in_venv(home, SCRIPT.format(program=program))
    caps, result = out["caps"], out["result"]
    assert str(site) in caps["site_paths"] and str(site) in caps["bind_paths"], caps
    assert not any("not readable" in note for note in caps["notes"]), caps["notes"]
    assert result["status"] == "ok", result["stderr"]
    # The package imports; of the home only the path to site-packages exists, read-only. Under
    # a private /tmp that path is rebuilt in the run's own tmpfs, which the run may write to.
    masked = CAPS.private_tmp and any(home.is_relative_to(m) for m in MASKED)
    beside = "done" if masked else "EROFS"
    inside = [site.relative_to(home).parts[0]]  # "venv", or "real" behind the symlink
    assert result["value"] == [42, inside, "ENOENT", "ENOENT", "EROFS", beside]
    assert out["hidden"] == [True]
    assert (home / "secret.txt").read_text() == "precious"
    assert not (site / "planted.py").exists()
    # The masks and binds lived in the run's own mount namespace only.
    assert str(home) not in Path("/proc/self/mountinfo").read_text()


def test_when_binding_cannot_help_the_probe_warns_and_the_run_goes_without(home: Path):
    site = _site(home)
    site.chmod(0o700)  # site-packages itself private: a bind would show the uid nothing
    program = "import privpkg"
    out = _in_venv(home, SCRIPT.format(program=program))
    caps, result = out["caps"], out["result"]
    assert caps["bind_paths"] == [] and str(site) not in caps["site_paths"]
    assert any(str(site) in note and "not readable" in note for note in caps["notes"])
    assert result["status"] == "error" and "No module named 'privpkg'" in result["stderr"]
    assert out["hidden"] == [False]


def _private_top(path: str) -> str | None:
    """The topmost directory above `path` that strangers cannot search, if any."""
    parts = path.split(os.sep)
    above = (os.sep.join(parts[:end]) for end in range(2, len(parts)))
    return next((d for d in above if not os.stat(d).st_mode & 0o001), None)


def _private_installation() -> str | None:
    """This interpreter's installation, when it sits behind a private parent (pyenv in /root)."""
    base = os.path.realpath(sys.base_prefix)
    inside = os.path.realpath(sys.executable).startswith(base + os.sep)
    return base if inside and _private_top(base) else None


@pytest.mark.skipif(_private_installation() is None, reason="this Python is installed in the open")
def test_an_interpreter_installed_in_a_private_home_is_bound_in_whole(home: Path):
    # Offer only the private interpreter, as on a machine without a system Python of this
    # version: its installation is bound in, and the rest of its private parent stays hidden.
    base = _private_installation()
    assert base is not None
    top = _private_top(base)
    assert top is not None
    program = (
        f"import os, sys, json, privpkg\n[privpkg.VALUE, sys.base_prefix, os.listdir({top!r})]"
    )
    script = (
        "import os, sys\n"
        "from flowsteer.isolation import capabilities\n"
        "capabilities._candidates = lambda: [os.path.realpath(sys.executable)]\n"
        + SCRIPT.format(program=program)
    )
    out = _in_venv(home, script)
    caps, result = out["caps"], out["result"]
    assert caps["mode"] in ("namespace+uid", "uid"), caps
    assert caps["interpreter"] == os.path.realpath(sys.executable)
    assert base in caps["bind_paths"] and str(_site(home)) in caps["bind_paths"]
    assert result["status"] == "ok", result["stderr"]
    first = Path(base).relative_to(top).parts[0]
    assert result["value"] == [42, base, [first]]


def test_without_user_namespaces_the_uid_mode_binds_the_venv_too(home: Path):
    # As on a machine where unprivileged user namespaces are off: the bind stage needs only
    # root, not unshare.
    program = f"import os, privpkg\n[privpkg.VALUE, os.listdir({str(home)!r})]"
    script = (
        "import shutil\n"
        "from flowsteer.isolation import capabilities\n"
        "which = shutil.which\n"
        "capabilities.shutil.which = lambda name: None if name == 'unshare' else which(name)\n"
        + SCRIPT.format(program=program)
    )
    out = _in_venv(home, script)
    caps, result = out["caps"], out["result"]
    assert caps["mode"] == "uid" and str(_site(home)) in caps["bind_paths"], caps
    assert result["status"] == "ok", result["stderr"]
    assert result["value"] == [42, ["venv"]]
    assert out["hidden"] == [True]


def test_a_venv_linked_from_a_private_home_to_the_open_imports_without_a_bind_stage():
    # ~/env -> /somewhere/public/venv: the real path is readable as it is, so the run imports
    # from there and pays for no bind stage.
    where = _unmasked_dir()
    home = Path(tempfile.mkdtemp(prefix="sandbox-home-", dir=where)).resolve()
    public = Path(tempfile.mkdtemp(prefix="sandbox-open-", dir=where)).resolve()
    try:
        home.chmod(0o700)
        public.chmod(0o755)
        (public / "venv").mkdir()
        (home / "link").symlink_to(public)
        venv = home / "link" / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = _site(home)
        assert site.is_relative_to(public)
        (site / "privpkg.py").write_text("VALUE = 42\n")
        (site / "flowsteer-checkout.pth").write_text(f"{ROOT}\n")
        out = _in_venv(home, SCRIPT.format(program="import privpkg\nprivpkg.__file__"))
        caps, result = out["caps"], out["result"]
        assert caps["bind_paths"] == [] and str(site) in caps["site_paths"], caps
        assert result["status"] == "ok", result["stderr"]
        assert result["value"] == str(site / "privpkg.py")
    finally:
        shutil.rmtree(home)
        shutil.rmtree(public)
