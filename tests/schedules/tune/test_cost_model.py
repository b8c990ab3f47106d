import math
import random

import numpy as np

from tilecc.schedules.space import Knob, Space
from tilecc.schedules.tune.cost_model import MIN_MEASUREMENTS, CostModel

SPACE = Space(
    tile_co=Knob((1, 2, 4, 8, 16, 32), default=8, why="output channel block"),
    tile_ow=Knob((1, 2, 4, 8, 16), default=4, why="output column block"),
    tile_ci=Knob((1, 2, 4, 8, 16), default=4, why="reduction block"),
    vectorize=Knob((False, True), default=True, why="SIMD"),
)  # 300 configs


def known_gflops(cfg):
    """A register-blocking shape: faster with more accumulators up to 64, failing past 256."""
    acc = cfg["tile_co"] * cfg["tile_ow"]
    if acc > 256:
        return None
    g = 10 * math.log2(acc + 1) - 0.5 * max(0, acc - 64) ** 0.8
    g += 3 * math.log2(cfg["tile_ci"]) + (8 if cfg["vectorize"] else 0)
    return max(g, 1.0)


def test_ranks_a_known_function_better_than_random():
    configs = list(SPACE)
    rng = random.Random(0)
    train = rng.sample(configs, 32)
    test = [c for c in configs if c not in train]
    truth = np.array([known_gflops(c) or 0.0 for c in test])

    model = CostModel(SPACE, seed=0)
    model.fit(train, [known_gflops(c) for c in train])
    assert model.trained
    predicted = model.predict(test)

    top = np.argsort(-predicted)[:16]
    random_top = np.array(rng.sample(range(len(test)), 16))
    # the model's top 16 are better than 16 random picks, and close to the true optimum
    assert truth[top].mean() > truth[random_top].mean() + 5
    assert truth[top].max() >= 0.9 * truth.max()
    # and the order is right overall: Spearman rank correlation
    rank_pred, rank_true = np.argsort(np.argsort(predicted)), np.argsort(np.argsort(truth))
    assert np.corrcoef(rank_pred, rank_true)[0, 1] > 0.7


def test_failures_rank_below_working_configs():
    configs = list(SPACE)
    train = random.Random(1).sample(configs, 48)
    model = CostModel(SPACE, seed=0)
    model.fit(train, [known_gflops(c) for c in train])
    failing = [c for c in configs if known_gflops(c) is None]
    working = [c for c in configs if (known_gflops(c) or 0) > 20]
    assert model.predict(failing).mean() < model.predict(working).mean()


def test_random_order_until_enough_measurements():
    configs = list(SPACE)[: MIN_MEASUREMENTS - 1]
    model = CostModel(SPACE, seed=3)
    model.fit(configs, [known_gflops(c) for c in configs])
    assert not model.trained
    first = model.predict(list(SPACE)[:50])
    assert len(set(first.tolist())) == 50  # an arbitrary order, not a constant
    assert not np.array_equal(first, CostModel(SPACE, seed=4).predict(list(SPACE)[:50]))

    enough = list(SPACE)[:: len(SPACE) // MIN_MEASUREMENTS][:MIN_MEASUREMENTS]
    model.fit(enough, [known_gflops(c) for c in enough])
    assert model.trained


def test_no_model_when_every_measurement_failed():
    configs = [c for c in SPACE if known_gflops(c) is None][:MIN_MEASUREMENTS]
    model = CostModel(SPACE, seed=0)
    model.fit(configs, [None] * len(configs))
    assert not model.trained
