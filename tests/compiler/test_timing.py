from tilecc.compiler import api


def test_interleaved_timing_takes_turns_after_warming_each_up():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    timings = api.time_interleaved(runners, repeat=3, warmup=1)
    assert calls == ["a", "b", "c"] + ["a", "b", "c"] * 3  # warm-ups, then round-robin
    assert set(timings) == {"a", "b", "c"}
    assert all(0 <= t.min_ms <= t.median_ms <= t.max_ms for t in timings.values())
