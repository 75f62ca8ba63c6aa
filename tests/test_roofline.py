"""The roofline bound of a training step (seglib.bench.roofline), on the CPU."""

import torch

from seglib.bench import bench_train_step, train_step_flops
from seglib.bench.roofline import StepTraffic, memory_bandwidth, roofline_images_per_s, step_traffic
from seglib.models import build_model


def _batch(n: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(n, 3, size, size), (torch.rand(n, 1, size, size) > 0.5).float()


def test_step_traffic_counts_the_steps_flops_and_more_bytes_than_adamw_alone_moves():
    torch.manual_seed(0)
    model = build_model("unet", base_channels=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _batch(2)
    traffic = step_traffic(model, x, y, amp=False)
    assert traffic.flops == train_step_flops(build_model("unet", base_channels=4), x, y)
    params = sum(p.numel() * 4 for p in model.parameters())
    # AdamW reads and writes weights, gradients and both moments; the activations come on top.
    assert traffic.bytes > 7 * params + x.numel() * 4
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # a copy stepped
    assert step_traffic(model, *_batch(4), amp=False).bytes > traffic.bytes


class _OneBigWeight(torch.nn.Module):
    """A 1x1 convolution and a weight of a million floats that the output takes one element of: the
    step's bytes are mostly the optimizer's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        self.big = torch.nn.Parameter(torch.zeros(1_000_000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.big[:1].sum()


def test_the_fused_optimizers_in_place_writes_count():
    x, y = torch.randn(1, 3, 4, 4), torch.zeros(1, 1, 4, 4)
    big = 4_000_000  # bytes of the big weight
    # fit's AdamW reads weights, gradients and both moments and writes weights and moments in place
    # (7 x); the backward writes the gradient of the whole weight and copies the slice's into it
    assert step_traffic(_OneBigWeight(), x, y, amp=False).bytes >= 12 * big


def test_the_bound_is_the_slower_of_compute_and_memory():
    traffic = StepTraffic(flops=2 * 10**9, bytes=10**9)
    assert roofline_images_per_s(traffic, 8, gflops=100, gbs=50) == 8 / 0.02
    assert roofline_images_per_s(traffic, 8, gflops=100, gbs=10) == 8 / 0.1  # memory-bound
    assert roofline_images_per_s(traffic, 8, gflops=10, gbs=50) == 8 / 0.2  # compute-bound


def test_memory_bandwidth_is_measured():
    assert memory_bandwidth(torch.device("cpu"), reps=2, megabytes=8) > 0.1


def test_the_in_process_step_rows_give_the_bound_and_seglibs_share():
    rows = bench_train_step(
        "unet", {"base_channels": 4}, 32, 2, 1, 1, torch.device("cpu"), roofline=(50.0, 5.0)
    )
    by_what = {r["what"]: r for r in rows}
    bound = by_what["train step unet-w4 32px b2 roofline bound"]["seglib"]
    share = by_what["train step unet-w4 32px b2 share of roofline bound"]["seglib"]
    rate = by_what["train step unet-w4 32px b2"]["seglib"]
    assert bound > 0 and share == rate / bound
