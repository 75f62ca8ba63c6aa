"""`python -m seglib.bench`: the original's way of training (reference) against seglib's fast path;
what each side is, and how they take turns: `run`'s docstring (`python -m seglib.bench --help`).

One module a measurement: `machine` (ceilings, bandwidth), `cpu_steps` with `workers` and `stepworker`
(the CPU's step rows), `device_steps` (the step rows in this process), `datapath`, `epochs`,
`evaluation`; `steps` holds the two sides' training steps, `timing` the turns and the rows, `roofline`
the step's bound, `run` the whole and the command line. This is a face: the engine never imports it.
"""

from .device_steps import bench_train_step
from .run import main, markdown_table, run_benchmark
from .steps import train_step_flops
from .timing import PeakRSS

__all__ = ["PeakRSS", "bench_train_step", "main", "markdown_table", "run_benchmark", "train_step_flops"]
