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
