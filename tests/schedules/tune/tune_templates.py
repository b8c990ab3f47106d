"""Small templates for the tuning tests, found by workers as "tune_templates:ATTR".

DENSE: a plain dense kernel with a few real knobs (a tuning run can finish in seconds).
TRAPS: dense with a `behave` knob that makes one config segfault, hang, fail to build, compute
a wrong answer or write to stdout, so measurers can be shown to name each failure and go on.
"""

from __future__ import annotations

import os
import signal
import time

from tvm import te

from tilecc.schedules.space import Knob, Space
from tilecc.schedules.template import Template, annotations, inline_producers
from tilecc.schedules.workload import DenseWorkload

WORKLOAD = DenseWorkload(m=8, n=32, k=16)

DENSE_SPACE = Space(
    tile_n=Knob((1, 2, 4, 8, 16, 32), default=8, why="inner n block, vectorized"),
    tile_k=Knob((1, 2, 4, 8), default=4, why="reduction block, unrolled"),
    parallel=Knob((False, True), default=True, why="rows over threads"),
)
TRAPS_SPACE = Space(
    behave=Knob(
        ("ok", "segfault", "hang", "build_error", "wrong", "noisy"), default="ok", why="test"
    ),
    tile_n=Knob((4, 8), default=8, why="inner n block"),
)


def _space(space):
    def restrict(workload, lanes):
        fits = {"tile_n": lambda v: workload.n % v == 0}
        if "tile_k" in space.knobs:
            fits["tile_k"] = lambda v: workload.k % v == 0
        return space.restrict(**fits)

    return restrict


def _weight_transform(w, workload, cfg):
    return te.compute(w.shape, lambda i, j: w[i, j], name="packed")


def _compute(name):
    def compute(data, w, workload, cfg):
        k = te.reduce_axis((0, workload.k), "k")
        scale = 2.0 if cfg.get("behave") == "wrong" else 1.0
        return te.compute(
            (workload.m, workload.n),
            lambda i, j: te.sum(data[i, k] * w[j, k] * scale, axis=k),
            name="dense",
            attrs=annotations(name, workload, cfg),
        )

    return compute


def _schedule(sch, block, workload, cfg, lanes):
    behave = cfg.get("behave", "ok")
    if behave == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif behave == "hang":
        time.sleep(3600)
    elif behave == "build_error":
        raise ValueError("deliberate build failure")
    elif behave == "noisy":  # writes where the worker's replies go, from Python and below it
        print("noise from print")
        os.write(1, b"noise on fd 1\n")
    inline_producers(sch, block)
    i, j, k = sch.get_loops(block)
    jo, ji = sch.split(j, [None, cfg["tile_n"]])
    ko, ki = sch.split(k, [None, cfg.get("tile_k", 1)])
    sch.reorder(i, jo, ko, ki, ji)
    sch.unroll(ki)
    if cfg.get("parallel", False):
        sch.parallel(i)


def _reference(data, weight, workload):
    return data @ weight.T


def _template(name, space):
    return Template(
        name=name,
        op="dense",
        space=_space(space),
        applies=lambda workload: True,
        weight_transform=_weight_transform,
        compute=_compute(name),
        schedule=_schedule,
        reference=_reference,
    )


DENSE = _template("tune_templates:DENSE", DENSE_SPACE)
TRAPS = _template("tune_templates:TRAPS", TRAPS_SPACE)
