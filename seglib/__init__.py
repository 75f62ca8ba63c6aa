"""seglib: binary pet segmentation on Oxford-IIIT Pet (UNet, ResNet34-UNet), the workbook's engine.

Layers: `seglib.models` (torch only), `seglib.data` and `seglib.metrics` (never import models or the
engine), `seglib.engine` (uses those three), and the faces (`plots`, `cli`, `workbook`) on top.
"""

import os

# Albumentations checks PyPI for a newer version at import; offline that costs a timeout.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
