"""`Policy`: the trainable Flow-Director, any Hugging Face causal LM, with optional LoRA.

It owns what the update needs from a model: per-token log-probs (and entropy) of given token
ids, the reference policy's log-probs for the KL term, the weights the rollout engines load, and
saving. Log-probs follow the index convention of `flowsteer.rollout.trajectory`:
``logprobs[b, t] = log π(input_ids[b, t] | input_ids[b, :t])``, and index 0 is never scored.

The behaviour policy is the one that sampled (docs/design.md §5): log-probs are taken at the
sampling temperature (``logits / T``), and dropout is off by default, because the old log-probs
are scored without it and the engines have none, so the first minibatch's ratio is exactly 1.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from flowsteer.rl.token_logprobs import chunked_logprobs, default_chunk_size

Dtype = Literal["float32", "bfloat16", "float16"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA through peft (paper: r = α = 64 on every linear layer of the blocks).

    Attributes:
        r: Rank of the update matrices.
        alpha: Scaling numerator; the update is scaled by ``alpha / r``.
        dropout: Dropout on the LoRA input during training; zeroed by `Policy` while its
            ``disable_dropout`` is on (the default).
        target_modules: Names of the linear modules that get adapters.
    """

    r: int = 64
    alpha: int = 64
    dropout: float = 0.05
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )


class TokenLogprobs(NamedTuple):
    """Per-token scores of a batch of token ids.

    Attributes:
        logprobs: ``[B, T]`` float32; ``log π(input_ids[b, t] | input_ids[b, :t])`` where tokens
            ``t - 1`` and ``t`` are both real (attention mask 1), 0.0 elsewhere (index 0 always).
        entropy: ``[B, T]`` float32 entropy of the distribution that predicted token ``t``
            (same positions, 0.0 elsewhere), or ``None`` when not asked for.
    """

    logprobs: Tensor
    entropy: Tensor | None


class Policy(torch.nn.Module):
    """A causal LM to train by RL, with its tokenizer and (optionally) a reference policy.

    Args:
        model: A local model directory, or a model name already in the local Hugging Face cache
            (nothing is downloaded where there is no network).
        dtype: Weight dtype.
        attn_implementation: transformers attention implementation (``"sdpa"``, ``"eager"``,
            ``"flash_attention_2"``, …); ``None``: transformers' default.
        gradient_checkpointing: Recompute decoder activations in the backward pass.
        lora: LoRA settings; ``None``: full fine-tuning.
        with_reference: Build the reference policy for the KL term (the trainer asks for it
            when its KL coefficient is above 0): the adapter-disabled model under LoRA (free), a
            frozen copy of the initial weights under full fine-tuning (one more model).
        trust_remote_code: Allow model code shipped with the checkpoint.
        logprob_chunk_size: Most tokens whose vocabulary-sized logits exist at once; ``None``:
            as many as make 1,024 × 151,936 logits (1,024 tokens at Qwen3's vocabulary, every
            position of a batch at a small one: no chunking, no recompute).
        disable_dropout: Set every dropout probability (the model's and LoRA's) to 0, so the
            update trains the policy that sampled and was scored: with dropout the first
            minibatch's ratio is not 1. ``False`` keeps it, with a warning if any is above 0.
    """

    def __init__(
        self,
        model: str,
        *,
        dtype: Dtype = "float32",
        attn_implementation: str | None = None,
        gradient_checkpointing: bool = False,
        lora: LoraSettings | None = None,
        with_reference: bool = False,
        trust_remote_code: bool = False,
        logprob_chunk_size: int | None = None,
        disable_dropout: bool = True,
    ) -> None:
        super().__init__()
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'float16', got {dtype!r}")
        if logprob_chunk_size is not None and logprob_chunk_size < 1:
            raise ValueError(f"logprob_chunk_size must be at least 1, got {logprob_chunk_size}")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = _resolve(model)
        try:
            lm = AutoModelForCausalLM.from_pretrained(
                source,
                dtype=getattr(torch, dtype),
                attn_implementation=attn_implementation,
                trust_remote_code=trust_remote_code,
            )
            self.tokenizer = AutoTokenizer.from_pretrained(
                source, trust_remote_code=trust_remote_code
            )
        except OSError as err:
            raise FileNotFoundError(
                f"could not load model {model!r}: not a model directory and not in the local "
                f"Hugging Face cache ({err})"
            ) from err
        self.name_or_path = source
        self.logprob_chunk_size = logprob_chunk_size or default_chunk_size(
            lm.config.get_text_config().vocab_size
        )
        self._logit_transform = _logit_transform(lm.config)
        _check_head_reproduces_logits(lm, self._logit_transform)

        self.reference_model: torch.nn.Module | None = None
        if with_reference and lora is None:
            self.reference_model = copy.deepcopy(lm).requires_grad_(False).eval()
        if gradient_checkpointing:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.is_lora = lora is not None
        self.has_reference = with_reference
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
                task_type="CAUSAL_LM",
            )
            self.model = get_peft_model(lm, config)
        else:
            self.model = lm
        if disable_dropout:
            for module in (self.model, self.reference_model):
                if module is not None:
                    _zero_dropout(module)
        elif active := _active_dropout(self.model):
            logger.warning(
                "Policy: disable_dropout=False keeps dropout on during RL (%s); the old "
                "log-probs are scored without it, so the ratio is not 1 on the first minibatch. "
                "Set disable_dropout: true (the default) or those probabilities to 0.",
                ", ".join(active),
            )

    @property
    def dropout_free(self) -> bool:
        """No dropout probability above 0: train- and eval-mode forwards give the same log-probs."""
        return not _active_dropout(self.model)

    # ---- log-probs ------------------------------------------------------------------------

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        with_entropy: bool = False,
        reference: bool = False,
        temperature: float = 1.0,
        score_mask: Tensor | None = None,
    ) -> TokenLogprobs:
        """`token_logprobs` (or, with ``reference``, the reference policy's log-probs).

        Both public methods go through here, via ``__call__``, so the hooks of a wrapper such
        as FSDP's ``fully_shard`` or DDP run around all the work.
        """
        args = (input_ids, attention_mask, with_entropy, temperature, score_mask)
        if not reference:
            return self._logprobs(self._causal_lm(), *args)
        if self.reference_model is not None:
            return self._logprobs(self.reference_model, *args)
        with self.model.disable_adapter(), _eval_mode(self.model):
            return self._logprobs(self._causal_lm(), *args)

    def token_logprobs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        *,
        with_entropy: bool = False,
        temperature: float = 1.0,
        score_mask: Tensor | None = None,
    ) -> TokenLogprobs:
        """Log-probs (and entropy) of every token given its prefix, under the trained model.

        The decoder runs once over the batch; the LM head and log-softmax then run over at most
        ``logprob_chunk_size`` tokens at a time (see `flowsteer.rl.token_logprobs`). Position ids
        count real tokens only, so left- and right-padded batches score alike. The work happens
        in `forward`, called through the module, so that a wrapper's hooks (FSDP's
        ``fully_shard`` gathering the embeddings and head) run around it.

        Args:
            input_ids: ``[B, T]`` token ids.
            attention_mask: ``[B, T]``, 1 on real tokens, 0 on padding.
            with_entropy: Also return per-token entropies.
            temperature: Score the distribution of ``logits / temperature``: the sampling
                temperature, so that the log-probs are of the policy that sampled (greedy
                decoding, temperature 0, samples no distribution: its callers pass 1, see
                `SamplingParams.logprob_temperature`).
            score_mask: ``[B, T]``, nonzero where a log-prob is wanted (the loss mask); the LM
                head and log-softmax, most of the work at a large vocabulary, then run only
                there, and every other position is 0. ``None`` scores every real token.

        Returns:
            `TokenLogprobs` with ``[B, T]`` float32 tensors, differentiable in the trainable
            parameters when gradients are enabled.
        """
        return self(
            input_ids,
            attention_mask,
            with_entropy=with_entropy,
            temperature=temperature,
            score_mask=score_mask,
        )

    def reference_logprobs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        *,
        temperature: float = 1.0,
        score_mask: Tensor | None = None,
    ) -> Tensor:
        """``[B, T]`` log-probs under the reference policy (no gradient), same convention and
        the same ``temperature`` as the policy's, so the KL compares like with like.

        Raises:
            RuntimeError: The policy was built without a reference (``with_reference=False``).
        """
        if not self.has_reference:
            raise RuntimeError(
                "this Policy has no reference model: build it with with_reference=True "
                "(the trainer does so when kl_coef > 0)"
            )
        with torch.no_grad():
            return self(
                input_ids,
                attention_mask,
                reference=True,
                temperature=temperature,
                score_mask=score_mask,
            ).logprobs

    def _causal_lm(self) -> torch.nn.Module:
        """The HF causal LM itself (inside the peft wrapper, adapters injected, under LoRA)."""
        return self.model.get_base_model() if self.is_lora else self.model

    def _logprobs(
        self,
        lm: torch.nn.Module,
        input_ids: Tensor,
        attention_mask: Tensor,
        with_entropy: bool,
        temperature: float,
        score_mask: Tensor | None = None,
    ) -> TokenLogprobs:
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be [B, T]; got "
                f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}"
            )
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(
                f"temperature must be a positive number (greedy decoding scores at 1), "
                f"got {temperature}"
            )
        real = attention_mask.bool()  # [B, T]
        position_ids = (real.long().cumsum(-1) - 1).clamp(min=0)  # [B, T]
        hidden = (
            lm.get_decoder()(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
            ).last_hidden_state  # [B, T, H]
        )
        scored = real[:, 1:] & real[:, :-1]  # [B, T-1]: target t and its context end t-1
        every = scored
        if score_mask is not None:
            if score_mask.shape != input_ids.shape:
                raise ValueError(
                    f"score_mask must be [B, T] like input_ids {tuple(input_ids.shape)}; "
                    f"got {tuple(score_mask.shape)}"
                )
            scored = scored & score_mask[:, 1:].bool()  # the head runs only where it is needed
        head = lm.get_output_embeddings()
        head_trainable = any(p.requires_grad for p in head.parameters())
        transform = self._logit_transform

        def logits(h: Tensor) -> Tensor:  # [n, H] -> [n, V] float32, at the temperature
            z = transform(head(h).float())
            return z if temperature == 1.0 else z / temperature

        flat_lp, flat_ent = chunked_logprobs(
            hidden[:, :-1][scored],  # [N, H]
            input_ids[:, 1:][scored],  # [N]
            logits,
            chunk_size=self.logprob_chunk_size,
            with_entropy=with_entropy,
            head_trainable=head_trainable,
        )

        if flat_lp.numel() == 0 and every.any() and torch.is_grad_enabled():
            # Nothing to score (a micro-batch of episodes without a sampled token): the head
            # still runs on one token, times 0, so every parameter gets its (zero) gradient,
            # which DDP's and FSDP's gradient reduction wait for.
            probe, _ = chunked_logprobs(
                hidden[:, :-1][every][:1],
                input_ids[:, 1:][every][:1],
                logits,
                chunk_size=1,
                head_trainable=head_trainable,
            )
            flat_lp = flat_lp + probe.sum() * 0.0

        def place(flat: Tensor) -> Tensor:  # [N] -> [B, T], index 0 and unscored slots 0.0
            grid = torch.zeros(scored.shape, dtype=flat.dtype, device=flat.device)
            if flat.numel() == 0 and flat.requires_grad:
                return F.pad(grid, (1, 0)) + flat.sum()  # zeros, still in the graph
            return F.pad(grid.masked_scatter(scored, flat), (1, 0))

        return TokenLogprobs(place(flat_lp), place(flat_ent) if with_entropy else None)

    # ---- weights and saving ---------------------------------------------------------------

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the optimizer updates (LoRA matrices, or every weight)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def merged_state_items(self) -> Iterator[tuple[str, Tensor]]:
        """Full weights with LoRA merged, named as the base model's ``state_dict`` keys.

        This is what a rollout engine loads (vLLM's ``load_weights``). Under LoRA each adapted
        weight is yielded as a new tensor ``W + ΔW`` (peft's own ``get_delta_weight``); every
        other tensor is the live one, detached. The live model is never modified.
        """
        if not self.is_lora:
            for key, tensor in self.model.state_dict().items():
                yield key, _full(tensor)
            return
        from peft.tuners.lora import LoraLayer

        base = self._causal_lm()
        adapted = {name: m for name, m in base.named_modules() if isinstance(m, LoraLayer)}
        with torch.no_grad():
            for key, tensor in base.state_dict().items():
                path = key.split(".")
                if any(part.startswith("lora_") for part in path):
                    continue
                tensor = _full(tensor)
                if "base_layer" not in path:
                    yield key, tensor
                    continue
                owner = ".".join(path[: path.index("base_layer")])
                name = key.replace(".base_layer.", ".", 1)
                layer = adapted.get(owner)
                if layer is None or path[-1] != "weight" or layer.merged or layer.disable_adapters:
                    yield name, tensor
                    continue
                merged = tensor.clone()
                for adapter in layer.active_adapters:
                    if adapter in layer.lora_A:
                        merged += _full(layer.get_delta_weight(adapter)).to(merged.dtype)
                yield name, merged

    def save_adapter(self, path: str | Path, *, write: bool = True) -> None:
        """Write the peft adapter (``adapter_config.json`` + weights) to ``path`` (LoRA only).

        Sharded (FSDP2) LoRA weights are gathered to full tensors first: peft cannot save
        DTensors. The gather is a collective, so under FSDP2 every rank must call this; pass
        ``write=False`` on all ranks but one so that exactly one writes the directory.
        """
        if not self.is_lora:
            raise RuntimeError("save_adapter needs a LoRA policy; use save_pretrained instead")
        with torch.no_grad():
            state = {
                key: _full(tensor).detach().cpu()
                for key, tensor in self.model.state_dict().items()
                if "lora_" in key
            }
        if write:
            self.model.save_pretrained(str(path), state_dict=state)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the full model (LoRA merged) and the tokenizer, loadable by ``from_pretrained``."""
        lm = self._causal_lm()
        if self.is_lora:
            lm.save_pretrained(str(path), state_dict=dict(self.merged_state_items()))
        else:
            lm.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))

    def train(self, mode: bool = True) -> Policy:
        """As `torch.nn.Module.train`, but the frozen reference copy always stays in eval mode."""
        super().train(mode)
        if self.reference_model is not None:
            self.reference_model.eval()
        return self


def _resolve(model: str) -> str:
    """A local directory as a string, or the name to look up in the local hub cache."""
    path = Path(model).expanduser()
    looks_local = path.is_absolute() or model.startswith((".", "~")) or path.exists()
    if looks_local:
        if not path.is_dir():
            raise FileNotFoundError(f"model directory {path} does not exist")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model directory {path} has no config.json")
        return str(path)
    return model


def _logit_transform(config):
    """What the model's own forward does to ``lm_head`` outputs, as a function of logits.

    Gemma-family final soft-capping (``cap · tanh(z / cap)``), Cohere's ``logit_scale``
    multiplier and Granite's ``logits_scaling`` divisor are the transforms transformers
    applies after the head; anything else is caught by `_check_head_reproduces_logits`.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    softcap = getattr(text, "final_logit_softcapping", None)
    scale = getattr(text, "logit_scale", None)
    divisor = getattr(text, "logits_scaling", None)

    def transform(logits: Tensor) -> Tensor:
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        if scale is not None:
            logits = logits * scale
        if divisor is not None:
            logits = logits / divisor
        return logits

    return transform


def _check_head_reproduces_logits(lm, transform) -> None:
    """Refuse models whose logits are not ``transform(head(decoder(x)))``: a short probe."""
    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    if head is None or decoder is lm:
        raise ValueError(
            f"{type(lm).__name__} does not expose a separate decoder and LM head "
            "(get_decoder / get_output_embeddings); Policy cannot chunk its log-probs"
        )
    ids = torch.arange(1, 9, device=lm.device).unsqueeze(0) % lm.config.get_text_config().vocab_size
    with torch.no_grad(), _eval_mode(lm):
        expected = lm(input_ids=ids, use_cache=False).logits.float()
        out = decoder(input_ids=ids, use_cache=False)
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            raise ValueError(f"{type(decoder).__name__} does not return last_hidden_state")
        got = transform(head(hidden).float())
    tol = 1e-4 if lm.dtype == torch.float32 else 3e-2
    scale = expected.abs().max().clamp(min=1.0)
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=tol * scale, rtol=0):
        raise ValueError(
            f"{type(lm).__name__}: the LM head applied to the decoder's hidden states does not "
            "reproduce the model's logits (an unknown logit transform?); Policy cannot compute "
            "its log-probs in chunks"
        )


def _dropout_sites(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module, str]]:
    """Every dropout probability in ``model``: ``(kind, owner, attribute)``.

    ``nn.Dropout`` modules (LoRA's ``lora_dropout`` among them) hold theirs in ``p``; attention
    code in transformers applies dropout functionally from a float attribute such as
    ``attention_dropout``, so any float instance attribute named ``*dropout*`` counts too.
    """
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout):
            parts = [part for part in name.split(".") if "dropout" in part]
            yield (parts[-1] if parts else "dropout"), module, "p"
        for attribute, value in vars(module).items():
            if "dropout" in attribute and isinstance(value, float):
                yield attribute, module, attribute


def _active_dropout(model: torch.nn.Module) -> list[str]:
    """The dropout probabilities above 0, as sorted ``kind=p`` strings (for the warning)."""
    active = {
        f"{kind}={getattr(owner, attribute):g}"
        for kind, owner, attribute in _dropout_sites(model)
        if getattr(owner, attribute) > 0
    }
    return sorted(active)


def _zero_dropout(model: torch.nn.Module) -> None:
    """Set every dropout probability in ``model`` to 0 (TRL's ``disable_dropout`` zeroes the
    ``nn.Dropout`` modules; the functional attention dropout needs its attribute zeroed too)."""
    for _, owner, attribute in list(_dropout_sites(model)):
        setattr(owner, attribute, 0.0)


def _full(tensor: Tensor) -> Tensor:
    """The whole tensor of a sharded DTensor (FSDP2; a collective: every rank must call it)."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


@contextmanager
def _eval_mode(module: torch.nn.Module):
    """Eval mode inside the block (no dropout), each submodule's own mode restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
