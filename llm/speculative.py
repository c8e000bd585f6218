"""QSPEC: speculative decoding with one set of 4-bit weights (`speculative="qspec"`).

Each round drafts γ tokens per row with W4A4 decode steps and verifies the γ + 1 positions
[pending token, d_1 .. d_γ] with one W4A16 pass; the longest prefix of drafts equal to the
verifier's greedy choices is accepted, plus the verifier's token after it. Both paths read the
same packed weights (`SharedWeights`, llm/quant.py). The KV cache is shared: drafting writes
slots L .. L + γ - 1 (W4A4 keys/values), verification overwrites slots L .. L + γ with its own
(W4A16) ones, and a row that accepts n drafts keeps slots < L + n + 1; the rest are rolled back
(masked out, overwritten by the next round). Every kept entry is the verifier's and every
emitted token is its argmax, so greedy output equals W4A16 autoregressive decoding.

Rows advance independently (per-sequence acceptance): each keeps its own cache length, position
and slot mask, and the compiled steps take per-row masks and positions (static shapes: one draft
build per batch, one verification build per batch and γ). γ adapts per round to the running
acceptance rate a and the measured cost ratio r of a draft step to a verification: it maximizes
the expected tokens per round, (1 - a^(γ+1)) / (1 - a), over their cost, γ r + 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ember.errors import UnsupportedError, UsageError
from ember.llm.decoder import DecoderStep, attention_bias
from ember.llm.engine import Engine, GenerateStats

__all__ = ["SpeculativeEngine", "SpeculativeStats", "VerifyStep", "quantized_options"]

SMOOTHING = 0.3  # weight of the latest round in the running acceptance rate and cost ratio


def quantized_options(
    model: Any, quantize: Any, speculative: str | None, draft_len: int
) -> dict[str, Any]:
    """Engine options for `ember.llm.compile(quantize=..., speculative=...)`: the shared packed
    weights and which activations the plain steps use."""
    from ember.llm.quant import SharedWeights, quant_config

    if speculative not in (None, "qspec"):
        raise UsageError(f"ember.llm.compile: speculative={speculative!r}; use 'qspec' or None")
    config = quant_config("w4a16" if quantize is None else quantize)
    if speculative == "qspec" and config.scheme != "w4a16":
        raise UsageError(
            f"speculative='qspec' verifies with W4A16 over the shared 4-bit weights: use "
            f"quantize='w4a16' (got scheme {config.scheme!r})"
        )
    if speculative and draft_len < 1:
        raise UsageError(f"draft_len must be at least 1, got {draft_len}")
    return {
        "weights": SharedWeights.from_model(model, config),
        "activation_bits": 16 if config.scheme == "w4a16" else 4,
        "speculative": speculative,
        "draft_len": draft_len,
    }


class VerifyStep(DecoderStep):
    """(input_ids [batch, new], position_ids, attention_mask [batch, max_length + new], *cache)
    -> (logits of every new position [batch, new, vocab], *new_kv): the mask marks the cache
    slots each row attends to; the new positions attend to those and causally to each other."""

    def __init__(self, model: Any) -> None:
        super().__init__(model, past=True)

    def _bias(self, attention_mask: torch.Tensor, new: int, dtype: torch.dtype) -> torch.Tensor:
        """The cache slots the mask marks, and causal attention among the new positions."""
        slots = attention_mask.shape[1] - new
        visible = attention_mask[:, None, None, :slots] != 0
        cached = torch.where(visible, 0.0, torch.finfo(dtype).min).to(dtype)
        causal = attention_bias(attention_mask[:, slots:], new, dtype)
        return torch.cat([cached.expand(-1, -1, new, -1), causal], dim=-1)

    def _logit_positions(self, hidden: torch.Tensor) -> torch.Tensor:
        """Every new position gets logits."""
        return hidden


@dataclass
class SpeculativeStats(GenerateStats):
    """GenerateStats plus, for the last speculative `generate`: drafted and accepted tokens
    (all rows and per row), rounds and the γ of each round."""

    drafted: int = 0
    accepted: int = 0
    rounds: int = 0
    gammas: list[int] = field(default_factory=list)
    row_drafted: list[int] = field(default_factory=list)
    row_accepted: list[int] = field(default_factory=list)

    @property
    def acceptance(self) -> float:
        """Accepted / drafted tokens over all rows."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def row_acceptance(self) -> list[float]:
        return [
            a / d if d else 0.0 for a, d in zip(self.row_accepted, self.row_drafted, strict=True)
        ]


@dataclass
class SpeculativeEngine(Engine):
    """An Engine whose `generate` runs QSPEC (module docstring); `generate(...,
    speculative=False)` is plain W4A16 autoregressive decoding over the same weights."""

    adaptive: bool = True  # adapt γ in [1, draft_len] per round; False: always draft_len
    acceptance_estimate: float = 0.8  # running acceptance rate (starts optimistic)
    cost_ratio: float = 0.5  # running (draft step time) / (verification time)
    stats: GenerateStats = field(default_factory=SpeculativeStats)
    # ("draft", batch, 1) and ("verify", batch, γ + 1) -> programs over the shared weights
    speculative_programs: dict[tuple[str, int, int], Any] = field(default_factory=dict)

    @property
    def draft_len(self) -> int:
        return int(self.options["draft_len"])

    @property
    def weight_bytes(self) -> int:
        """Bytes of the one packed 4-bit weight set both paths read."""
        return int(self.options["weights"].weight_bytes)

    def verifier(self, batch: int, gamma: int) -> Any:
        """The W4A16 pass over γ + 1 new positions (built on first use)."""
        key = ("verify", batch, gamma + 1)
        if key not in self.speculative_programs:
            from ember.frontend.torch import import_module
            from ember.llm.rewrites import apply_rewrites
            from ember.passes import run_pipeline

            step = VerifyStep(self.model)
            ids = torch.zeros((batch, gamma + 1), dtype=torch.int64)
            mask = torch.ones((batch, self.max_length + gamma + 1), dtype=torch.int64)
            inputs = (ids, ids.clone(), mask, *self.new_cache(batch))
            graph, _ = run_pipeline(import_module(step, inputs).graph, self.options["passes"])
            graph = apply_rewrites(graph, self.model, self.options)  # as the decode step's
            options = {**self.options, "activation_bits": 16}
            self.speculative_programs[key] = self.options["weights"].compile(graph, options)
        return self.speculative_programs[key]

    def drafter(self, batch: int) -> Any:
        """The W4A4 decode step (built on first use)."""
        key = ("draft", batch, 1)
        if key not in self.speculative_programs:
            from ember.llm.build import build_step

            options = {**self.options, "activation_bits": 4}
            self.speculative_programs[key] = build_step(
                self.model, past=True, batch=batch, new=1, max_length=self.max_length,
                options=options,
            )  # fmt: skip
        return self.speculative_programs[key]

    def warm(self, batch: int) -> None:
        """Build the draft step and the verifications `generate` may pick (every γ when
        adaptive), so that timed runs do not include builds."""
        self.drafter(batch)
        for gamma in range(1 if self.adaptive else self.draft_len, self.draft_len + 1):
            self.verifier(batch, gamma)

    def choose_gamma(self, limit: int) -> int:
        """γ for the next round: the expected tokens per unit of cost, best in [1, limit]."""
        if not self.adaptive:
            return min(self.draft_len, limit)
        a = min(self.acceptance_estimate, 0.999)

        def rate(g: int) -> float:
            return (1 - a ** (g + 1)) / (1 - a) / (g * self.cost_ratio + 1)

        return max(range(1, min(self.draft_len, limit) + 1), key=rate, default=0)

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        max_new_tokens: int = 20,
        speculative: bool = True,
        draft_len: int | None = None,
        **sampling: Any,
    ) -> torch.Tensor:
        """Greedy QSPEC decoding (same tokens as `speculative=False`, W4A16 autoregressive);
        `draft_len` fixes γ for this call (default: adaptive up to the compiled draft_len)."""
        if not speculative:
            return super().generate(input_ids, attention_mask, max_new_tokens=max_new_tokens,
                                    **sampling)  # fmt: skip
        if sampling.get("do_sample"):
            raise UnsupportedError(
                "speculative='qspec' decodes greedily; do_sample is not supported"
            )
        return _Round.generate(self, input_ids, attention_mask, max_new_tokens, draft_len)


class _Round:
    """The state of one speculative `generate`: per-row cache lengths, positions, slot masks."""

    @staticmethod
    def generate(
        engine: SpeculativeEngine,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        max_new_tokens: int,
        draft_len: int | None,
    ) -> torch.Tensor:
        ids, padded, mask = engine.pad_prompt(input_ids, attention_mask, max_new_tokens)
        batch, prompt = padded.shape
        stats = SpeculativeStats(row_drafted=[0] * batch, row_accepted=[0] * batch)
        cache = engine.new_cache(batch)
        start = time.perf_counter()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        pending = engine.step(padded, positions, mask, cache).argmax(dim=-1)
        stats.prefill_seconds = time.perf_counter() - start
        start = time.perf_counter()
        eos = torch.tensor(engine.eos_token_id, dtype=torch.int64)
        rows: list[list[int]] = [[int(t)] for t in pending]
        done = [bool(torch.isin(pending[b], eos)) or max_new_tokens <= 1 for b in range(batch)]
        lengths = torch.full((batch,), prompt, dtype=torch.int64)
        next_position = positions[:, -1] + 1
        valid = torch.zeros((batch, engine.max_length), dtype=torch.int64)
        valid[:, :prompt] = mask
        while not all(done):
            # drafts past max_new_tokens are dropped: cheaper than building another γ's program
            room = engine.max_length - 1 - int(lengths.max())
            gamma = engine.choose_gamma(room) if draft_len is None else min(draft_len, room)
            drafts, draft_seconds = _draft(engine, pending, lengths, next_position, valid, cache,
                                           gamma)  # fmt: skip
            tick = time.perf_counter()
            verified = _verify(engine, pending, drafts, lengths, next_position, valid, cache)
            verify_seconds = time.perf_counter() - tick
            matches = (drafts == verified[:, :gamma]).long().cumprod(dim=1).sum(dim=1)
            drafted = accepted = 0
            for b in range(batch):
                if done[b]:
                    continue
                n = int(matches[b])
                drafted, accepted = drafted + gamma, accepted + n
                stats.row_drafted[b] += gamma
                stats.row_accepted[b] += n
                emitted = [*drafts[b, :n].tolist(), int(verified[b, n])]
                valid[b, int(lengths[b]) : int(lengths[b]) + n + 1] = 1
                lengths[b] += n + 1
                next_position[b] += n + 1
                pending[b] = emitted[-1]
                for token in emitted:
                    rows[b].append(token)
                    if token in engine.eos_token_id or len(rows[b]) >= max_new_tokens:
                        done[b] = True
                        break
            stats.drafted += drafted
            stats.accepted += accepted
            stats.rounds += 1
            stats.gammas.append(gamma)
            if drafted:
                s = SMOOTHING
                engine.acceptance_estimate += s * (accepted / drafted - engine.acceptance_estimate)
                ratio = draft_seconds / gamma / verify_seconds
                engine.cost_ratio += s * (ratio - engine.cost_ratio)
        stats.decode_seconds = time.perf_counter() - start
        stats.new_tokens = sum(len(r) for r in rows)
        stats.decode_tokens = stats.new_tokens - batch
        stats.decode_steps = stats.rounds
        engine.stats = stats
        width = max(len(r) for r in rows)
        out = torch.full((batch, width), engine.pad_token_id, dtype=torch.int64)
        for b, r in enumerate(rows):
            out[b, : len(r)] = torch.tensor(r)
        return torch.cat([ids, out], dim=1)


def _draft(
    engine: SpeculativeEngine,
    pending: torch.Tensor,
    lengths: torch.Tensor,
    next_position: torch.Tensor,
    valid: torch.Tensor,
    cache: list[torch.Tensor],
    gamma: int,
) -> tuple[torch.Tensor, float]:
    """γ W4A4 decode steps per row from `pending`: the drafts [batch, γ] and their seconds."""
    batch = pending.shape[0]
    program = engine.drafter(batch) if gamma else None
    slots = torch.zeros((batch, engine.max_length + 1), dtype=torch.int64)
    slots[:, :-1] = valid
    slots[:, -1] = 1
    token = pending
    drafts = []
    start = time.perf_counter()
    for i in range(gamma):
        arrays = [token[:, None], (next_position + i)[:, None], slots, *cache]
        outputs = [torch.from_dlpack(t) for t in program.run(arrays)]
        _write(cache, outputs[1:], lengths + i)
        slots[torch.arange(batch), lengths + i] = 1  # the next draft step sees this one
        token = outputs[0].argmax(dim=-1)
        drafts.append(token)
    seconds = time.perf_counter() - start
    empty = torch.zeros((batch, 0), dtype=torch.int64)
    return (torch.stack(drafts, dim=1) if drafts else empty), seconds


def _verify(
    engine: SpeculativeEngine,
    pending: torch.Tensor,
    drafts: torch.Tensor,
    lengths: torch.Tensor,
    next_position: torch.Tensor,
    valid: torch.Tensor,
    cache: list[torch.Tensor],
) -> torch.Tensor:
    """One W4A16 pass over [pending, drafts]: overwrites their cache slots with its own keys and
    values and returns its greedy token after each position, [batch, γ + 1]."""
    batch, gamma = drafts.shape
    ids = torch.cat([pending[:, None], drafts], dim=1)
    positions = next_position[:, None] + torch.arange(gamma + 1)
    mask = torch.cat([valid, torch.ones((batch, gamma + 1), dtype=torch.int64)], dim=1)
    arrays = [ids, positions, mask, *cache]
    outputs = [torch.from_dlpack(t) for t in engine.verifier(batch, gamma).run(arrays)]
    _write(cache, outputs[1:], lengths)
    return outputs[0].argmax(dim=-1)


def _write(cache: list[torch.Tensor], updates: list[torch.Tensor], starts: torch.Tensor) -> None:
    """Write each update [batch, heads, n, dim] into its buffer at slots starts[b] + (0 .. n)."""
    batch, heads, n, dim = updates[0].shape
    slots = starts[:, None] + torch.arange(n)
    index = slots[:, None, :, None].expand(batch, heads, n, dim)
    for buffer, update in zip(cache, updates, strict=True):
        buffer.scatter_(2, index, update)
