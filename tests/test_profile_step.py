"""benchmarks/profile_step.py on the CPU: it runs, its CSV has the columns and tables docs need, the
category shares make up the whole step, and --device cuda without a GPU says what to do."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "profile_step.py"
COLUMNS = {
    "date",
    "commit",
    "machine",
    "torch",
    "device",
    "model",
    "image_size",
    "batch_size",
    "compile",
    "steps",
    "wall_ms_per_step",
    "images_per_s",
    "table",
    "name",
    "ms_per_step",
    "share",
    "calls_per_step",
    "forward_ms",
    "backward_ms",
    "launched_by",
}
CASES = {
    "resnet34_unet": ["--model", "resnet34_unet", "--image_size", "64"],
    "unet": ["--model", "unet", "--base_channels", "8", "--image_size", "32"],
}


def run(*args: str) -> subprocess.CompletedProcess:
    # One thread: on 2 cores that other processes share, two spinning OpenMP threads can make a step
    # 10-20x slower; the tests check what the script writes, not its timings.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def ps():
    """The script as a module (it is not a package's)."""
    spec = importlib.util.spec_from_file_location("profile_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module", params=sorted(CASES))
def profiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("profile") / "x.csv"
    common = ["--device", "cpu", "--batch_size", "2", "--warmup", "1", "--steps", "1", "--csv", str(out)]
    proc = run(*CASES[request.param], *common)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with out.open() as f:
        rows = list(csv.DictReader(f))
    return request.param, proc.stdout, rows


def test_csv_columns_and_tables(profiled) -> None:
    model, stdout, rows = profiled
    assert rows and set(rows[0]) == COLUMNS
    assert {r["table"] for r in rows} >= {"category", "phase", "op", "module"}
    assert {r["model"] for r in rows} == {model}
    assert {r["device"] for r in rows} == {"cpu"}
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    assert "native bf16" in rows[0]["machine"]
    assert "By category" in stdout and "images/s" in stdout


def test_category_shares_sum_to_one_and_conv_is_there(profiled) -> None:
    _, _, rows = profiled
    cats = {r["name"]: r for r in rows if r["table"] == "category"}
    assert abs(sum(float(r["share"]) for r in cats.values()) - 1) < 0.02
    assert float(cats["conv"]["ms_per_step"]) > 0 and float(cats["conv"]["share"]) > 0
    phases = {r["name"] for r in rows if r["table"] == "phase"}
    assert {"forward", "backward", "optimizer"} <= phases


def test_modules_cover_the_model(profiled) -> None:
    model, _, rows = profiled
    modules = {r["name"]: r for r in rows if r["table"] == "module"}
    expected = (
        {"encoder.conv1", "dec1.conv", "head"} if model == "resnet34_unet" else {"inc", "up4.conv", "outc"}
    )
    assert expected <= set(modules)
    for name in expected:  # every one of them has convolutions both ways
        assert float(modules[name]["forward_ms"]) > 0 and float(modules[name]["backward_ms"]) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_says_so() -> None:
    proc = run("--device", "cuda", "--model", "unet", "--base_channels", "8", "--image_size", "32")
    assert proc.returncode != 0
    assert "no CUDA device here; use --device cpu" in proc.stderr


def test_categories_of_typical_kernel_names(ps) -> None:
    category = ps.category
    names = {
        "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64": "conv",
        "sm90_xmma_wgrad_implicit_gemm_indexed_wo_smem_bf16bf16_bf16f32_f32": "conv",
        "void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16>": "copy/cat/pad",
        "cudnn::bn_fw_tr_1C11_kernel_NCHW": "batchnorm",
        "void at::native::batch_norm_collect_statistics_channels_last_kernel": "batchnorm",
        "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>": "elementwise",
        "void at::native::elementwise_kernel<128, 2, direct_copy_kernel_cuda>": "copy/cat/pad",
        "void at::native::CatArrayBatchedCopy_contig<float, unsigned int, 4, 64, 64>": "copy/cat/pad",
        "void at::native::max_pool_backward_nhwc<c10::BFloat16>": "pool/upsample",
        "void at::native::multi_tensor_apply_kernel<TensorListMetadata<4>>": "optimizer",
        "void at::native::reduce_kernel<512, 1, ReduceOp<float, sum_functor>>": "loss/other",
        "triton_poi_fused_cat_3": "copy/cat/pad",
        "triton_poi_fused_convolution_relu_4": "elementwise",
        "triton_red_fused__native_batch_norm_legit_functional_relu_2": "batchnorm",
        "aten::convolution_backward": "conv",
        "aten::native_batch_norm_backward": "batchnorm",
        "aten::threshold_backward": "elementwise",
        "aten::conv_transpose2d": "conv",
        "aten::cat": "copy/cat/pad",
        "aten::constant_pad_nd": "copy/cat/pad",
    }
    assert {n: category(n) for n in names} == names
    assert category("aten::mul_", phase="optimizer") == "optimizer"
    assert category("aten::mul", phase="loss") == "loss/other"
    assert category("aten::mul", phase="backward", module="loss") == "loss/other"


# --- the CUDA path on fake events: what torch.profiler's events() and key_averages() give on a GPU ----


def _evt(name, parent=None, *, cuda=False, us=0.0, seq=-1, scope=0, kernels=(), annotation=False, thread=1):
    from torch.autograd import DeviceType

    e = SimpleNamespace(
        name=name,
        key=name,
        device_type=DeviceType.CUDA if cuda else DeviceType.CPU,
        is_async=False,
        cpu_parent=parent,
        cpu_children=[],
        sequence_nr=seq,
        thread=thread,
        fwd_thread=1,
        scope=scope,
        kernels=[SimpleNamespace(name=k, device=0, duration=d) for k, d in kernels],
        is_user_annotation=annotation,
        time_range=SimpleNamespace(elapsed_us=lambda: us),
    )
    if parent is not None:
        parent.cpu_children.append(e)
    return e


def fake_gpu_events() -> list:
    fwd = _evt("step::forward", annotation=True, kernels=[("step::forward", 900.0)])  # its GPU range
    stem = _evt("module::encoder.conv1", fwd, annotation=True)
    conv = _evt(
        "aten::cudnn_convolution", stem, seq=5, kernels=[("sm90_xmma_fprop_implicit_gemm_bf16", 100.0)]
    )
    cast = _evt(
        "aten::_to_copy", stem, seq=4, kernels=[("elementwise_kernel<direct_copy_kernel_cuda>", 10.0)]
    )
    dec = _evt("module::dec1.conv", fwd, annotation=True)
    bn = _evt("aten::native_batch_norm", dec, seq=6, kernels=[("batch_norm_collect_statistics_kernel", 20.0)])
    # the backward runs on the autograd engine's thread (2): no step:: range around it
    ev = _evt("autograd::engine::evaluate_function: ConvolutionBackward0", thread=2)
    node = _evt("ConvolutionBackward0", ev, seq=5, scope=1, thread=2)
    cbw = _evt(
        "aten::convolution_backward",
        node,
        thread=2,
        kernels=[("sm90_xmma_dgrad_implicit_gemm", 150.0), ("sm90_xmma_wgrad_implicit_gemm", 50.0)],
    )
    acc = _evt("aten::add_", ev, thread=2, kernels=[("vectorized_elementwise_kernel<CUDAFunctor_add>", 5.0)])
    bnode = _evt("NativeBatchNormBackward0", None, seq=6, scope=1, thread=2)
    bbw = _evt(
        "aten::native_batch_norm_backward", bnode, thread=2, kernels=[("batch_norm_backward_kernel", 40.0)]
    )
    opt = _evt("step::optimizer", annotation=True)
    adam = _evt("Optimizer.step#AdamW.step", opt, annotation=True)
    foreach = _evt("aten::_foreach_mul_", adam, kernels=[("multi_tensor_apply_kernel", 30.0)])
    cpu = [fwd, stem, conv, cast, dec, bn, ev, node, cbw, acc, bnode, bbw, opt, adam, foreach]
    gpu = [_evt("step::forward", cuda=True, us=900.0, annotation=True)]  # an annotation, not a kernel
    gpu += [
        _evt(k.name, cuda=True, us=k.duration) for e in cpu for k in e.kernels if not e.is_user_annotation
    ]
    gpu.append(_evt("Memset (Device)", cuda=True, us=4.0))  # no CPU op launched it
    return cpu + gpu


def test_cuda_attribution_of_kernels(ps) -> None:
    units = ps.attribute(fake_gpu_events(), cuda=True)
    assert sum(u.us for u in units) == pytest.approx(100 + 10 + 20 + 150 + 50 + 5 + 40 + 30 + 4)
    cats = {
        r["name"]: r["ms_per_step"]
        for r in ps.grouped(units, lambda u: ps.category(u.name, u.phase, u.module), ps.CATEGORIES, 1)
    }
    assert cats == pytest.approx(
        {"conv": 0.3, "batchnorm": 0.06, "copy/cat/pad": 0.01, "elementwise": 0.009, "optimizer": 0.03}
    )
    mods = {r["name"]: r for r in ps.module_rows(units, ["encoder.conv1", "dec1.conv"], 1)}
    assert mods["encoder.conv1"]["forward_ms"] == pytest.approx(0.11)
    assert mods["encoder.conv1"]["backward_ms"] == pytest.approx(0.205)  # dgrad, wgrad, the engine's add_
    assert mods["dec1.conv"]["backward_ms"] == pytest.approx(0.04)
    assert mods["optimizer"]["ms_per_step"] == pytest.approx(0.03)
    assert mods["(unattributed)"]["ms_per_step"] == pytest.approx(0.004)  # the memset


def test_top_kernels_from_key_averages(ps) -> None:
    events = fake_gpu_events()
    units = ps.attribute(events, cuda=True)
    avgs = [
        SimpleNamespace(**vars(e), count=1, self_device_time_total=e.time_range.elapsed_us())
        for e in events
        if e.device_type.name == "CUDA"
    ]
    old = [
        SimpleNamespace(
            **{k: v for k, v in vars(a).items() if k != "self_device_time_total"},
            self_cuda_time_total=a.self_device_time_total,
        )
        for a in avgs
    ]
    for rows in (avgs, old):  # torch >= 2.4 (self_device_time_total) and older (self_cuda_time_total)
        prof = SimpleNamespace(events=lambda: events, key_averages=lambda rows=rows: rows)
        top = ps.top_ops(prof, cuda=True, steps=1, n=3, units=units)
        assert [t["name"] for t in top] == [
            "sm90_xmma_dgrad_implicit_gemm",
            "sm90_xmma_fprop_implicit_gemm_bf16",
            "sm90_xmma_wgrad_implicit_gemm",
        ]
        assert top[0]["launched_by"] == "aten::convolution_backward"
        assert top[0]["ms_per_step"] == pytest.approx(0.15)
