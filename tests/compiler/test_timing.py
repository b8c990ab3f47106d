import pytest

from tilecc.compiler import api


def test_interleaved_timing_takes_turns_after_warming_each_up():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    timings = api.time_interleaved(runners, repeat=3, warmup=1)
    assert calls == ["a", "b", "c"] + ["a", "b", "c"] * 3  # warm-ups, then round-robin
    assert set(timings) == {"a", "b", "c"}
    assert all(0 <= t.min_ms <= t.median_ms <= t.max_ms for t in timings.values())


def test_paired_ratio_takes_each_rounds_pair():
    """Two rounds in a fast state of the machine, two in a slow one (every time doubled), and
    one stall of the fast build in round 2: the medians come from different states and put
    the ratio at 1.5, the rounds' own ratios at 2."""
    fp32 = api.Timing.of([0.020, 0.020, 0.040, 0.040])
    int8 = api.Timing.of([0.010, 0.020, 0.020, 0.020])
    assert fp32.median_ms / int8.median_ms == pytest.approx(1.5)
    assert api.paired_ratio(fp32, int8) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same interleaved rounds"):
        api.paired_ratio(fp32, api.Timing.of([0.01]))
