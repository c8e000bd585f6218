"""The chunk cost model: its formula, and the DP's choice against brute force."""

from __future__ import annotations

import itertools

import pytest

from ember.distributed.cost_model import CostModel, choose_chunks


def _model(per_token: float = 1e-4, bandwidth: float = 1e9, latency: float = 2e-4) -> CostModel:
    return CostModel(
        compute_per_token=per_token, bytes_per_token=16384, bandwidth=bandwidth,
        latency=latency, compute_fixed=3 * latency,
    )  # fmt: skip


def test_one_chunk_is_compute_plus_comm():
    m = _model()
    assert m.predict((1024,)) == pytest.approx(m.compute(1024) + m.comm(1024))


def test_two_chunks_hide_the_smaller_side():
    m = _model()
    c, k = m.compute(512), m.comm(512)
    expected = c / 2 + max(k, c / 2) + max(k, c / 2) + c / 2
    assert m.predict((512, 512)) == pytest.approx(expected)


def _compositions(cells: int):
    for cuts in itertools.product((0, 1), repeat=cells - 1):
        sizes, run = [], 1
        for cut in cuts:
            if cut:
                sizes.append(run)
                run = 1
            else:
                run += 1
        yield (*sizes, run)


@pytest.mark.parametrize("bandwidth", [2e8, 1e9, 1e11])
def test_dp_matches_brute_force(bandwidth: float):
    m = _model(bandwidth=bandwidth)
    unit, cells = 64, 8
    chosen = choose_chunks(m, unit * cells, granularity=unit)
    best = min(m.predict(tuple(s * unit for s in c)) for c in _compositions(cells))
    assert sum(chosen) == unit * cells
    assert m.predict(chosen) == pytest.approx(best)


def test_high_latency_means_one_chunk():
    assert choose_chunks(_model(latency=1.0), 1024) == (1024,)


def test_free_network_gains_nothing_from_chunks():
    m = _model(bandwidth=1e14, latency=1e-7)
    assert m.predict(choose_chunks(m, 1024)) == pytest.approx(m.predict((1024,)), rel=1e-3)


def test_comm_comparable_to_compute_means_several_chunks():
    m = _model(per_token=1e-5, bandwidth=1e9, latency=1e-5)
    sizes = choose_chunks(m, 1024)
    assert len(sizes) > 1
    assert m.predict(sizes) < 0.8 * m.predict((1024,))


def test_profile_recovers_the_model():
    truth = _model()
    tokens = 1024
    total = truth.compute(tokens) + truth.comm(tokens)
    fitted = CostModel.profile(
        tokens=tokens, total=total, comm=truth.comm(tokens), nbytes=16384 * tokens,
        latency=truth.latency,
    )  # fmt: skip
    assert fitted.bandwidth == pytest.approx(truth.bandwidth)
    assert fitted.predict((256,) * 4) == pytest.approx(truth.predict((256,) * 4))
    cluster = fitted.on_cluster(bandwidth=1e14, latency=1e-7)
    assert cluster.comm(tokens) < 1e-3 * fitted.comm(tokens)
