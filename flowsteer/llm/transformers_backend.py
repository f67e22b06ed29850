"""Backend LLM run in-process with Hugging Face transformers (CPU works).

A workflow fires many operator calls at once (parallel branches, many episodes), and a local
model answers them far faster in one padded ``generate()`` than one by one. So `complete`
only enqueues its request; a single worker thread gathers whatever arrives within
`batch_wait_ms` (up to `max_batch_size`), renders the chats with the tokenizer's chat template,
left-pads them (decoder-only models continue from the right edge) and generates the batch. The
event loop never blocks on the model, and one thread owns the model, which is not thread-safe.

torch and transformers are imported when the backend is constructed, never at module import,
so the text side of FlowSteer stays free of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flowsteer.llm.backend import (
    BackendStats,
    Completion,
    Message,
    SamplingParams,
    Usage,
    validate_messages,
)

DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")


@dataclass
class _Request:
    """One queued `complete` call, answered through its loop's future."""

    chat: list[Message]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Completion]
    enqueued_at: float = field(default_factory=time.monotonic)

    def resolve(self, completion: Completion) -> None:
        def _set() -> None:
            if not self.future.done():  # the caller may have been cancelled meanwhile
                self.future.set_result(completion)

        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
            self.loop.call_soon_threadsafe(_set)


class TransformersBackend:
    """A local causal LM that batches concurrent `complete` calls into one ``generate()``.

    Args:
        model_path: Directory with a saved model and tokenizer (``save_pretrained`` layout);
            loaded with ``local_files_only``, nothing is downloaded. The tokenizer must have a
            chat template.
        device: Torch device, e.g. ``"cpu"`` or ``"cuda:0"``.
        dtype: Weight dtype.
        max_batch_size: Most requests in one ``generate()`` call.
        batch_wait_ms: How long the worker waits for more requests after the first one
            arrives before generating (latency traded for batch size).
        max_new_tokens: Default completion budget when a call does not set ``max_tokens``.
        temperature: Default temperature when a call does not set one (``0``: greedy).
        top_p: Default nucleus mass when a call does not set one.
        max_prompt_tokens: Longer rendered prompts get an error value instead of running.
        enable_thinking: Passed to the chat template when not ``None`` (Qwen3 templates use it
            to switch the ``<think>`` block on or off).
    """

    def __init__(
        self,
        model_path: str,
        device: str = "cpu",
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_prompt_tokens: int = 8192,
        enable_thinking: bool | None = None,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {batch_wait_ms}")
        if max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
        if not Path(model_path).is_dir():
            raise ValueError(f"model_path {model_path!r} is not a directory with a saved model")
        self.model_path = str(model_path)
        self.device = device
        self.dtype = dtype
        self.max_batch_size = int(max_batch_size)
        self.batch_wait_ms = float(batch_wait_ms)
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.enable_thinking = enable_thinking
        self.defaults = SamplingParams.from_kwargs(
            {"temperature": temperature, "max_tokens": max_new_tokens, "top_p": top_p}
        )
        self._load()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=getattr(torch, self.dtype), local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load a causal LM from {self.model_path!r}: {exc}") from exc
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"the tokenizer in {self.model_path!r} has no chat template; "
                "a backend LLM must be a chat model"
            )
        tokenizer.padding_side = "left"  # generation continues from the right edge
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
        self._torch = torch
        self._tokenizer = tokenizer
        self._model = model.to(self.device).eval()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._stats_lock = threading.Lock()
        self._stats = BackendStats()
        self.generate_calls = 0
        """How many ``generate()`` calls ran (fewer than requests when batching works)."""
        self.batch_sizes: list[int] = []
        """Size of each ``generate()`` batch, in order."""
        self._worker = threading.Thread(target=self._work, name="transformers-backend", daemon=True)
        self._worker.start()

    # -- plumbing ---------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        keep = (
            "model_path",
            "device",
            "dtype",
            "max_batch_size",
            "batch_wait_ms",
            "max_prompt_tokens",
            "enable_thinking",
            "defaults",
        )
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load()  # a copy reloads the weights from model_path rather than pickling them

    def __repr__(self) -> str:
        return (
            f"TransformersBackend(model_path={self.model_path!r}, device={self.device!r}, "
            f"dtype={self.dtype!r}, max_batch_size={self.max_batch_size}, "
            f"batch_wait_ms={self.batch_wait_ms})"
        )

    @property
    def stats(self) -> BackendStats:
        return self._stats

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            self._stats = self._stats.plus(**deltas)

    def close(self) -> None:
        """Stop the worker thread after the queued requests are answered."""
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=60)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # -- the call ---------------------------------------------------------------------------

    async def complete(self, messages: Sequence[Message], **sampling: Any) -> Completion:
        """Queue a chat for the next batch and await its completion; never raises.

        Args:
            messages: OpenAI-style chat messages.
            **sampling: ``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``seed``.
                Requests batch together only when their sampling parameters are equal.
        """
        start = time.monotonic()
        self._count(calls=1)
        try:
            chat = validate_messages(messages)
            params = SamplingParams.from_kwargs(sampling).merged_over(self.defaults)
        except ValueError as exc:
            self._count(failures=1)
            return Completion.failure(f"invalid request: {exc}", attempts=0)
        if not self._worker.is_alive():
            self._count(failures=1)
            return Completion.failure("backend is closed", attempts=0)
        loop = asyncio.get_running_loop()
        request = _Request(chat, params, loop, loop.create_future())
        self._queue.put(request)
        completion = await request.future
        if not completion.ok:
            self._count(failures=1)
        return completion.with_latency(time.monotonic() - start)

    # -- the worker thread ------------------------------------------------------------------

    def _work(self) -> None:
        pending: list[_Request] = []
        stopping = False
        while not stopping or pending:
            if not pending:
                item = self._queue.get()
                if item is None:
                    break
                pending.append(item)
            deadline = pending[0].enqueued_at + self.batch_wait_ms / 1000.0
            while not stopping and len(pending) < self.max_batch_size * 4:
                timeout = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=timeout)
                        if timeout > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    pending.append(item)
            # One batch: the oldest request plus others with the same sampling parameters.
            key = pending[0].params
            batch = [r for r in pending if r.params == key][: self.max_batch_size]
            taken = {id(r) for r in batch}
            pending = [r for r in pending if id(r) not in taken]
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Request]) -> None:
        runnable: list[tuple[_Request, str]] = []
        for request in batch:
            try:
                kwargs = (
                    {}
                    if self.enable_thinking is None
                    else {"enable_thinking": self.enable_thinking}
                )
                text = self._tokenizer.apply_chat_template(
                    request.chat, tokenize=False, add_generation_prompt=True, **kwargs
                )
            except Exception as exc:
                request.resolve(Completion.failure(f"chat template failed: {exc}"))
                continue
            n_tokens = len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
            if n_tokens > self.max_prompt_tokens:
                request.resolve(
                    Completion.failure(
                        f"prompt has {n_tokens} tokens, more than max_prompt_tokens="
                        f"{self.max_prompt_tokens}"
                    )
                )
                continue
            runnable.append((request, text))
        if not runnable:
            return
        try:
            results = self._generate([text for _, text in runnable], runnable[0][0].params)
        except Exception as exc:  # OOM, a bad dtype on this device, ...: fail the batch only
            for request, _ in runnable:
                request.resolve(
                    Completion.failure(f"generation failed: {type(exc).__name__}: {exc}"[:500])
                )
            return
        for (request, _), completion in zip(runnable, results, strict=True):
            request.resolve(completion)

    def _generate(self, texts: list[str], params: SamplingParams) -> list[Completion]:
        torch = self._torch
        enc = self._tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        greedy = not params.temperature
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "do_sample": not greedy,
            "pad_token_id": self._tokenizer.pad_token_id,
        }
        if not greedy:
            gen_kwargs["temperature"] = params.temperature
            gen_kwargs["top_p"] = params.top_p
        else:  # silence the "sampling flags set but do_sample=False" warnings
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            gen_kwargs["stop_strings"] = list(params.stop)
            gen_kwargs["tokenizer"] = self._tokenizer
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self._model.generate(**enc, **gen_kwargs)
        self.generate_calls += 1
        self.batch_sizes.append(len(texts))
        prompt_len = enc["input_ids"].shape[1]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        completions = []
        for row, n_prompt in zip(out[:, prompt_len:].tolist(), prompt_lens, strict=True):
            ended = next((i for i, t in enumerate(row) if t in self._eos_ids), None)
            tokens = row if ended is None else row[:ended]
            text = self._tokenizer.decode(tokens, skip_special_tokens=True)
            finish = "stop" if ended is not None else "length"
            if params.stop:
                cut = min((i for s in params.stop if (i := text.find(s)) >= 0), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            usage = Usage(
                prompt_tokens=int(n_prompt),
                completion_tokens=len(tokens) + (ended is not None),
            )
            self._count(
                requests=1,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
            if not text.strip():
                completions.append(
                    Completion.failure(f"empty content (finish_reason={finish})", usage=usage)
                )
            else:
                completions.append(Completion(text=text, usage=usage, finish_reason=finish))
        return completions
