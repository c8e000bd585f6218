"""Every IR op, one class each, grouped by family; importing this registers them all."""

from ember.ir.ops.bits import *  # noqa: F403
from ember.ir.ops.conv import *  # noqa: F403
from ember.ir.ops.decode import *  # noqa: F403
from ember.ir.ops.einsum import *  # noqa: F403
from ember.ir.ops.elementwise import *  # noqa: F403
from ember.ir.ops.image import *  # noqa: F403
from ember.ir.ops.index import *  # noqa: F403
from ember.ir.ops.layout import *  # noqa: F403
from ember.ir.ops.linalg import *  # noqa: F403
from ember.ir.ops.moe import *  # noqa: F403
from ember.ir.ops.nn import *  # noqa: F403
from ember.ir.ops.packed import *  # noqa: F403
from ember.ir.ops.pool import *  # noqa: F403
from ember.ir.ops.quant import *  # noqa: F403
from ember.ir.ops.quant_fused import *  # noqa: F403
from ember.ir.ops.quant_shared import *  # noqa: F403
from ember.ir.ops.reduce import *  # noqa: F403
from ember.ir.ops.shape import *  # noqa: F403
