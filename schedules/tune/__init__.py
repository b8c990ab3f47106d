"""Tuning: measure template configurations, rank them with a cost model, keep every result.

records.py     the JSON-lines records file (one line per measurement, a line per finished task)
measure.py     Measurer interface; LocalMeasurer (timed) and QemuMeasurer (correctness only)
worker.py      the isolated measuring subprocess a Measurer talks to
kernel.py      build one candidate: scheduled kernel, packed weights, inputs, expected output
cost_model.py  XGBoost ranking of configurations from their knob features
tuner.py       tune(): the search loop over tasks, with resume, progress and plots
"""

from .measure import Candidate, LocalMeasurer, Measurer, MeasureResult, QemuMeasurer
from .records import Records
from .tuner import TaskSummary, TuneProgress, TuneSummary, tune

__all__ = [
    "Candidate",
    "LocalMeasurer",
    "MeasureResult",
    "Measurer",
    "QemuMeasurer",
    "Records",
    "TaskSummary",
    "TuneProgress",
    "TuneSummary",
    "tune",
]
