"""``flowsteer orchestrate`` driven through a real pseudo-terminal with a scripted policy: an
instruction that reaches the policy's next context, a typed action, undo, --save and Ctrl-C."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")
pytest.importorskip("rich")

ROOT = Path(__file__).resolve().parents[2]
REPLIES = [
    "<action>add</action><operator>Custom</operator>",
    "compute six times seven",
    "<action>add</action><operator>Plan</operator>",
    "plan it",
    "<action>finish</action>",
]
ADD_FORMAT = "<action>add</action><operator>Format</operator>"
INSTRUCTION = "use two Programmers in parallel"


@pytest.mark.timeout(240)
def test_steer_one_workflow_in_a_pty(tmp_path):
    log = tmp_path / "policy.jsonl"
    save = tmp_path / "wf.json"
    args = [
        "-m", "lightning_modules.cli", "orchestrate",
        "--policy-class", "tests.orchestration.recording_policy.RecordingPolicy",
        "--policy-args", json.dumps({"replies": REPLIES, "log": str(log)}),
        "--backend", "flowsteer.llm.scripted.ScriptedBackend",
        "--backend-args", json.dumps({"script": ["so \\boxed{42}"], "when_exhausted": "cycle"}),
        "--question", "What is 6 * 7?", "--kind", "math", "--save", str(save),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]), "COLUMNS": "100"}
    child = pexpect.spawn(sys.executable, args, cwd=str(ROOT), env=env, timeout=120,
                          encoding="utf-8", dimensions=(60, 100))  # fmt: skip
    try:
        child.expect("flowsteer> ")
        child.sendline("")  # the policy's turn 1: add Custom
        child.expect("flowsteer> ")
        child.sendline("")  # turn 2: its prompt; the workflow runs
        child.expect("answer: 42")
        child.expect("flowsteer> ")
        child.sendline(INSTRUCTION)  # joins the conversation; the policy answers (adds Plan)
        child.expect("Custom -> Plan")
        child.expect("flowsteer> ")
        received = [json.loads(line) for line in log.read_text().splitlines()]
        assert received[-1][-1] == {
            "role": "user",
            "content": "Instruction from the person steering this workflow: " + INSTRUCTION,
        }
        assert all(INSTRUCTION not in json.dumps(r) for r in received[:-1])
        child.sendline("/undo")  # back to before the instruction: Custom only, answer 42
        child.expect("undid the last policy turn")
        child.expect(r"DSL: Custom +│")
        child.expect("flowsteer> ")
        child.sendline("<action>add</action><operator>Wizard</operator>")  # bad input goes on
        child.expect("rejected")
        child.expect("flowsteer> ")
        child.sendline(ADD_FORMAT)  # a typed action, applied directly
        child.expect("accepted")
        child.expect("awaiting the prompt of")
        child.expect("flowsteer> ")
        child.sendintr()  # Ctrl-C: ends cleanly, saves what exists
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130, child.before
    graph = json.loads(save.read_text())
    assert "Format" in json.dumps(graph) and "Plan" not in json.dumps(graph)
    assert save.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
