"""`ember.autobatch`: batched execution of models with data-dependent control flow (ACRoBat).

Write one instance's computation in plain Python (recursion, if/else, loops) over *blocks*,
static pieces such as an LSTM cell; `run` executes many instances together, one ember-compiled
batched kernel per (block, depth) group::

    import ember.autobatch as ab
    leaf, node = ab.block(LeafCell(256)), ab.block(NodeCell(256))
    def encode(tree):
        if isinstance(tree, int):
            return leaf(torch.tensor([tree]))
        return node(*encode(tree[0]), *encode(tree[1]))
    outs = ab.run(encode, trees)          # == [encode(t) for t in trees] run eagerly

See docs/autobatch.md.
"""

from ember.autobatch.block import Block, block
from ember.autobatch.errors import AutobatchError
from ember.autobatch.lazy import LazyValue
from ember.autobatch.runtime import run
from ember.autobatch.schedule import Stats

__all__ = ["AutobatchError", "Block", "LazyValue", "Stats", "block", "run"]
