import json
import os

from tilecc.schedules.space import Config
from tilecc.schedules.tune import records as records_module
from tilecc.schedules.tune.records import Record, Records
from tilecc.schedules.workload import DenseWorkload

WL = DenseWorkload(8, 32, 16)
TARGET = "x86/test"


def record(tile, status="ok", seconds=None, template="dense", target=TARGET, workload=WL):
    gflops = workload.flops() / seconds / 1e9 if seconds else None
    return Record(
        template=template,
        workload=workload.key(),
        target=target,
        config=Config({"tile_n": tile}),
        status=status,
        seconds=seconds,
        gflops=gflops,
        error="" if status == "ok" else f"{status} happened",
    )


def test_round_trip(tmp_path):
    path = tmp_path / "r.json"
    recs = Records(path)
    recs.append(record(8, seconds=2e-3))
    recs.append(record(16, status="crash"))
    recs.mark_done("dense", WL, TARGET, trials=2, measured=2)

    again = Records(path)
    assert again.warnings == []
    assert [(r.config, r.status, r.seconds, r.error) for r in again] == [
        (Config({"tile_n": 8}), "ok", 2e-3, ""),
        (Config({"tile_n": 16}), "crash", None, "crash happened"),
    ]
    assert again.measured("dense", WL.key(), TARGET) == {'{"tile_n":8}', '{"tile_n":16}'}
    assert again.done("dense", WL, TARGET) == 2
    assert again.done("dense", WL, "arm-cpu") is None
    assert all(r.timestamp for r in again)


def test_each_line_is_on_disk_and_fsynced_before_append_returns(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(records_module.os, "fsync", fsync)
    recs = Records(path)
    for i, tile in enumerate((4, 8, 16), start=1):
        recs.append(record(tile, seconds=1e-3))
        lines = path.read_text().splitlines()
        assert len(lines) == i
        assert json.loads(lines[-1])["config"] == {"tile_n": tile}
    assert synced.count(path.stat().st_ino) == 3


def test_corrupt_lines_reported_with_line_number_and_skipped(tmp_path):
    path = tmp_path / "R.json"
    good = json.dumps(record(8, seconds=1e-3).to_json())
    path.write_text(
        "\n".join(
            [
                good,
                good[: len(good) // 2],  # a line cut by kill -9
                '{"unrelated": 1}',
                json.dumps({**json.loads(good), "status": "exploded"}),
                "",
                good.replace('"tile_n": 8', '"tile_n": 4'),
            ]
        )
        + "\n"
    )
    recs = Records(path)
    assert len(recs) == 2
    assert len(recs.warnings) == 3
    assert recs.warnings[0].startswith(f"{path}:2: not a JSON record (")
    assert recs.warnings[0].endswith("), skipped")
    assert recs.warnings[1].startswith(f"{path}:3: not a tuning record")
    assert recs.warnings[2].startswith(f"{path}:4: unknown status 'exploded'")


def test_append_after_a_cut_line_starts_a_new_line(tmp_path):
    path = tmp_path / "r.json"
    good = json.dumps(record(8, seconds=1e-3).to_json())
    path.write_text(good + "\n" + good[:20])  # killed in the middle of the second line
    recs = Records(path)
    recs.append(record(16, seconds=2e-3))
    again = Records(path)
    assert [r.config["tile_n"] for r in again] == [8, 16]
    assert [w.split(": ")[0] for w in again.warnings] == [f"{path}:2"]


def test_best_is_the_fastest_timed_ok_record(tmp_path):
    recs = Records(tmp_path / "r.json")
    recs.append(record(4, seconds=3e-3))
    recs.append(record(8, seconds=2e-3, template="dense_other"))
    recs.append(record(16, status="ok", seconds=None))  # untimed (qemu): not a speed
    recs.append(record(32, seconds=1e-3, target="arm-cpu"))  # another target
    recs.append(record(64, seconds=5e-4, workload=DenseWorkload(8, 64, 16)))  # another workload
    for status in ("crash", "timeout", "wrong_result", "build_error", "run_error"):
        recs.append(record(2, status=status))
    assert recs.best(WL.key(), TARGET) == ("dense_other", Config({"tile_n": 8}), 2e-3)
    assert recs.best(WL, "arm-cpu") == ("dense", Config({"tile_n": 32}), 1e-3)


def test_no_best_without_a_timed_ok_record(tmp_path):
    recs = Records(tmp_path / "r.json")
    recs.append(record(4, status="crash"))
    recs.append(record(8, status="ok", seconds=None))
    assert recs.best(WL, TARGET) is None
    assert Records(tmp_path / "missing.json").best(WL, TARGET) is None
