"""`Engine`: a compiled decode step and compiled prefills sharing a KV cache that lives across
steps, and `generate` (greedy or sampled) on top of them.

The cache is preallocated per `generate` call: for each layer a key and a value buffer of shape
[batch, kv_heads, max_length, head_dim], passed to the compiled steps without a copy (DLPack).
Prefill writes the prompt's keys and values into slots [0, prompt); each decode step attends over
the buffers with the slots not filled yet masked out, and the engine writes the step's new key
and value into slot `past`.

Prompts of different lengths come left-padded with an attention mask, as transformers' generate
takes them; the engine pads further to a multiple of PROMPT_BUCKET so that one prefill build
serves nearby lengths. Every row of the batch then has the same cache length.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ember.errors import CodegenError, InputError

__all__ = ["PROMPT_BUCKET", "Engine", "GenerateStats"]

PROMPT_BUCKET = 8  # prompts are left-padded to a multiple of this many tokens

log = logging.getLogger(__name__)


@dataclass
class GenerateStats:
    """Timings of the last `generate` call: prefill seconds, decode seconds and steps."""

    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    decode_steps: int = 0
    new_tokens: int = 0  # generated tokens, all rows, the first (from prefill) included
    decode_tokens: int = 0  # the tokens produced by decode steps

    @property
    def decode_tokens_per_second(self) -> float:
        """Tokens produced by decode steps (all rows) per second of decoding."""
        return self.decode_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


@dataclass
class Engine:
    """Compiled prefill/decode programs for one model (build with `ember.llm.compile`)."""

    model: Any  # the transformers model (steps are captured from it on first use)
    layers: int
    kv_heads: int
    head_dim: int
    max_length: int
    pad_token_id: int
    eos_token_id: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    stats: GenerateStats = field(default_factory=GenerateStats)
    # ember Programs: (batch, prompt length) -> prefill; (None, 0) -> the decode step for every
    # batch (its batch is symbolic), or (batch, 0) per batch when `symbolic_decode` is off
    programs: dict[tuple[int | None, int], Any] = field(default_factory=dict)

    @property
    def symbolic_decode(self) -> bool:
        """One decode program serves every batch size: unless quantized (its integer kernels
        are built per M), `options["symbolic_batch"]` is False, or the step failed to build
        with a symbolic batch (then it is set False, with a warning)."""
        return self.options.get("weights") is None and self.options.get("symbolic_batch", True)

    def new_cache(self, batch: int) -> list[torch.Tensor]:
        """Zeroed cache buffers k_0, v_0, k_1, ... for `batch` rows."""
        shape = (batch, self.kv_heads, self.max_length, self.head_dim)
        return [torch.zeros(shape) for _ in range(2 * self.layers)]

    def program(self, batch: int, prompt: int) -> Any:
        """The prefill Program for `batch` prompts of `prompt` tokens, or with `prompt` 0 the
        decode step's (inputs: ids, positions, mask [batch, max_length + 1], *cache)."""
        key = (None, 0) if prompt == 0 and self.symbolic_decode else (batch, prompt)
        if key not in self.programs:
            from ember.llm.build import build_step

            try:
                self.programs[key] = build_step(
                    self.model, past=prompt == 0, batch=key[0], new=max(prompt, 1),
                    max_length=self.max_length, options=self.options,
                )  # fmt: skip
            except CodegenError as err:
                if key[0] is not None:
                    raise
                # e.g. Mixtral: its routing's top-k has k = 2 x batch, and ember's topk
                # lowers only a static k
                log.warning("ember.llm: no symbolic-batch decode step (%s); building one per "
                            "batch size", str(err).splitlines()[0])  # fmt: skip
                self.options["symbolic_batch"] = False
                return self.program(batch, prompt)
        return self.programs[key]

    def pad_prompt(
        self, input_ids: Any, attention_mask: Any, max_new_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the prompt's ids, the ids and the mask left-padded to a whole PROMPT_BUCKET, so that
        one prefill build serves nearby lengths); InputError when the mask does not match or
        the prompt and `max_new_tokens` do not fit in max_length."""
        ids = _as_ids(input_ids)
        mask = torch.ones_like(ids) if attention_mask is None else _as_ids(attention_mask)
        if mask.shape != ids.shape:
            raise InputError(
                f"attention_mask has shape {tuple(mask.shape)} but input_ids {tuple(ids.shape)}"
            )
        extra = -ids.shape[1] % PROMPT_BUCKET
        padded = torch.nn.functional.pad(ids, (extra, 0), value=self.pad_token_id)
        mask = torch.nn.functional.pad(mask, (extra, 0), value=0)
        prompt = padded.shape[1]
        if prompt + max_new_tokens > self.max_length:
            raise InputError(
                f"prompt ({prompt}) + max_new_tokens ({max_new_tokens}) exceeds max_length="
                f"{self.max_length}; compile with ember.llm.compile(..., max_length=...) larger"
            )
        return ids, padded, mask

    def step(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        cache: list[torch.Tensor],
    ) -> torch.Tensor:
        """Run prefill (`attention_mask` [batch, new]) or one decode step (`input_ids`
        [batch, 1], `attention_mask` [batch, past + 1]) on the cache, write the new keys and
        values into `cache` and return the last position's logits [batch, vocab]."""
        new = input_ids.shape[1]
        past = attention_mask.shape[1] - new
        if past + new > self.max_length:
            raise InputError(
                f"sequence length {past + new} exceeds the engine's max_length={self.max_length}; "
                f"compile with a larger max_length or generate fewer tokens"
            )
        if past == 0:
            program = self.program(input_ids.shape[0], new)
            arrays = [input_ids, position_ids, attention_mask]
        else:  # the decode step sees every cache slot: unfilled ones are masked
            batch = input_ids.shape[0]
            slots = torch.zeros((batch, self.max_length + 1), dtype=attention_mask.dtype)
            slots[:, :past] = attention_mask[:, :past]
            slots[:, -1] = 1
            program, arrays = self.program(batch, 0), [input_ids, position_ids, slots, *cache]
        outputs = [torch.from_dlpack(t) for t in program.run(arrays)]
        for buffer, update in zip(cache, outputs[1:], strict=True):
            buffer[:, :, past : past + new] = update
        return outputs[0]

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        max_new_tokens: int = 20,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Prompt plus up to `max_new_tokens` new tokens per row, [batch, prompt + new].

        As transformers' generate: greedy unless `do_sample`; a row that produced an EOS token
        continues with `pad_token_id`; generation stops early once every row has. Prompts of
        different lengths must be left-padded with `attention_mask` marking the padding.
        """
        prompt_ids, input_ids, mask = self.pad_prompt(input_ids, attention_mask, max_new_tokens)
        tokens = [prompt_ids]
        batch = input_ids.shape[0]
        cache = self.new_cache(batch)
        unfinished = torch.ones(batch, dtype=torch.bool)
        eos = torch.tensor(self.eos_token_id, dtype=torch.int64)
        stats = GenerateStats()
        start = time.perf_counter()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids = input_ids
        for step in range(max_new_tokens):
            logits = self.step(ids, positions, mask, cache)
            if step == 0:
                stats.prefill_seconds = time.perf_counter() - start
                start = time.perf_counter()
            token = _choose(logits, do_sample, temperature, top_k, generator)
            token = torch.where(unfinished, token, self.pad_token_id)
            tokens.append(token[:, None])
            produced = int(unfinished.sum())
            stats.new_tokens += produced
            stats.decode_tokens += produced if step else 0
            unfinished &= ~torch.isin(token, eos)
            if not unfinished.any() or step == max_new_tokens - 1:
                break
            ids = token[:, None]
            positions = positions[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype)], dim=1)
        stats.decode_seconds = time.perf_counter() - start
        stats.decode_steps = len(tokens) - 2
        self.stats = stats
        return torch.cat(tokens, dim=1)


def _as_ids(array: Any) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    if tensor.dim() != 2:
        raise InputError(f"expected token ids of shape [batch, length], got {tuple(tensor.shape)}")
    return tensor.to(torch.int64).contiguous()


def _choose(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float,
    top_k: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The next token per row: argmax, or a sample from softmax(logits / temperature) over the
    `top_k` best (all when 0)."""
    if not do_sample:
        return logits.argmax(dim=-1)
    scores = logits / max(temperature, 1e-6)
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.shape[-1])).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)[:, 0]
