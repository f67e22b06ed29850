"""report.html of a small real report, rendered by headless Debian chromium: the screenshot is
not blank and the page made no network request.

Every chromium request other than file:// goes through a trap proxy on 127.0.0.1 (also for
loopback addresses: ``<-loopback>``), which records the request line and answers nothing. A
control page that does fetch an image proves the trap sees requests.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
    "--disable-domain-reliability", "--disable-features=OptimizationHints,MediaRouter",
    "--window-size=1200,1600", "--proxy-bypass-list=<-loopback>",
]  # fmt: skip


def _chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is absent and there is no apt-get to install it")
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True,
                       timeout=600, capture_output=True)  # fmt: skip
    except (subprocess.SubprocessError, OSError) as err:
        pytest.skip(f"chromium could not be installed: {err}")
    return shutil.which("chromium") or pytest.skip("chromium not on PATH after installing")


class TrapProxy:
    """A proxy that records every request line it receives and closes the connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.recv(4096).split(b"\r\n", 1)[0]
                except OSError:
                    line = b"(no request line)"
                self.requests.append(line.decode("latin-1"))

    def close(self) -> None:
        self.sock.close()


# chromium's own service calls (network time, sign-in, search-engine preconnect), made whatever
# the page is: not the page's requests.
BROWSER_HOSTS = ("clients2.google.com", "accounts.google.com", "www.google.com")


def _page_requests(requests: list[str]) -> list[str]:
    return [r for r in requests if not any(f"{h}/" in r or f"{h}:" in r for h in BROWSER_HOSTS)]


def _render(chromium: str, page: Path, shot: Path) -> list[str]:
    proxy = TrapProxy()
    try:
        subprocess.run(
            [chromium, *FLAGS, f"--proxy-server=http://127.0.0.1:{proxy.port}",
             f"--user-data-dir={shot.parent / ('profile-' + shot.stem)}",
             f"--screenshot={shot}", page.as_uri()],
            check=True, timeout=180, capture_output=True,
        )  # fmt: skip
    finally:
        proxy.close()
    return proxy.requests


def test_report_renders_offline_in_chromium(report_run: Path, tmp_path: Path):
    import numpy as np
    from PIL import Image

    chromium = _chromium()
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://example.invalid/x.png">hi</body></html>')
    seen = _page_requests(_render(chromium, control, tmp_path / "control.png"))
    assert any("example.invalid" in r for r in seen), f"the trap missed the image: {seen}"

    shot = tmp_path / "report.png"
    requests = _page_requests(_render(chromium, report_run / "report.html", shot))
    assert requests == [], f"report.html made network requests: {requests}"
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 20, f"the screenshot is blank (pixel std {pixels.std():.1f})"
