"""Loaded by every Python process that `benchmarks/avx2_proxy.sh` starts: torch reports no native bf16, so
seglib trains and evaluates in fp32 as on a CPU without it (`seglib.engine.runtime.native_bf16`)."""

import torch.cpu

torch.cpu._is_avx512_bf16_supported = lambda: False
torch.cpu._is_amx_tile_supported = lambda: False
