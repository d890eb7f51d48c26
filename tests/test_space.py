"""Parameter domains and the one-parameter mutation."""

from __future__ import annotations

import math
import random

import pytest

from searchers.space import config_key, mutate_one, parse_space

SPACE = parse_space(
    {
        "training.learning_rate_W_start": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
        "training.coeff_W_L1": {"type": "loguniform", "low": 1e-7, "high": 1e-3, "allow_zero": True},
        "training.optimizer": {"type": "choice", "values": ["adam", "adamw", "rmsprop", "sgd"]},
        "training.gradient_clip": {"type": "uniform", "low": 0.0, "high": 10.0},
        "training.batch_size": {"type": "int", "low": 1, "high": 64, "log": True},
    }
)
PARAMS = {
    "training.learning_rate_W_start": 1e-3,
    "training.coeff_W_L1": 1e-5,
    "training.optimizer": "adamw",
    "training.gradient_clip": 5.0,
    "training.batch_size": 8,
}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"type": "loguniform", "low": 1e-2, "high": 1e-3}, "low < high"),
        ({"type": "loguniform", "low": 0.0, "high": 1.0}, "> 0"),
        ({"type": "choice", "values": []}, "non-empty"),
        ({"type": "choice", "values": ["a", "a"]}, "distinct"),
        ({"type": "gaussian", "low": 0, "high": 1}, "valid types ('loguniform', 'uniform', 'int', 'choice')"),
        ({"type": "uniform", "low": 0, "high": 1, "default": 3}, "outside"),
        ({"type": "uniform", "low": 0, "high": 1, "allow_zero": True}, "allow_zero"),
        ({"type": "uniform", "low": 0, "hi": 1}, "allowed keys"),
    ],
)
def test_invalid_domains_raise_naming_the_parameter(spec: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match="space\\['p'\\]") as info:
        parse_space({"p": spec})
    assert fragment in str(info.value)


def test_every_mutation_changes_exactly_one_parameter_and_stays_in_range() -> None:
    rng = random.Random(0)
    seen = {config_key(PARAMS)}
    params = dict(PARAMS)
    for _ in range(300):
        mutation = mutate_one(params, SPACE, rng, exclude=seen)
        assert mutation is not None
        changed = [k for k in params if params[k] != mutation.params[k]]
        assert changed == [mutation.key]
        assert SPACE[mutation.key].contains(mutation.new)
        assert config_key(mutation.params) not in seen
        seen.add(config_key(mutation.params))
        params = mutation.params


def test_log_moves_use_a_factor_between_1_5_and_10() -> None:
    rng = random.Random(1)
    key = "training.learning_rate_W_start"
    for _ in range(200):
        new = mutate_one(PARAMS, SPACE, rng, key=key).new
        ratio = max(new, 1e-3) / min(new, 1e-3)
        assert 1.5 * 0.99 <= ratio <= 10 * 1.01 or new in (1e-4, 1e-1)


def test_choices_move_to_a_neighbour() -> None:
    rng = random.Random(2)
    news = {mutate_one(PARAMS, SPACE, rng, key="training.optimizer").new for _ in range(50)}
    assert news == {"adam", "rmsprop"}
    edge = {**PARAMS, "training.optimizer": "sgd"}
    assert {mutate_one(edge, SPACE, rng, key="training.optimizer").new for _ in range(20)} == {"rmsprop"}


def test_allow_zero_reaches_zero_and_comes_back_into_range() -> None:
    rng = random.Random(3)
    low = {**PARAMS, "training.coeff_W_L1": 2e-7}
    assert mutate_one(low, SPACE, rng, key="training.coeff_W_L1", direction=-1).new == 0.0
    zero = {**PARAMS, "training.coeff_W_L1": 0.0}
    back = mutate_one(zero, SPACE, rng, key="training.coeff_W_L1").new
    assert 1e-7 <= back <= 1.5e-7
    no_zero = {**PARAMS, "training.learning_rate_W_start": 1e-4}
    assert mutate_one(no_zero, SPACE, rng, key="training.learning_rate_W_start", direction=-1).new > 1e-4


def test_extreme_jumps_to_the_farther_bound() -> None:
    rng = random.Random(4)
    assert mutate_one(PARAMS, SPACE, rng, key="training.learning_rate_W_start", extreme=True).new == 1e-1
    near_high = {**PARAMS, "training.learning_rate_W_start": 5e-2}
    assert mutate_one(near_high, SPACE, rng, key="training.learning_rate_W_start", extreme=True).new == 1e-4
    assert mutate_one(PARAMS, SPACE, rng, key="training.optimizer", extreme=True).new == "sgd"


def test_exhausted_neighbourhood_returns_none() -> None:
    space = parse_space({"o": {"type": "choice", "values": ["a", "b"]}})
    taken = {config_key({"o": "a"}), config_key({"o": "b"})}
    assert mutate_one({"o": "a"}, space, random.Random(0), exclude=taken) is None
    assert mutate_one({"o": "a"}, space, random.Random(0)).new == "b"


def test_mutation_text_and_center() -> None:
    mutation = mutate_one(PARAMS, SPACE, random.Random(5), key="training.coeff_W_L1", direction=1)
    assert mutation.text.startswith("coeff_W_L1: 1e-05 -> ")
    assert math.isclose(SPACE["training.learning_rate_W_start"].center(), 3.16e-3)
    assert SPACE["training.optimizer"].center() == "adam"
