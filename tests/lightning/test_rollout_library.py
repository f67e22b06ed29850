"""The rollout callback's operator library and constrained actions: one library object reaches
the canvas, the executor, the reward and the grammar; a disagreeing executor or reward is
refused at setup; a real `fit` with a plug-in library of new operator names and constrained
actions rejects no turn."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks import RolloutCallback
from flowsteer.canvas.executor import WorkflowExecutor
from flowsteer.llm import ScriptedBackend
from flowsteer.operators.library import OperatorLibrary
from flowsteer.rewards import WorkflowReward
from flowsteer.rewards.structure import StructureReward
from lightning_modules.cli import main
from tests.lightning.conftest import REPO, tiny_config, write_config
from tests.lightning.test_fit import scalars

PLUGIN = REPO / "tests" / "data" / "plugin_library.yaml"


def plugin_library() -> OperatorLibrary:
    """An import-path target for the `library` setting."""
    return OperatorLibrary.load(PLUGIN)


def test_library_setting_reads_a_file_or_an_import_path() -> None:
    assert RolloutCallback(library=str(PLUGIN)).library.names[:2] == ["Sketch", "Solver"]
    by_path = RolloutCallback(library="tests.lightning.test_rollout_library:plugin_library")
    assert "Judge" in by_path.library.checkers
    assert RolloutCallback().library is None  # decided at setup (executor's, else default)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("missing.yaml", "RolloutCallback: library: operator library file 'missing.yaml' does not"),
        ("no_such_module:LIB", "RolloutCallback: library: cannot import operator library"),
        ("plain-words", "is neither a .yaml/.json file nor an import path"),
    ],
)
def test_bad_library_setting_is_one_clear_line(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        RolloutCallback(library=value)
    assert "\n" not in str(caught.value)


def test_one_library_object_reaches_the_executor() -> None:
    executor = WorkflowExecutor(ScriptedBackend(["4"]))  # built from YAML: the default library
    callback = RolloutCallback(executor=executor, library=str(PLUGIN), constrained_actions=True)
    callback._share_library()
    assert executor.library is callback.library
    # Without the setting the executor's own library is the rollout library.
    own = plugin_library()
    callback = RolloutCallback(executor=WorkflowExecutor(ScriptedBackend(["4"]), library=own))
    callback._share_library()
    assert callback.library is own


def test_disagreeing_executor_or_reward_is_refused() -> None:
    narrow = OperatorLibrary.default().restrict(["Plan", "Programmer", "Format"])
    executor = WorkflowExecutor(ScriptedBackend(["4"]), library=narrow)
    callback = RolloutCallback(executor=executor, library=str(PLUGIN))
    with pytest.raises(ValueError, match=r"the executor's operator library .* differs"):
        callback._share_library()
    reward = WorkflowReward(structure=StructureReward(library=narrow))
    callback = RolloutCallback(reward=reward, library=str(PLUGIN))
    with pytest.raises(ValueError, match=r"the reward's operator library .* differs"):
        callback._share_library()


def test_fit_with_a_plugin_library_and_constrained_actions(tmp_path: Path, tiny_policy: Path):
    executor = {
        "class_path": "flowsteer.canvas.executor.WorkflowExecutor",
        "init_args": {
            "backend": {
                "class_path": "flowsteer.llm.ScriptedBackend",
                "init_args": {"script": ["The answer is 4."], "when_exhausted": "repeat_last"},
            },
        },
    }
    config = tiny_config(tmp_path / "run", tiny_policy, epochs=1, executor=executor)
    config["trainer"]["callbacks"][0]["init_args"].update(
        max_turns=3,
        max_new_tokens=64,
        library=str(PLUGIN),
        constrained_actions=True,
        max_think_chars=0,
        max_prompt_chars=8,
    )
    assert main(["fit", "--config", str(write_config(tmp_path / "fit.yaml", config))]) == 0
    logged = scalars(tmp_path / "run" / "tb")
    assert [v for _, v in logged["rollout/invalid_action_rate"]] == [0.0]
    assert 0.0 < logged["rollout/constraint_mass"][0][1] <= 1.0
    assert logged["rollout/turns"][0][1] > 0
    events = next((tmp_path / "run" / "tb").rglob("events.*"))
    acc = EventAccumulator(str(events), size_guidance={"tensors": 0})
    acc.Reload()
    table = acc.Tensors("rollout/samples/text_summary")[0].tensor_proto.string_val[0].decode()
    default_only = set(OperatorLibrary.default().names) - set(plugin_library().names)
    assert not [name for name in default_only if name in table], table
