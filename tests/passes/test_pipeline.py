from __future__ import annotations

import numpy as np
import pytest

from ember.errors import PassError
from ember.ir import Builder, Graph
from ember.ir.ops import Exp, Transpose
from ember.passes import DEFAULT_PIPELINE, PASSES, graph_pass, parse_pass_spec, run_pipeline


def _graph() -> Graph:
    b = Builder()
    x = b.input((2, 3), "float32", name="x")
    t = b.emit(Transpose((1, 0)), b.emit(Transpose((1, 0)), x))
    b.output(b.emit(Exp(), t))
    return b.build()


def test_default_pipeline_runs_verifies_and_times_each_pass(tmp_path):
    g, times = run_pipeline(_graph(), verify_each=True, dump_dir=tmp_path)
    assert [n.op.name for n in g.nodes] == ["exp"]
    assert set(times) == {f"pass:{name}" for name in DEFAULT_PIPELINE}
    dumps = sorted(p.name for p in tmp_path.iterdir())
    assert dumps[0] == "00-input.txt"
    assert dumps[1] == "01-canonicalize.txt"
    assert "transpose" in (tmp_path / "00-input.txt").read_text()
    assert "transpose" not in (tmp_path / "01-canonicalize.txt").read_text()


def test_pass_options_are_parsed_from_the_signature():
    spec = parse_pass_spec("fold-constants{max-elements=16}")
    assert spec.options == {"max_elements": 16}
    with pytest.raises(PassError, match=r"has no option 'size'; options: \['max-elements'\]"):
        parse_pass_spec("fold-constants{size=3}")
    with pytest.raises(PassError, match="unknown pass 'fold-everything'"):
        parse_pass_spec("fold-everything")


def test_failures_name_the_pass_and_its_predecessors():
    @graph_pass("test-break-graph")
    def break_graph(g: Graph) -> Graph:
        raise ValueError("boom")

    try:
        with pytest.raises(
            PassError, match=r"in pass 'test-break-graph' \(after: canonicalize\): boom"
        ):
            run_pipeline(_graph(), ["canonicalize", "test-break-graph"])
    finally:
        del PASSES["test-break-graph"]


def test_disabled_passes_are_skipped():
    g, times = run_pipeline(_graph(), disabled=("canonicalize",))
    assert "pass:canonicalize" not in times
    assert [n.op.name for n in g.nodes] == ["transpose", "transpose", "exp"]
    assert np.isfinite(list(times.values())).all()
