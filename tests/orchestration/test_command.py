"""``flowsteer orchestrate`` bad input: a policy server that does not answer is shown and the
session ends cleanly; wrong options name themselves."""

from __future__ import annotations

import json
import socket

import pytest

pytest.importorskip("rich")

from lightning_modules.cli import main

BACKEND = ["--backend", "flowsteer.llm.scripted.ScriptedBackend",
           "--backend-args", json.dumps({"script": ["42"], "when_exhausted": "cycle"})]  # fmt: skip


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_does_not_answer_is_shown(capsys, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    code = main(["orchestrate", "--server", url, "--question", "What is 6 * 7?", "--kind",
                 "math", "--no-interactive", "--save", str(tmp_path / "wf.json"), *BACKEND])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "the policy did not answer" in " ".join(out.split())
    assert json.loads((tmp_path / "wf.json").read_text())  # the (empty) workflow is saved
    assert not (tmp_path / "wf.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--question", "q", "--task", "gsm8k=x.jsonl"], "either --question"),
        (["--question", "q", "--server", "http://x/v1", "--model", "m"], "give one policy"),
        (["--question", "  "], "--question is empty"),
    ],
)
def test_bad_options_name_themselves(capsys, args, message):
    assert main(["orchestrate", *args, *BACKEND]) == 2
    assert message in capsys.readouterr().err
