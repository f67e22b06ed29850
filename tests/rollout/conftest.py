"""Rollout fixtures: the tiny policy, its tokenizer under both chat templates, a scripted engine
that follows the `Engine` protocol exactly, a recording wrapper, and a scripted executor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from flowsteer.canvas import ExecutionResult, WorkflowGraph
from flowsteer.models.tiny import build_tiny_model, build_tokenizer
from flowsteer.rollout.engine import Engine, Generation, GenerationRequest
from flowsteer.tasks import Task

QWEN3_TEMPLATE = Path(__file__).parents[1] / "data" / "qwen3_chat_template.jinja"

# One scripted turn: the text the policy "samples" (tokenised, then the end-of-turn id), or
# explicit ids (no end-of-turn added).
Turn = str | list[int]


class ScriptedEngine:
    """An `Engine` that samples scripted turns, honouring ``max_tokens`` and stop ids exactly as a
    real engine would (a stop id ends the turn and is returned; the budget cuts with "length").

    Args:
        tokenizer: Tokenises text turns.
        script: Turns in order (shared by all requests), or ``(request, call, row) -> turn``.
        abort: ``(call, row)`` pairs answered with ``finish_reason="abort"``.
    """

    def __init__(
        self,
        tokenizer,
        script: Sequence[Turn] | Callable[[GenerationRequest, int, int], Turn],
        abort: Sequence[tuple[int, int]] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self.script = script
        self.abort = set(abort)
        self.eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.calls: list[list[GenerationRequest]] = []
        self.outputs: list[list[Generation]] = []
        self._next = 0
        self._version = 0

    @property
    def weights_version(self) -> int:
        return self._version

    async def sync_weights(self, policy, version: int) -> None:
        self._version = version

    def _turn(self, request: GenerationRequest, call: int, row: int) -> list[int]:
        if callable(self.script):
            turn = self.script(request, call, row)
        else:
            turn = self.script[self._next]
            self._next += 1
        if isinstance(turn, str):
            return [*self.tokenizer.encode(turn, add_special_tokens=False), self.eot]
        return list(turn)

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        call = len(self.calls)
        self.calls.append(list(requests))
        out = []
        for row, r in enumerate(requests):
            if (call, row) in self.abort:
                out.append(Generation([], [], "abort", "scripted abort"))
                continue
            ids = self._turn(r, call, row)[: r.sampling.max_tokens]
            cut = next((k for k, t in enumerate(ids) if t in r.sampling.stop_token_ids), None)
            ids = ids if cut is None else ids[: cut + 1]
            reason = "stop" if cut is not None else "length"
            # Distinct, recognisable log-probs: -(call + 1) - position / 1000.
            lps = [-(call + 1) - k / 1000 for k in range(len(ids))]
            out.append(Generation(ids, lps, reason))
        self.outputs.append(out)
        return out


class RecordingEngine:
    """Wraps a real engine and records every generate call's batch size and generations."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.batch_sizes: list[int] = []
        self.generations: list[Generation] = []

    @property
    def weights_version(self) -> int:
        return self.inner.weights_version

    async def sync_weights(self, policy, version: int) -> None:
        await self.inner.sync_weights(policy, version)

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.batch_sizes.append(len(requests))
        out = await self.inner.generate(requests)
        self.generations += out
        return out


class AnswerExecutor:
    """An `Executor` that answers ``answer`` with fixed usage per run (counts its runs)."""

    def __init__(self, answer: str = "4", calls: int = 2, tokens: int = 30) -> None:
        self.answer, self.calls, self.tokens = answer, calls, tokens
        self.runs = 0

    async def execute(self, graph: WorkflowGraph, task: Task) -> ExecutionResult:
        self.runs += 1
        return ExecutionResult(answer=self.answer, calls=self.calls, tokens=self.tokens)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_policy"))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny tokenizer with its own (prefix-preserving) Qwen3-style template."""
    return build_tokenizer()


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    """The tiny vocabulary under the real Qwen3 chat template (same special tokens)."""
    tok = build_tokenizer()
    tok.chat_template = QWEN3_TEMPLATE.read_text()
    return tok


@pytest.fixture(params=["tiny", "qwen3"])
def any_tokenizer(request, tiny_tokenizer, qwen3_tokenizer):
    return tiny_tokenizer if request.param == "tiny" else qwen3_tokenizer


@pytest.fixture
def math_task() -> Task:
    return Task("toy/0", "toy", "math", "What is 2 + 2?", "4")


@pytest.fixture
def scripted_engine() -> type[ScriptedEngine]:
    return ScriptedEngine


@pytest.fixture
def recording_engine() -> type[RecordingEngine]:
    return RecordingEngine


@pytest.fixture
def answer_executor() -> type[AnswerExecutor]:
    return AnswerExecutor


def empty_canvas_constraint(max_tokens: int = 48):
    """The action grammar of an empty canvas's first turn, with short free text."""
    from flowsteer.canvas import Canvas
    from flowsteer.rollout.action_grammar import ActionGrammar

    canvas = Canvas(Task("t/0", "toy", "math", "What is 2 + 2?", "4"))
    return ActionGrammar(max_think_chars=4, max_prompt_chars=4).for_canvas(canvas, max_tokens)


def grammar_replay(model, tokenizer, prompt, tokens, ebnf: str, stops: Sequence[int]):
    """(log-probs renormalised over the tokens the grammar allowed, allowed raw mass) of
    ``tokens`` after ``prompt``: one float32 transformers forward, the grammar replayed with
    xgrammar, ending on ``stops``. The reference every engine is held to."""
    import torch
    import xgrammar

    with torch.no_grad():
        ids = torch.tensor([[*prompt, *tokens]])
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=logits.shape[-1])
    compiled = xgrammar.GrammarCompiler(info).compile_grammar(ebnf)
    matcher = xgrammar.GrammarMatcher(compiled, override_stop_tokens=list(stops))
    bitmask = xgrammar.allocate_token_bitmask(1, logits.shape[-1])
    logprobs, masses = [], []
    for k, token in enumerate(tokens):
        matcher.fill_next_token_bitmask(bitmask)
        masked = logits[k : k + 1].clone()
        xgrammar.apply_token_bitmask_inplace(masked, bitmask)
        logprobs.append(float(masked.log_softmax(-1)[0, token]))
        masses.append(float((masked.logsumexp(-1) - logits[k].logsumexp(-1)).exp()))
        assert matcher.accept_token(token), f"token {k} ({token}) is outside the grammar"
    assert matcher.is_terminated()
    return logprobs, masses
