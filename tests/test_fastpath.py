"""The memory format is chosen per machine: probed once on the run's own model and size, cached, named in
the run's first line, overridable, and kept by a resumed run. The allocator is chosen per process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_train_config

from seglib.allocator import JEMALLOC_CONF, jemalloc_path, release_idle_memory
from seglib.engine import TrainConfig, fastpath, fit, load_checkpoint
from seglib.engine.fastpath import BUSY_CORES, FORMATS, choose_memory_format, probe_cache_path
from seglib.engine.train import TrainingInterrupted

CPU = torch.device("cpu")
TINY_MODEL = ("unet", {"base_channels": 4}, 32, 4)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    path = tmp_path / "probe" / "fastpath.json"
    monkeypatch.setenv("SEGLIB_PROBE_CACHE", str(path))
    monkeypatch.setattr(fastpath, "_THIS_PROCESS", {})  # and no busy probe's answer of an earlier test
    return path


def test_probe_times_both_formats_then_reads_the_cache(fresh_cache):
    first = choose_memory_format(*TINY_MODEL, CPU, amp=False)
    assert first.source == "probe" and set(first.rates) == set(FORMATS)
    assert all(r > 0 for r in first.rates.values())
    # channels_last unless NCHW is clearly faster (fastpath.MARGIN)
    assert first.channels_last == (first.rates["nchw"] <= 1.05 * first.rates["channels_last"])
    again = choose_memory_format(*TINY_MODEL, CPU, amp=False)
    assert (
        again.source == "cache" and again.rates == first.rates and again.channels_last == first.channels_last
    )
    ((key, entry),) = json.loads(fresh_cache.read_text()).items()
    assert "unet(base_channels=4) 32px b4" in key and torch.__version__ in key
    assert entry["others"] is None or entry["others"] >= 0  # cores other programs used meanwhile
    assert probe_cache_path() == fresh_cache
    # bf16 autocast is another step: its own probe and entry
    assert choose_memory_format(*TINY_MODEL, CPU, amp=True).source == "probe"
    assert sorted(k.rsplit(" | ", 1)[1] for k in json.loads(fresh_cache.read_text())) == ["amp", "fp32"]


@pytest.fixture
def busy_cpu():
    """Another program keeping a CPU busy for the length of the test."""
    spin = subprocess.Popen(
        [sys.executable, "-c", "import sys; print(flush=True)\nwhile True: pass"], stdout=subprocess.PIPE
    )
    spin.stdout.readline()  # it is spinning from here on
    yield
    spin.kill()
    spin.wait()


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="the busy check reads Linux's /proc/stat")
def test_a_probe_beside_a_busy_program_decides_this_process_only(fresh_cache, busy_cpu, capsys, monkeypatch):
    monkeypatch.delenv("SEGLIB_PROBE_BUSY_CORES")  # the default rule (conftest caches every probe)
    choice = choose_memory_format("unet", {"base_channels": 8}, 64, 4, CPU, amp=False)
    assert choice.source == "probe" and set(choice.rates) == set(FORMATS)
    assert choice.others > BUSY_CORES  # the spinning program, seen
    assert "other programs used" in capsys.readouterr().out
    assert not fresh_cache.exists()  # another process probes again
    # this process's next run of the same model and size trains alike: a study's runs differed in format
    again = choose_memory_format("unet", {"base_channels": 8}, 64, 4, CPU, amp=False)
    assert (again.channels_last, again.source, again.rates) == (
        choice.channels_last,
        "this process's probe",
        choice.rates,
    )


@pytest.mark.parametrize("value", ["-1", "many", "nan"])
def test_a_bad_busy_limit_is_named_even_where_an_answer_is_cached(fresh_cache, monkeypatch, value):
    monkeypatch.setenv("SEGLIB_PROBE_BUSY_CORES", value)
    with pytest.raises(ValueError, match=r"SEGLIB_PROBE_BUSY_CORES=.*as a number >= 0"):
        choose_memory_format(*TINY_MODEL, CPU, amp=False)
    assert not fresh_cache.exists()
    monkeypatch.setenv("SEGLIB_PROBE_BUSY_CORES", "inf")
    choose_memory_format(*TINY_MODEL, CPU, amp=False)  # cached now
    monkeypatch.setenv("SEGLIB_PROBE_BUSY_CORES", value)
    with pytest.raises(ValueError, match=r"SEGLIB_PROBE_BUSY_CORES="):  # checked before any work
        choose_memory_format(*TINY_MODEL, CPU, amp=False)


def test_an_entry_from_before_the_busy_check_is_probed_again(fresh_cache):
    choose_memory_format(*TINY_MODEL, CPU, amp=False)
    data = json.loads(fresh_cache.read_text())
    for entry in data.values():
        del entry["others"]
    fresh_cache.write_text(json.dumps(data))
    assert choose_memory_format(*TINY_MODEL, CPU, amp=False).source == "probe"
    assert all("others" in entry for entry in json.loads(fresh_cache.read_text()).values())


def test_asked_for_format_and_cuda_are_not_probed(fresh_cache):
    assert choose_memory_format(*TINY_MODEL, CPU, amp=False, requested=False).describe() == (
        "memory format NCHW (config)"
    )
    cuda = choose_memory_format(*TINY_MODEL, torch.device("cuda"), amp=True)
    assert cuda.channels_last and cuda.source == "cuda"
    assert not fresh_cache.exists()


def test_a_damaged_cache_is_probed_again_and_rewritten(fresh_cache):
    fresh_cache.parent.mkdir(parents=True)
    fresh_cache.write_text("{not json")
    assert choose_memory_format(*TINY_MODEL, CPU, amp=False).source == "probe"
    assert len(json.loads(fresh_cache.read_text())) == 1


def test_the_probe_leaves_the_random_numbers_alone(fresh_cache):
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    choose_memory_format(*TINY_MODEL, CPU, amp=False)
    assert torch.equal(torch.rand(4), expected)


def _force_cache(path, channels_last: bool) -> None:
    """Every cached answer turned into `channels_last`, as if this machine measured so."""
    data = json.loads(path.read_text())
    for entry in data.values():
        entry["channels_last"] = channels_last
    path.write_text(json.dumps(data))


@pytest.mark.slow
@pytest.mark.parametrize("forced", [False, True], ids=["nchw", "channels_last"])
def test_fit_trains_in_the_cached_choice_and_says_so(synthetic_root, tmp_path, fresh_cache, capsys, forced):
    def cfg(name: str) -> TrainConfig:
        return tiny_train_config(synthetic_root, tmp_path, run_name=name, epochs=1, progress=True)

    probed = fit(cfg("probe"))
    assert "(probe: channels_last" in capsys.readouterr().out
    assert probed.config.channels_last in (True, False)  # the run's config records the choice
    _force_cache(fresh_cache, forced)
    run = fit(cfg("cached"))
    first = capsys.readouterr().out.splitlines()[0]
    name = "channels_last" if forced else "NCHW"
    assert f"memory format {name} (cache: " in first and "malloc)" in first
    assert TrainConfig.load(run.run_dir / "config.json").channels_last is forced
    asked = fit(
        tiny_train_config(synthetic_root, tmp_path, run_name="asked", epochs=1, channels_last=not forced)
    )
    assert f"memory format {'NCHW' if forced else 'channels_last'} (config)" in capsys.readouterr().out
    assert asked.config.channels_last is (not forced)


@pytest.mark.slow
def test_a_resumed_run_keeps_its_memory_format(synthetic_root, tmp_path, fresh_cache, capsys, loss_at_step):
    def cfg(out) -> TrainConfig:  # fp32 on any CPU: the cache is keyed by precision, as filled below
        return tiny_train_config(synthetic_root, out, run_name="r", epochs=2, amp=False)

    choose_memory_format("unet", {"base_channels": 4}, 32, 4, CPU, amp=False)  # fills the cache
    _force_cache(fresh_cache, False)
    whole = fit(cfg(tmp_path / "a"))
    with pytest.raises(TrainingInterrupted):
        fit(cfg(tmp_path / "b"), loss_fn=loss_at_step("ctrl_c", 4))
    _force_cache(fresh_cache, True)  # the machine now answers channels_last: the run must not follow
    capsys.readouterr()
    resumed = fit(cfg(tmp_path / "b"), resume=True)
    assert "memory format NCHW (the resumed run's)" in capsys.readouterr().out
    assert load_checkpoint(resumed.run_dir / "last.pt")["config"]["channels_last"] is False
    a, b = (
        load_checkpoint(whole.run_dir / "last.pt")["model"],
        load_checkpoint(resumed.run_dir / "last.pt")["model"],
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def _run_line(synthetic_root, tmp_path, **env) -> str:
    """The line that starts the run (it names the allocator), from the CLI's output."""
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    cmd = [sys.executable, "-m", "seglib", "train", "--data_path", str(synthetic_root)]
    cmd += ["--output_dir", str(tmp_path), "--model", "unet", "--base_channels", "4", "--image_size", "32"]
    cmd += ["--epochs", "1", "--train_limit", "4", "--val_limit", "2", "--batch_size", "2", "--no-progress"]
    cmd += ["--no-channels_last"]  # no probe: this test is about the allocator
    out = subprocess.run(cmd, env={**clean, **env}, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return next(line for line in out.stdout.splitlines() if line.startswith("seglib: unet"))


@pytest.mark.slow
@pytest.mark.skipif(
    jemalloc_path() is None, reason="jemalloc is not installed (apt-get install libjemalloc2)"
)
def test_the_cli_trains_under_jemalloc_unless_told_not_to(synthetic_root, tmp_path):
    assert "device cpu (jemalloc malloc)" in _run_line(synthetic_root, tmp_path / "je")
    off = _run_line(synthetic_root, tmp_path / "glibc", SEGLIB_JEMALLOC="0")
    assert "device cpu (glibc malloc)" in off


@pytest.mark.skipif(
    jemalloc_path() is None, reason="jemalloc is not installed (apt-get install libjemalloc2)"
)
def test_the_allocator_entry_prints_its_environment_without_a_warning():
    """`env $(python -m seglib.jemalloc) CMD` (make lab, the benchmarks' commands): the two variables on
    stdout, nothing on stderr (the allocator's own module under `-m` drew runpy's RuntimeWarning); nothing
    at all with SEGLIB_JEMALLOC=0."""
    cmd = [sys.executable, "-m", "seglib.jemalloc"]
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", "SEGLIB_JEMALLOC")}
    on = subprocess.run(cmd, env=clean, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert on.returncode == 0 and on.stderr == ""
    assert on.stdout.split() == [f"LD_PRELOAD={jemalloc_path()}", f"MALLOC_CONF={JEMALLOC_CONF}"]
    off = subprocess.run(cmd, env={**clean, "SEGLIB_JEMALLOC": "0"}, capture_output=True, text=True, cwd=REPO)
    assert off.returncode == 0 and off.stdout.strip() == ""


_FRAGMENT_AND_RELEASE = """
import random, torch
from seglib.allocator import release_idle_memory
random.seed(0)
for _ in range(30):  # buffers of many sizes, as a kernel training run after run allocates, then freed
    kept = [torch.ones(random.randint(1, 40) * 250_000 + random.randint(0, 9999)) for _ in range(20)]
    del kept
print(release_idle_memory(1 << 40), release_idle_memory(0), release_idle_memory(0))
"""


@pytest.mark.slow
@pytest.mark.skipif(
    jemalloc_path() is None, reason="jemalloc is not installed (apt-get install libjemalloc2)"
)
def test_jemalloc_hands_back_freed_pages_only_past_the_bound():
    """With decay off jemalloc keeps every freed page; past the bound they go back to the OS."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    env |= {"LD_PRELOAD": str(jemalloc_path()), "MALLOC_CONF": JEMALLOC_CONF}
    cmd = [sys.executable, "-c", _FRAGMENT_AND_RELEASE]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    under_bound, released, again = map(int, out.stdout.split())
    assert under_bound == 0 and released > 100e6 and again == 0


def test_releasing_idle_memory_is_a_no_op_under_glibc():
    if "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("this process runs under jemalloc")
    assert release_idle_memory(0) == 0


@pytest.mark.slow
def test_avx2_proxy_runs_a_command_as_a_cpu_without_bf16(tmp_path):
    # benchmarks/avx2_proxy.sh: the Zen 3 kind's kernels and fp32 on any x86 CPU, its probe cache apart
    code = (
        "import json, torch; from seglib.engine.runtime import default_amp, native_bf16; "
        "from seglib.engine.fastpath import probe_cache_path; cpu = torch.device('cpu'); "
        "print(json.dumps([native_bf16(cpu), default_amp(cpu), torch.backends.cpu.get_cpu_capability(), "
        "str(probe_cache_path()), __import__('os').environ.get('ONEDNN_MAX_CPU_ISA')]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SEGLIB_PROBE_CACHE"} | {
        "XDG_CACHE_HOME": str(tmp_path)
    }
    out = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "avx2_proxy.sh"), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=env,
    )
    bf16, amp, capability, cache, onednn = json.loads(out.stdout)
    assert (bf16, amp, capability, onednn) == (False, False, "AVX2", "AVX2")
    assert cache == str(tmp_path / "seglib" / "fastpath-avx2-proxy.json")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the loaded libraries from /proc")
def test_the_allocator_named_is_the_one_loaded_and_a_path_ld_so_splits_is_not_offered(tmp_path, monkeypatch):
    """ld.so splits LD_PRELOAD at spaces and colons: a conda environment under "/home/Jo Doe" preloaded
    "/home/Jo", every process printed an error, ran on glibc, and its run said jemalloc."""
    from seglib import allocator

    unloadable = tmp_path / "nowhere" / "libjemalloc.so.2"
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    code = "from seglib.allocator import allocator_name; print(allocator_name())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "LD_PRELOAD": str(unloadable)},
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "glibc" and "cannot be preloaded" in out.stderr
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("SEGLIB_JEMALLOC", raising=False)
    for prefix, offered in (("my env", False), ("my:env", False), ("myenv", True)):
        lib = tmp_path / prefix / "lib" / "libjemalloc.so.2"
        lib.parent.mkdir(parents=True)
        lib.write_bytes(b"")
        monkeypatch.setattr(allocator, "_CANDIDATES", ())  # as where the system has none
        monkeypatch.setattr(sys, "prefix", str(tmp_path / prefix))
        assert allocator.jemalloc_path() == (lib if offered else None)
        assert ("LD_PRELOAD" in allocator.allocator_env()) == offered
