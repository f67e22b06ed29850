"""`OrchestrationSession`: the Flow-Director building one workflow with a person in the loop.

The turn loop of `FlowDirector.run`, opened up so that between policy turns a person can add
a natural-language instruction (a user turn the policy answers on its next turn), apply a typed
action directly to the canvas, undo the last edit (canvas *and* conversation return to their
exact earlier state), finish now, or let the policy continue. Nothing here draws or prompts:
the terminal view and the CLI sit on top, and the tests drive the session directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from flowsteer.actions import ParseError, parse_action
from flowsteer.canvas.canvas import Canvas, CanvasSnapshot
from flowsteer.llm.backend import LLMBackend, Message

EventKind = Literal["policy", "typed", "instruction", "undo", "finish", "error"]
MAX_INSTRUCTION_CHARS = 2000
INSTRUCTION_PREFIX = "Instruction from the person steering this workflow: "


@dataclass
class Event:
    """One thing that happened in the session, for the view and the transcript.

    Attributes:
        kind: Who acted: the policy, a typed action, an instruction, an undo, finish, an error.
        text: The action text, instruction or error message.
        accepted: Whether the canvas accepted the action (``None``: not a canvas action).
        observation: The canvas feedback the action produced (``""``: none).
    """

    kind: EventKind
    text: str
    accepted: bool | None = None
    observation: str = ""


@dataclass
class _Saved:
    canvas: CanvasSnapshot
    messages: list[Message]
    label: str


@dataclass
class OrchestrationSession:
    """One interactive episode on `canvas` with `policy` as the Flow-Director.

    Args:
        policy: The Flow-Director, as a chat backend.
        canvas: A fresh canvas for the question.
        sampling: Passed to every ``policy.complete`` call (temperature, max_tokens, seed).
    """

    policy: LLMBackend
    canvas: Canvas
    sampling: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    _undo: list[_Saved] = field(default_factory=list)
    _finished: bool = False

    def __post_init__(self) -> None:
        self.messages = [
            {"role": "system", "content": self.canvas.system_prompt()},
            {"role": "user", "content": self.canvas.reset()},
        ]

    # ------------------------------------------------------------------ state
    @property
    def done(self) -> bool:
        return self._finished or self.canvas.done

    @property
    def answer(self) -> str | None:
        """The answer of the latest execution (``None`` until the workflow ran)."""
        result = self.canvas.last_result
        return None if result is None else result.answer

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def _save(self, label: str) -> None:
        self._undo.append(_Saved(self.canvas.snapshot(), list(self.messages), label))

    def _event(self, event: Event) -> Event:
        self.events.append(event)
        return event

    # ---------------------------------------------------------------- actions
    async def policy_turn(self) -> Event:
        """The policy writes one action from the conversation so far; the canvas applies it."""
        if self.done:
            return self._event(Event("error", "the session is over"))
        sampling = dict(self.sampling)
        if "seed" in sampling and sampling["seed"] is not None:
            sampling["seed"] = sampling["seed"] + self.canvas.turn
        reply = await self.policy.complete(self.messages, **sampling)
        if not reply.ok:
            return self._event(Event("error", f"the policy did not answer: {reply.error}"))
        self._save("policy")
        result = await self.canvas.step(reply.text)
        self.messages += [
            {"role": "assistant", "content": reply.text},
            {"role": "user", "content": result.observation},
        ]
        return self._event(Event("policy", reply.text, result.info.valid, result.observation))

    async def typed(self, text: str) -> Event:
        """Apply a typed action (the policy's grammar) directly to the canvas.

        It joins the conversation as though the policy had written it, so the policy's next
        turn sees the edit and its feedback. A line that does not parse is not applied and
        costs no turn.
        """
        if self.done:
            return self._event(Event("error", "the session is over"))
        action = parse_action(text)
        if isinstance(action, ParseError) and not self.canvas.awaiting:
            return self._event(Event("error", f"not an action: {action.message}"))
        self._save("typed")
        result = await self.canvas.step(action)
        self.messages += [
            {"role": "assistant", "content": text},
            {"role": "user", "content": result.observation},
        ]
        return self._event(Event("typed", text, result.info.valid, result.observation))

    def instruct(self, text: str) -> Event:
        """Add a natural-language instruction as a user turn; the policy answers it next."""
        text = text.strip()
        if not text:
            return self._event(Event("error", "an empty instruction"))
        if len(text) > MAX_INSTRUCTION_CHARS:
            return self._event(
                Event("error", f"the instruction is over {MAX_INSTRUCTION_CHARS} characters")
            )
        if any(ord(c) < 32 and c not in "\n\t" for c in text):
            return self._event(Event("error", "the instruction holds control characters"))
        self._save("instruction")
        self.messages.append({"role": "user", "content": INSTRUCTION_PREFIX + text})
        return self._event(Event("instruction", text))

    def undo(self) -> Event:
        """Return canvas and conversation to the state before the last edit or instruction."""
        if not self._undo:
            return self._event(Event("error", "nothing to undo"))
        saved = self._undo.pop()
        self.canvas.restore(saved.canvas)
        self.messages = saved.messages
        self._finished = False
        return self._event(Event("undo", f"undid the last {saved.label} turn"))

    async def finish(self) -> Event:
        """End now with the workflow as it stands (its answer is the final execution's)."""
        self._finished = True
        result = await self.canvas.final_result()
        answer = None if result is None else result.answer
        return self._event(Event("finish", f"finished; answer: {answer}"))

    async def run_policy(self, max_steps: int | None = None) -> None:
        """Hand control to the policy until the workflow is done (or ``max_steps`` turns)."""
        steps = 0
        while not self.done and (max_steps is None or steps < max_steps):
            event = await self.policy_turn()
            steps += 1
            if event.kind == "error":
                break

    async def handle(self, line: str) -> Event | None:
        """One line from the person: ``/undo``, ``/finish``, ``/continue`` (or an empty line:
        one policy turn), ``/do ACTION`` or a line starting with ``<`` (a typed action),
        anything else an instruction followed by the policy's answer. Returns the last event
        (``None`` for ``/continue`` when the policy ran to the end)."""
        stripped = line.strip()
        if stripped in ("", "/next"):
            return await self.policy_turn()
        if stripped == "/undo":
            return self.undo()
        if stripped == "/finish":
            return await self.finish()
        if stripped == "/continue":
            await self.run_policy()
            return self.events[-1] if self.events else None
        if stripped.startswith("/do "):
            return await self.typed(stripped[4:])
        if stripped.startswith("<"):
            return await self.typed(stripped)
        if stripped.startswith("/"):
            return self._event(Event("error", f"unknown command {stripped.split()[0]!r}"))
        event = self.instruct(stripped)
        if event.kind == "error":
            return event
        return await self.policy_turn()


__all__ = ["Event", "OrchestrationSession"]
