"""``repsr bench``: time SR networks on this machine the way the field times them.

Any network: a bundled model, a deploy file, a plain net by size (``compact:m16c64``, random weights) or a peer
architecture (:mod:`repsr.peers`, random weights). Every candidate is warmed up, then the candidates are timed in
turns (one run each per round, ``rounds`` rounds), so that all of them see the same machine state: a CPU's speed
drifts by tens of percent within minutes. Reported: median milliseconds per image and the spread (the fastest and
slowest round), images/s, megapixels/s of output, parameters (those that run), MACs and peak memory.

Two series: ``torch`` (eager PyTorch, float NCHW in and out: the common ground every network runs in) and
``repsr`` (what ``repsr upscale`` does with a Compact network: a uint8 image through the runtime ``--backend auto``
picks, clipping and rounding included). ``--protocol ntire`` times as the NTIRE Efficient SR challenges do: fp32,
batch 1, CUDA events around the forward pass, cuDNN autotuning off, the mean over the runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import RepsrError
from .speed import count_macs, inference_params, tf32_flags, torch_threads

SERIES = ("torch", "repsr")
COMPACT = re.compile(r"compact:m(\d+)c(\d+)", re.IGNORECASE)
STANDARD_SIZES = ("m4c8", "m4c16", "m4c32", "m6c40", "m10c32", "m16c64")  # ECBSR's and ETDS's plain-net sizes
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class BenchOptions:
    input: tuple[int, int] | None = None  # LR (H, W); None: the 1280x720 output of the field's tables
    scale: int = 4
    batch: int = 1
    device: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    series: tuple[str, ...] = ("torch",)
    rounds: int = 7
    warmup: int = 2
    protocol: str = "default"  # or "ntire"
    memory: bool = True


@dataclass
class Result:
    name: str
    title: str
    series: str
    scale: int
    input: list[int]
    batch: int
    precision: str
    device: str
    params: int
    macs: int  # per image
    ms_per_image: float
    ms_fastest: float
    ms_slowest: float
    images_per_s: float
    megapixels_per_s: float
    peak_memory_mb: float | None  # None where it cannot be measured (OpenVINO, ncnn)
    runtime: str = "PyTorch"  # what ran the network: PyTorch, or the runtime repsr picked (OpenVINO, ncnn)
    runs: list[float] = field(default_factory=list)  # seconds per batch, every timed round


def parse_size(text: str, option: str = "--input") -> tuple[int, int]:
    """``HxW`` (e.g. ``180x320``) as (H, W), both positive."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or min(int(m.group(1)), int(m.group(2))) < 1:
        raise RepsrError(f"{option} {text!r}: expected HxW with positive whole numbers, e.g. 180x320")
    return int(m.group(1)), int(m.group(2))


def build_subject(name: str, scale: int) -> tuple[str, nn.Module]:
    """(title, network in eval mode) for a peer, ``compact:mXcY``, a bundled model or a deploy file."""
    from .peers import PEERS, build_peer, compact

    if name.lower() in PEERS:
        return PEERS[name.lower()].title, build_peer(name.lower(), scale)
    if m := COMPACT.fullmatch(name.strip()):
        blocks, feat = int(m.group(1)), int(m.group(2))
        return f"plain M{blocks}C{feat}", compact(blocks, feat)(scale).eval()
    from .loading import load_model

    try:
        model = load_model(name)
    except RepsrError as e:
        raise RepsrError(f"{e}; or a network of 'repsr bench --list'") from None
    if model.upscale != scale:
        raise RepsrError(f"{name}: the model is x{model.upscale}; use --scale {model.upscale}")
    return name, model.eval()


def subject_list() -> str:
    """What ``repsr bench --list`` prints."""
    from .peers import PEERS
    from .zoo import bundled_names

    lines = ["bundled models (trained weights):", *(f"  {n}" for n in bundled_names()),
             "plain VGG-style nets by size, random weights (any compact:mXcY; the sizes below also by name):",
             "  " + " ".join(f"compact:{s}" for s in STANDARD_SIZES), "peer architectures, random weights:"]
    for name, peer in PEERS.items():
        if name in STANDARD_SIZES:
            continue
        params = f"{peer.params.value / 1e3:,.1f}K params published" if peer.params else ""
        lines.append(f"  {name:<14} {peer.title:<22} {params}")
    return "\n".join(lines)


class _Timer:
    """Seconds of ``run()``: wall clock after a device sync, or CUDA events around it (the NTIRE way)."""

    def __init__(self, device: torch.device, events: bool) -> None:
        self.device, self.events = device, events and device.type == "cuda"

    def __call__(self, run: Callable[[], object]) -> float:
        if self.events:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        run()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - begin


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while: what C++ code prints there, Python cannot catch."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _peak_memory_mb(run: Callable[[], object], device: torch.device) -> float | None:
    """Memory one run needs above what was in use before: on CUDA the allocator's peak; on the CPU the peak of
    the tensors PyTorch allocates during the run (the profiler's allocations and frees, in time order). The
    process's resident memory cannot say it: freed pages stay with the allocator, so a network run after a
    larger one shows no growth. None when the run is not PyTorch's (OpenVINO, ncnn allocate on their own)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return max(0.0, (torch.cuda.max_memory_allocated() - before) / 2**20)
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()  # it ran in the timing rounds already; the profiler's C++ side prints lines of its own to fd 2
    peak = in_use = 0  # each op's own allocations at its start, frees ("[memory]" events) where they happen
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        in_use += event.self_cpu_memory_usage
        peak = max(peak, in_use)
    return peak / 2**20


def _torch_runner(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return model(x)
    return run


def _repsr_runner(model: nn.Module, shape: tuple[int, ...], device: torch.device,
                  precision: str) -> tuple[Callable[[], object], str] | None:
    """``repsr upscale``'s path for a Compact network: uint8 HWC images through the prepared runtime, and the
    runtime's name."""
    from .archs.networks import CompactSRNet
    from .inference import Upscaler
    from .runtimes import BACKEND_TITLES

    if not isinstance(model, CompactSRNet):
        return None
    batch, channels, h, w = shape
    images = [np.random.default_rng(i).integers(0, 256, (h, w, channels), dtype=np.uint8) for i in range(batch)]
    upscaler = Upscaler(model, device, precision, tile=0)
    return lambda: [upscaler(img) for img in images], BACKEND_TITLES[upscaler.runner.backend]


def run_bench(names: list[str], options: BenchOptions) -> list[Result]:
    """Build every candidate, warm each up, time them in turns, and measure their memory one by one.

    ``options.threads`` applies for this call only: the caller's torch thread count is restored after."""
    with torch_threads(options.threads):
        return _run_bench(names, options)


def _run_bench(names: list[str], options: BenchOptions) -> list[Result]:
    from .runtimes import pick_device

    device = pick_device(options.device)
    ntire = options.protocol == "ntire"
    if ntire:
        if device.type != "cuda":
            raise RepsrError("--protocol ntire times on a GPU (CUDA events); this machine runs on the CPU")
        options.precision, options.batch = "fp32", 1
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if options.precision not in DTYPES:
        raise RepsrError(f"--precision must be one of {', '.join(DTYPES)}, got {options.precision!r}")
    h, w = options.input or (720 // options.scale, 1280 // options.scale)
    shape = (options.batch, 3, h, w)
    candidates = []
    for name in names:
        title, model = build_subject(name, options.scale)
        macs = count_macs(model, torch.rand(1, 3, h, w))
        params = inference_params(model, torch.rand(1, 3, 16, 16))
        net = copy.deepcopy(model).to(device, DTYPES[options.precision])
        for series in options.series:
            if series == "torch":
                x = torch.rand(shape, device=device, dtype=DTYPES[options.precision])
                run, runtime = _torch_runner(net, x), "PyTorch"
            else:
                prepared = _repsr_runner(model, shape, device, options.precision)
                if prepared is None:
                    continue  # repsr's runtimes run its own (Compact) networks only
                run, runtime = prepared
            candidates.append((name, title, series, runtime, params, macs, run))
    if not candidates:
        raise RepsrError("nothing to time: the repsr series runs Compact networks only (add --series torch)")
    timer = _Timer(device, events=ntire)
    for *_, run in candidates:
        for _ in range(options.warmup):
            run()
    times: list[list[float]] = [[] for _ in candidates]
    for _ in range(options.rounds):
        for i, (*_, run) in enumerate(candidates):
            times[i].append(timer(run))
    results = []
    for (name, title, series, runtime, params, macs, run), runs in zip(candidates, times, strict=True):
        per_batch = statistics.fmean(runs) if ntire else statistics.median(runs)
        memory = _peak_memory_mb(run, device) if options.memory and runtime == "PyTorch" else None
        out_pixels = h * w * options.scale**2
        results.append(Result(
            name=name, title=title, series=series, scale=options.scale, input=[h, w], batch=options.batch,
            precision=options.precision, device=str(device), params=params, macs=macs,
            ms_per_image=per_batch / options.batch * 1e3, ms_fastest=min(runs) / options.batch * 1e3,
            ms_slowest=max(runs) / options.batch * 1e3, images_per_s=options.batch / per_batch,
            megapixels_per_s=options.batch * out_pixels / per_batch / 1e6, peak_memory_mb=memory, runtime=runtime,
            runs=runs))
    return results


def machine_facts(device: str = "cpu") -> dict:
    """The machine a timing comes from (the benchmarks record the same)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    facts = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu, "cores": os.cpu_count(),
             "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
             "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    if device.startswith("cuda"):
        facts.update(cuda=torch.version.cuda, **tf32_flags(), cudnn_benchmark=torch.backends.cudnn.benchmark)
    return facts


def series_label(series: str, runtime: str) -> str:
    """``torch``, or ``repsr (OpenVINO)``: the series and, for repsr's, the runtime it picked."""
    return series if series == "torch" else f"{series} ({runtime})"


def report(results: list[Result], options: BenchOptions) -> str:
    """The table ``repsr bench`` prints."""
    r0 = results[0]
    how = "NTIRE protocol: CUDA events, mean" if options.protocol == "ntire" else "median"
    head = (f"x{r0.scale}, LR {r0.input[0]}x{r0.input[1]} -> {r0.input[0] * r0.scale}x{r0.input[1] * r0.scale}, "
            f"batch {r0.batch}, {r0.precision}, {r0.device}, {torch.get_num_threads()} threads, "
            f"{options.rounds} rounds in turns ({how}); peak MB: the tensors PyTorch allocates in one run")
    lines = [head, f"{'network':<24} {'series':<15} {'params':>9} {'GMACs':>8} {'ms/image':>9} {'range':>15} "
             f"{'img/s':>8} {'MP/s':>7} {'peak MB':>8}"]
    for r in results:
        memory = f"{r.peak_memory_mb:8.0f}" if r.peak_memory_mb is not None else f"{'-':>8}"
        spread = f"{r.ms_fastest:.1f}-{r.ms_slowest:.1f}"
        series = series_label(r.series, r.runtime)
        lines.append(f"{r.title:<24} {series:<15} {r.params:>9,} {r.macs / 1e9:>8.2f} {r.ms_per_image:>9.2f} "
                     f"{spread:>15} {r.images_per_s:>8.2f} {r.megapixels_per_s:>7.1f} {memory}")
    return "\n".join(lines)


def to_json(results: list[Result], options: BenchOptions) -> str:
    return json.dumps({"machine": machine_facts(results[0].device), "settings": asdict(options),
                       "results": [asdict(r) for r in results]})
