import copy

import pytest
import torch

from seglib.engine.optimizer import build_optimizer, optimizer_name
from seglib.models import build_model


def _steps(model: torch.nn.Module, opt: torch.optim.Optimizer, n: int, seed: int = 0) -> None:
    """`n` steps on a fixed stream of random gradients."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet", base_channels=4)


def test_the_fused_optimizer_takes_adamws_steps():
    ours, theirs = _model(), _model()
    opt = build_optimizer(ours.parameters(), 1e-3, 0.05)
    assert optimizer_name(opt) == "AdamW (fused)"
    _steps(ours, opt, 5)
    _steps(theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-3, weight_decay=0.05, foreach=False), 5)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-6), name
    assert any(
        not torch.equal(p, q) for p, q in zip(ours.parameters(), _model().parameters(), strict=True)
    )  # it moved


def test_parameters_off_the_fused_devices_get_torchs_default():
    opt = build_optimizer([torch.nn.Parameter(torch.empty(3, device="meta"))], 1e-3, 0.0)
    assert optimizer_name(opt) == "AdamW" and not opt.param_groups[0]["fused"]


def test_an_unfused_checkpoint_resumes_unfused_bit_for_bit():
    """A run saved before the fused optimizer (last.pt's param_groups) continues as it began."""
    old = _model()
    old_opt = torch.optim.AdamW(old.parameters(), lr=1e-3, weight_decay=1e-4)
    _steps(old, old_opt, 3)
    saved_model, saved_opt = copy.deepcopy(old.state_dict()), copy.deepcopy(old_opt.state_dict())
    _steps(old, old_opt, 2, seed=1)  # the uninterrupted run

    resumed = _model()
    resumed.load_state_dict(saved_model)
    opt = build_optimizer(resumed.parameters(), 1e-3, 1e-4)
    opt.load_state_dict(saved_opt)
    assert optimizer_name(opt) == "AdamW"
    _steps(resumed, opt, 2, seed=1)
    for (name, p), q in zip(resumed.named_parameters(), old.parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("lr", [1e-4, 2e-3])
def test_the_optimizer_keeps_lr_and_weight_decay(lr):
    opt = build_optimizer(_model().parameters(), lr, 0.01)
    assert opt.param_groups[0]["lr"] == lr and opt.param_groups[0]["weight_decay"] == 0.01
