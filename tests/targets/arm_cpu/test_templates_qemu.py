"""Each kernel template, built for aarch64 NEON (4 lanes; int8 convs on sdot) and run under
qemu-aarch64, against its NumPy reference (QemuMeasurer checks every output; emulated time is
not measured)."""

import pytest

from tilecc.schedules.registry import get_template
from tilecc.schedules.tune import Candidate, QemuMeasurer
from tilecc.schedules.workload import Conv2dWorkload, DenseWorkload
from tilecc.targets import get_target

PAD1 = {"pad_top": 1, "pad_left": 1, "pad_bottom": 1, "pad_right": 1}
PAD2 = {"pad_top": 2, "pad_left": 2, "pad_bottom": 2, "pad_right": 2}
NCHW4C = {"in_block": 4, "out_block": 4}
CASES = [
    ("conv2d_direct", Conv2dWorkload(1, 8, 9, 7, 12, 3, 3, 2, 2, **PAD1, **NCHW4C)),
    ("conv2d_direct", Conv2dWorkload(1, 3, 11, 11, 8, 3, 3, **PAD1)),
    ("conv2d_winograd", Conv2dWorkload(1, 16, 9, 9, 16, 3, 3, **PAD1, **NCHW4C)),
    ("depthwise", Conv2dWorkload(1, 16, 10, 10, 16, 5, 5, 2, 2, **PAD2, groups=16, **NCHW4C)),
    ("dense", DenseWorkload(7, 33, 19)),
    ("conv2d_int8", Conv2dWorkload(1, 8, 9, 7, 12, 3, 3, **PAD1, **NCHW4C, dtype="int8")),
    ("depthwise", Conv2dWorkload(1, 8, 9, 9, 8, 3, 3, **PAD1, groups=8, **NCHW4C, dtype="int8")),
]


@pytest.mark.qemu
def test_templates_on_aarch64_match_numpy():
    arm = get_target("arm-cpu")
    target = arm.target_dict(2)
    candidates = []
    for name, workload in CASES:
        template = get_template(name)
        space = template.space(workload, arm.vector_lanes)
        for cfg in [space.default(), *space.sample(1, seed=1)]:
            candidates.append(Candidate(name, workload, cfg))
    with QemuMeasurer(target, arm.runner, arm.cross_compiler, timeout_s=180) as measurer:
        results = measurer.measure(candidates)
    failed = [
        f"{c.template_name} {c.workload.describe()} {c.config}: {r.status} {r.error}"
        for c, r in zip(candidates, results, strict=True)
        if r.status != "ok"
    ]
    assert not failed, "\n".join(failed)
