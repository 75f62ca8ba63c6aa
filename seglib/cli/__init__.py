"""`python -m seglib train|evaluate|predict|export|download`: the original's three scripts, the export
(ONNX, torch.export) and the download.

One module a job: `options` derives `train`'s options from `TrainConfig`, `parser` builds the command
line, `train`, `evaluate` and `predict` run their commands (`scoring`: what the last two share), and
`commands` dispatches and says errors as a command line does.
"""

from .commands import main
from .options import NOT_OPTIONS, RENAMED, Option, field_comments, train_options
from .parser import build_parser
from .train import train_config

__all__ = [
    "NOT_OPTIONS",
    "RENAMED",
    "Option",
    "build_parser",
    "field_comments",
    "main",
    "train_config",
    "train_options",
]
