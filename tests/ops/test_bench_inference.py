"""How the inference benchmark compares each side with raw llama-cpp-python."""

from __future__ import annotations

import pytest

from sutazai.ops.bench.inference import SIDES, Sample, versus_raw


def _samples(rates: list[float], firsts: list[float]) -> list[Sample]:
    return [
        Sample(time_to_first_token_ms=f, tokens_per_second=r, pieces=90)
        for r, f in zip(rates, firsts, strict=True)
    ]


def test_paired_figures_follow_each_round_while_p50s_mix_rounds() -> None:
    # The machine halves its speed in the last two rounds; the side is always 5 % slower.
    raw = _samples([100.0, 100.0, 100.0, 50.0, 50.0], [200.0, 210.0, 220.0, 400.0, 420.0])
    side = _samples([95.0, 95.0, 95.0, 47.5, 47.5], [206.0, 216.0, 226.0, 406.0, 426.0])
    samples = {SIDES[0]: raw, **dict.fromkeys(SIDES[1:], side)}

    compared = versus_raw(samples)

    assert set(compared) == set(SIDES[1:])
    figures = compared["mesh_openai"]
    assert figures["tokens_per_second_ratio"] == 0.95
    assert figures["tokens_per_second_ratio_paired_median"] == 0.95
    assert figures["added_time_to_first_token_ms"] == 6.0
    assert figures["added_time_to_first_token_ms_paired_median"] == 6.0


def test_drift_moves_the_ratio_of_p50s_but_not_the_paired_one() -> None:
    raw = _samples([100.0, 100.0, 50.0, 50.0, 50.0], [200.0] * 5)
    # The side ran its middle round fast, by luck of the machine: its p50 is a fast round's.
    side = _samples([95.0, 95.0, 95.0, 47.5, 47.5], [200.0] * 5)
    samples = {SIDES[0]: raw, **dict.fromkeys(SIDES[1:], side)}

    figures = versus_raw(samples)["mesh_grpc"]

    assert figures["tokens_per_second_ratio"] == pytest.approx(95.0 / 50.0, abs=1e-3)
    assert figures["tokens_per_second_ratio_paired_median"] == 0.95
