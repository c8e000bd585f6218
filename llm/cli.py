"""`ember generate`: compile a transformers causal LM with `ember.llm` and generate from a random
prompt, reporting prefill time and decode tokens/s. Glue only: one call into `ember.llm`."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_generate_command"]

_EXAMPLE = "ember generate tests/llm/factories.py:llama --batch 2 --max-new-tokens 32"


def add_generate_command(sub: Any) -> None:
    """Add the `generate` subcommand to the CLI's subparsers."""
    summary = "generate tokens with a compiled KV-cache decoder (ember.llm); prints tokens/s"
    p = sub.add_parser(
        "generate",
        help=summary,
        description=f"{summary}\n\nexample:\n  {_EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        metavar="MODULE:FACTORY",
        help="package.module:factory or file.py:factory returning a transformers causal LM "
        "(or (model, example_inputs))",
    )
    p.add_argument("--batch", type=int, default=1, help="rows of random prompts (default 1)")
    p.add_argument("--prompt-length", type=int, default=16, help="prompt tokens (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate (default 32)")
    p.add_argument("--max-length", type=int, default=0, help="KV cache slots (default: enough)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompt (default 0)")
    p.add_argument("--quantize", default=None, help="w4a16 or w4a4[:group=N,...] (4-bit weights)")
    p.add_argument("--speculative", choices=["qspec"], default=None,
                   help="qspec: W4A4 drafts verified by W4A16 over one 4-bit weight set")  # fmt: skip
    p.add_argument("--draft-len", type=int, default=4, help="QSPEC's largest γ (default 4)")
    p.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    import torch

    import ember.llm
    from ember.llm.engine import PROMPT_BUCKET
    from ember.quantize import parse_quantize

    made = _call_factory(args.model)
    model = made[0] if isinstance(made, tuple) else made
    padded = -(-args.prompt_length // PROMPT_BUCKET) * PROMPT_BUCKET
    quantize = None if args.quantize is None else parse_quantize(args.quantize)
    engine = ember.llm.compile(
        model, max_length=args.max_length or padded + args.max_new_tokens, quantize=quantize,
        speculative=args.speculative, draft_len=args.draft_len,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch, args.prompt_length)
    prompt = torch.randint(0, model.config.vocab_size, shape, generator=generator)
    engine.generate(prompt, max_new_tokens=2)  # builds the prefill and decode programs
    if args.speculative:
        engine.warm(args.batch)  # the draft step and the verification of each γ
    tokens = engine.generate(prompt, max_new_tokens=args.max_new_tokens)
    for row in tokens[:, args.prompt_length :].tolist():
        print(" ".join(map(str, row)))
    stats = engine.stats
    print(
        f"prefill {stats.prefill_seconds * 1e3:.1f} ms; decode {stats.decode_steps} steps in "
        f"{stats.decode_seconds * 1e3:.1f} ms: {stats.decode_tokens_per_second:.1f} tokens/s "
        f"(batch {args.batch})"
    )
    if args.speculative:
        print(f"qspec: acceptance {stats.acceptance:.3f} over {stats.rounds} rounds; weights "
              f"{engine.weight_bytes} bytes (one 4-bit set for draft and verification)")  # fmt: skip
    return 0


def _call_factory(spec: str) -> Any:
    import importlib
    import importlib.util
    from pathlib import Path

    from ember.errors import UsageError

    module_name, _, attr = spec.rpartition(":")
    if module_name.endswith(".py"):
        found = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
        if found is None or found.loader is None or not Path(module_name).is_file():
            raise UsageError(f"no such file: {module_name}")
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"{module_name} has no function {attr!r}")
    return factory()
