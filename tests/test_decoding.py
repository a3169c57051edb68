"""Decoding options: every bad combination is rejected before any model runs."""

from __future__ import annotations

import pytest

from clipchat.errors import InvalidConfig
from vision import DecodingOptions
from vision.decoding.guided import Guided
from vision.decoding.strategies import STRATEGIES, BeamSearch, Greedy, NucleusSampling


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "telepathy"},
        {"method": "greedy", "beam_size": 3},
        {"method": "greedy", "top_p": 0.9},
        {"method": "beam", "temperature": 0.7},
        {"method": "sample", "guided_top_k": 10},
        {"method": "greedy", "num_candidates": 3},
        {"method": "guided", "num_candidates": 2},
        {"method": "beam", "beam_size": 2, "num_candidates": 3},
        {"method": "sample", "top_p": 0.0},
        {"method": "sample", "top_p": 1.5},
        {"method": "sample", "temperature": 0},
        {"method": "guided", "guided_plausibility": 1.5},
        {"method": "greedy", "guided_plausibility": 0.1},
        {"max_tokens": 0},
        {"num_candidates": 0},
        {"num_candidates": 2},  # several candidates need a method that makes them
        {"beam_size": 3},  # a method's parameter without the method
    ],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()),
)
def test_bad_combinations_are_rejected(kwargs: dict) -> None:
    with pytest.raises(InvalidConfig):
        DecodingOptions(**kwargs)


def test_the_method_picks_the_strategy_with_its_own_defaults() -> None:
    assert {"greedy": Greedy, "beam": BeamSearch, "sample": NucleusSampling, "guided": Guided} == STRATEGIES
    options = DecodingOptions(method="beam", num_candidates=3)
    beam = options.strategy().generate_kwargs(options)
    assert beam["num_beams"] == 5 and beam["num_return_sequences"] == 3 and not beam["do_sample"]
    options = DecodingOptions(method="sample", top_p=0.8)
    assert options.strategy() == NucleusSampling(top_p=0.8, temperature=1.0)
    sample = options.strategy().generate_kwargs(options)
    assert sample["do_sample"] and sample["top_p"] == 0.8 and sample["temperature"] == 1.0
    assert DecodingOptions(method="guided", guided_beta=0.0).strategy() == Guided(beta=0.0)
    assert Guided().top_k == 45 and Guided().plausibility == 0.1  # MAGIC's, stated once


def test_options_are_frozen() -> None:
    options = DecodingOptions()
    with pytest.raises(AttributeError):
        options.method = "beam"  # type: ignore[misc]
