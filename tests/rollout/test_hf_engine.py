"""`HFEngine` on the tiny policy: log-probs equal the model's recomputation (at the sampling
temperature), per-request seeds, per-request settings in one batch, stop tokens, modes restored."""

from __future__ import annotations

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from flowsteer.rollout import Engine, GenerationRequest, HFEngine, SamplingParams
from tests.rollout.conftest import empty_canvas_constraint, grammar_replay


@pytest.fixture(scope="module")
def policy(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    return model, tokenizer


def generate(engine, requests):
    return asyncio.run(engine.generate(requests))


def recomputed(model, prompt, ids, temperature: float = 1.0) -> torch.Tensor:
    """log π(ids | prompt) of ``logits / temperature``, one forward pass, no padding."""
    with torch.no_grad():
        logits = model(torch.tensor([list(prompt) + list(ids)])).logits[0].float()
    lp = (logits / temperature).log_softmax(-1)[len(prompt) - 1 : -1]
    return lp.gather(1, torch.tensor(ids)[:, None]).squeeze(1)


def test_follows_the_engine_protocol(policy):
    assert isinstance(HFEngine(*policy), Engine)


def test_logprobs_equal_the_models_recomputation(policy):
    model, tok = policy
    engine = HFEngine(model, tok)
    prompts = [tok.encode("the question answer is"), tok.encode("def solve"), [5, 6]]
    requests = [
        GenerationRequest(p, SamplingParams(max_tokens=12, seed=i)) for i, p in enumerate(prompts)
    ]
    # A top-k/top-p request too: the returned log-prob is of the untruncated distribution.
    requests.append(
        GenerationRequest(prompts[0], SamplingParams(max_tokens=12, seed=9, top_k=20, top_p=0.8))
    )
    for r, g in zip(requests, generate(engine, requests), strict=True):
        assert len(g.token_ids) == len(g.logprobs) == 12 and g.finish_reason == "length"
        expected = recomputed(model, r.prompt_ids, g.token_ids)
        torch.testing.assert_close(torch.tensor(g.logprobs), expected, atol=1e-5, rtol=0)


def test_logprobs_at_a_temperature_are_the_trainers_recomputation(tiny_dir):
    from flowsteer.rl.policy import Policy

    trainer = Policy(str(tiny_dir))
    engine = HFEngine(trainer.model, trainer.tokenizer)
    tok = trainer.tokenizer
    prompts = [tok.encode("the question answer is"), tok.encode("def solve"), [5, 6]]
    requests = [
        GenerationRequest(p, SamplingParams(max_tokens=12, temperature=0.7, seed=i))
        for i, p in enumerate(prompts)
    ]
    # Truncation shapes the sampling only: the log-prob is of the tempered, untruncated one.
    truncated = SamplingParams(max_tokens=12, temperature=0.7, seed=9, top_k=20, top_p=0.8)
    requests.append(GenerationRequest(prompts[0], truncated))
    for r, g in zip(requests, generate(engine, requests), strict=True):
        assert len(g.token_ids) == len(g.logprobs) == 12
        ids = torch.tensor([[*r.prompt_ids, *g.token_ids]])
        with torch.no_grad():
            scored = trainer.token_logprobs(ids, torch.ones_like(ids), temperature=0.7)
        got = torch.tensor(g.logprobs)
        torch.testing.assert_close(got, scored.logprobs[0, len(r.prompt_ids) :], atol=1e-5, rtol=0)
        expected = recomputed(trainer.model, r.prompt_ids, g.token_ids, temperature=0.7)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        untempered = recomputed(trainer.model, r.prompt_ids, g.token_ids)
        assert (got - untempered).abs().max() > 1e-3


def test_greedy_logprobs_are_at_temperature_one(policy):
    model, tok = policy
    prompt = tok.encode("the question")
    greedy = SamplingParams(max_tokens=6, temperature=0.0)
    assert greedy.logprob_temperature == 1.0  # greedy samples no distribution: nothing to divide
    (out,) = generate(HFEngine(model, tok), [GenerationRequest(prompt, greedy)])
    expected = recomputed(model, prompt, out.token_ids)
    torch.testing.assert_close(torch.tensor(out.logprobs), expected, atol=1e-5, rtol=0)


def test_seeded_requests_reproduce_whatever_the_batch(policy):
    model, tok = policy
    engine = HFEngine(model, tok)
    prompt = tok.encode("the question answer")
    alone = generate(engine, [GenerationRequest(prompt, SamplingParams(max_tokens=10, seed=7))])
    batch = generate(
        engine,
        [
            GenerationRequest(tok.encode("def solve"), SamplingParams(max_tokens=6, seed=1)),
            GenerationRequest(prompt, SamplingParams(max_tokens=10, seed=7)),
            GenerationRequest(prompt, SamplingParams(max_tokens=10, seed=8)),
        ],
    )
    # No stop ids: the model's own eos ids must not stop the turn either.
    assert len(alone[0].token_ids) == 10
    assert batch[1].token_ids == alone[0].token_ids
    assert batch[2].token_ids != alone[0].token_ids  # another seed, another sample
    assert len(batch[0].token_ids) == 6  # its own budget inside a longer batch


def test_rows_stop_on_their_own_stop_ids_in_one_batch(policy):
    model, tok = policy
    engine = HFEngine(model, tok)
    prompt = tok.encode("the question answer")
    free = generate(engine, [GenerationRequest(prompt, SamplingParams(max_tokens=10, seed=4))])[0]
    a, b = free.token_ids[2], free.token_ids[6]
    first_a, first_b = free.token_ids.index(a), free.token_ids.index(b)
    assert first_a < first_b  # (the seed is chosen so that the two stops differ)
    out = generate(
        engine,
        [
            GenerationRequest(prompt, SamplingParams(max_tokens=10, seed=4, stop_token_ids=(b,))),
            GenerationRequest(prompt, SamplingParams(max_tokens=10, seed=4, stop_token_ids=(a,))),
            GenerationRequest(prompt, SamplingParams(max_tokens=10, seed=4)),
        ],
    )
    # Each row stops on its own ids only (another row's stop id is an ordinary token to it).
    assert out[0].token_ids == free.token_ids[: first_b + 1] and out[0].finish_reason == "stop"
    assert out[1].token_ids == free.token_ids[: first_a + 1] and out[1].finish_reason == "stop"
    assert out[2].token_ids == free.token_ids and out[2].finish_reason == "length"


def test_finished_rows_leave_the_batch(policy):
    """Each forward pass runs only the rows still decoding, and the survivors' samples and
    log-probs are those they draw alone."""
    model, tok = policy
    engine = HFEngine(model, tok)
    prompt = tok.encode("the question answer")
    budgets = [2, 5, 9]
    widths: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kw: widths.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        out = generate(
            engine,
            [GenerationRequest(prompt, SamplingParams(max_tokens=n, seed=11)) for n in budgets],
        )
    finally:
        hook.remove()
    assert [len(g.token_ids) for g in out] == budgets
    # The prefill, then one pass per token: 3 rows until the first budget, 2, then 1.
    assert widths == [3] * 2 + [2] * 3 + [1] * 4
    alone = generate(engine, [GenerationRequest(prompt, SamplingParams(max_tokens=9, seed=11))])[0]
    assert out[2].token_ids == alone.token_ids
    assert out[2].logprobs == pytest.approx(alone.logprobs, abs=1e-5)


def test_decoding_leaves_the_global_rng_alone(policy):
    model, tok = policy
    engine = HFEngine(model, tok)
    state = torch.get_rng_state()
    generate(engine, [GenerationRequest(tok.encode("def"), SamplingParams(max_tokens=5, seed=2))])
    assert torch.equal(torch.get_rng_state(), state)


def test_greedy_and_sampled_rows_share_a_batch(policy):
    model, tok = policy
    engine = HFEngine(model, tok)
    prompt = tok.encode("the question")
    greedy = SamplingParams(max_tokens=6, temperature=0.0)
    out = generate(
        engine,
        [
            GenerationRequest(prompt, greedy),
            GenerationRequest(prompt, SamplingParams(max_tokens=6, seed=3)),
        ],
    )
    with torch.no_grad():
        ref = model.generate(
            torch.tensor([prompt]), max_new_tokens=6, do_sample=False, eos_token_id=None
        )[0, len(prompt) :].tolist()
    assert out[0].token_ids == ref


def test_stops_on_a_sampled_stop_token_and_returns_it(policy):
    model, tok = policy
    engine = HFEngine(model, tok)
    prompt = tok.encode("the question answer")
    free = generate(engine, [GenerationRequest(prompt, SamplingParams(max_tokens=10, seed=4))])[0]
    stop = free.token_ids[3]
    first = free.token_ids.index(stop)
    stopped = generate(
        engine,
        [GenerationRequest(prompt, SamplingParams(max_tokens=10, seed=4, stop_token_ids=(stop,)))],
    )[0]
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == free.token_ids[: first + 1]
    assert stopped.logprobs == pytest.approx(free.logprobs[: first + 1], abs=1e-6)


def test_mode_is_restored_and_version_recorded(policy):
    model, tok = policy
    engine = HFEngine(model, tok, batch_size=1)
    model.train()
    seen = []
    hook = model.register_forward_pre_hook(lambda m, a: seen.append(m.training))
    try:
        generate(engine, [GenerationRequest([5, 6], SamplingParams(max_tokens=2, seed=0))] * 2)
    finally:
        hook.remove()
    assert seen and not any(seen) and model.training
    model.eval()
    generate(engine, [GenerationRequest([5, 6], SamplingParams(max_tokens=2, seed=0))])
    assert not model.training
    asyncio.run(engine.sync_weights(None, 3))
    assert engine.weights_version == 3


def test_constraints_are_refused_not_ignored(policy):
    engine = HFEngine(*policy)
    request = GenerationRequest([5, 6], SamplingParams(max_tokens=2), constraint=object())
    with pytest.raises(NotImplementedError, match="constraint"):
        generate(engine, [request])


# -- grammar constraints ------------------------------------------------------------------------


def constrained(tok, prompt, seed, constraint, temperature=1.0):
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    params = SamplingParams(
        max_tokens=48, seed=seed, stop_token_ids=(eot,), temperature=temperature
    )
    return GenerationRequest(prompt, params, constraint)


def test_constrained_and_free_rows_share_a_batch(policy):
    """Rows with and without a grammar in one batch: each constrained row is a complete action
    ended by the stop token, the free row is untouched, and every seeded row samples what it
    samples alone."""
    from flowsteer.actions import Action, parse_action

    model, tok = policy
    engine = HFEngine(model, tok)
    grammar = empty_canvas_constraint()
    prompt = tok.encode("the question answer")
    requests = [
        constrained(tok, prompt, 1, grammar),
        constrained(tok, prompt, 2, None),
        constrained(tok, prompt, 3, grammar, temperature=0.0),
    ]
    batch = generate(engine, requests)
    alone = [generate(engine, [r])[0] for r in requests]
    assert [g.token_ids for g in batch] == [g.token_ids for g in alone]
    for g in (batch[0], batch[2]):
        assert g.finish_reason == "stop" and g.error is None
        assert isinstance(parse_action(tok.decode(g.token_ids[:-1])), Action)
        assert 0.0 < g.constraint_mass <= 1.0
    assert batch[1].constraint_mass is None
    torch.testing.assert_close(
        torch.tensor(batch[1].logprobs), recomputed(model, prompt, batch[1].token_ids), atol=1e-5,
        rtol=0,
    )  # fmt: skip


def test_constrained_logprobs_are_renormalised_over_the_allowed_tokens(policy):
    """The returned log-prob is the model's log-softmax over the tokens the grammar allowed at
    that step (the distribution sampled from); the mass is what the raw model put on them."""
    model, tok = policy
    engine = HFEngine(model, tok)
    grammar = empty_canvas_constraint()
    prompt = tok.encode("def solve")
    g = generate(engine, [constrained(tok, prompt, 5, grammar)])[0]
    expected, masses = grammar_replay(
        model, tok, prompt, g.token_ids, grammar.ebnf, [g.token_ids[-1]]
    )
    torch.testing.assert_close(torch.tensor(g.logprobs), torch.tensor(expected), atol=1e-5, rtol=0)
    raw = recomputed(model, prompt, g.token_ids)
    assert (torch.tensor(g.logprobs) >= raw - 1e-6).all()  # renormalising only raises them
    assert g.constraint_mass == pytest.approx(sum(masses) / len(masses), abs=1e-5)


def test_min_tokens_holds_the_stop_ids_until_then(policy):
    model, tok = policy
    engine = HFEngine(model, tok)
    prompt = tok.encode("the question answer")
    stops = tuple(range(0, tok.vocab_size, 2))  # half the vocabulary stops a turn
    free = SamplingParams(max_tokens=12, seed=3, stop_token_ids=stops)
    held = SamplingParams(max_tokens=12, seed=3, stop_token_ids=stops, min_tokens=9)
    early, late = generate(
        engine, [GenerationRequest(prompt, free), GenerationRequest(prompt, held)]
    )
    assert early.finish_reason == "stop" and len(early.token_ids) < 9
    assert len(late.token_ids) >= 9
    assert not set(late.token_ids[:8]) & set(stops)
    assert late.finish_reason == "stop" or len(late.token_ids) == 12
    # min_tokens = max_tokens: fixed length, whatever the stop ids.
    fixed = SamplingParams(max_tokens=12, seed=3, stop_token_ids=stops, min_tokens=12)
    (whole,) = generate(engine, [GenerationRequest(prompt, fixed)])
    assert len(whole.token_ids) == 12 and whole.finish_reason == "length"


def test_min_tokens_out_of_range_is_refused():
    with pytest.raises(ValueError, match="min_tokens must be between 0 and max_tokens"):
        SamplingParams(max_tokens=4, min_tokens=5)
