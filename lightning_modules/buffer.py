"""The rollout buffer one iteration trains on, and the train "dataloader" over its minibatches.

`MinibatchLoader` is what Lightning iterates in a training epoch. It has a fixed length (steps
per iteration, known from the config before any rollout), reads the buffer lazily when the first
minibatch is requested (after ``on_train_epoch_start`` filled it), and is stateful, so a run
resumed in the middle of an iteration continues at the next minibatch of the restored buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, Protocol

from flowsteer.rl.update import MinibatchPlan
from flowsteer.rollout.batch import RolloutBatch


@dataclass(frozen=True)
class IterationBuffer:
    """One iteration's training data.

    Attributes:
        batch: Every episode of this rank, collated (``old_logprobs`` set once scored).
        rows: The rows that train (zero-variance groups may have been dropped).
        plan: The minibatch rows of every step; ``None`` until the old policy has scored it.
        iteration: The RL iteration (training epoch) it belongs to.
    """

    batch: RolloutBatch
    rows: list[int]
    plan: MinibatchPlan | None
    iteration: int

    def state_dict(self) -> dict[str, Any]:
        batch = {f.name: _cpu(getattr(self.batch, f.name)) for f in fields(self.batch)}
        plan = None
        if self.plan is not None:
            plan = {
                "steps": [list(s) for s in self.plan.steps],
                "per_epoch": self.plan.minibatches_per_epoch,
            }
        return {"batch": batch, "rows": list(self.rows), "plan": plan, "iteration": self.iteration}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> IterationBuffer:
        plan = None
        if state["plan"] is not None:
            plan = MinibatchPlan(
                tuple(tuple(s) for s in state["plan"]["steps"]), state["plan"]["per_epoch"]
            )
        return cls(
            batch=RolloutBatch(**state["batch"]),
            rows=list(state["rows"]),
            plan=plan,
            iteration=int(state["iteration"]),
        )


def _cpu(value: Any) -> Any:
    return value.detach().cpu() if hasattr(value, "detach") else value


class MinibatchSource(Protocol):
    """What `MinibatchLoader` reads from the training module (`CWRPOModule` is one)."""

    buffer: IterationBuffer | None
    current_epoch: int

    def steps_per_iteration(self) -> int:
        """Optimizer steps in one iteration, known from the config before any rollout."""

    def start_iteration(self) -> None:
        """Fill the buffer for the current epoch (rollouts, old-policy scoring)."""

    def minibatches(self, start: int) -> Iterator[RolloutBatch]:
        """The current iteration's minibatches from position `start` on."""


class MinibatchLoader:
    """Yields the current iteration's minibatches; its length is the steps per iteration.

    The start is decided when the first minibatch is requested, not in ``__iter__``: Lightning
    may create the iterator before ``on_train_epoch_start`` fills the buffer, and after a resume
    it continues at the saved position only if the buffer is still that iteration's.
    """

    def __init__(self, module: MinibatchSource) -> None:
        self.module = module
        self.position = 0  # minibatches handed out in the current iteration
        self.iteration = -1
        self._resume: tuple[int, int] | None = None  # (iteration, position) from a checkpoint

    def __len__(self) -> int:
        return self.module.steps_per_iteration()

    def __iter__(self) -> Iterator[RolloutBatch]:
        return self._iterate()

    def _iterate(self) -> Iterator[RolloutBatch]:
        buffer = self.module.buffer
        if buffer is None or buffer.iteration != self.module.current_epoch:
            # Lightning 2.6 skips ``on_train_epoch_start`` for the first epoch after resuming
            # from a checkpoint written at an epoch's last step; run the iteration's start here.
            self.module.start_iteration()
            buffer = self.module.buffer
        assert buffer is not None
        start = 0
        if self._resume is not None and self._resume[0] == buffer.iteration:
            start = self._resume[1]
        self._resume = None
        self.iteration, self.position = buffer.iteration, start
        for batch in self.module.minibatches(start):
            self.position += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = (int(state["iteration"]), int(state["position"]))
