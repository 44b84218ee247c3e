"""One GPU session in one command, inside one deadline, returning what the device machine lets come back.

    python scripts/gpu_run.py --prepare-data    # here: training subset + its LR cache into .device-data/
    make gpu-run                                # there, carrying .device-data: python3 scripts/gpu_run.py
    python scripts/gpu_run.py --smoke --deadline 90 --out DIR   # the rehearsal on the CPU (the test suite runs it)

The machine's rules, which this script is built around: one command runs at most 600 s and is then killed with
its whole pipeline; only 8 files come back from $OUT, none deeper than $OUT/a/b/file, 16 MiB each; no network;
its python3 has torch, numpy, pillow, opencv, pyyaml, safetensors, tqdm, onnx(runtime), tensorboard, pytest,
scikit-image, torchvision, timm and matplotlib, nothing else (no venv, no pip).

So: every stage's time-out is the smaller of its own and the time left before ``--deadline`` (default 530 s);
the training runs stop on wall-clock (``train.max_seconds``) and still merge, evaluate and write their results;
a stage past its time-out gets SIGTERM (training then finishes what it has), and SIGKILL only after a grace
period. Work happens in a scratch folder; after every stage $OUT is rewritten to hold exactly two files:
``summary.json`` (every stage's status and time, the environment, the benchmark numbers, and the training
comparison with it/s per BN phase and PSNR per set) and ``gpu_run.tar.gz`` (logs, configs, results, deploy
files). The key numbers are printed to stdout as they come.

Stages:
1. ``pytest -m device`` with REPSR_TEST_DEVICE=cuda (TF32 off in the exactness checks);
2. ``benchmarks/gpu_inference.py``: deploy networks in fp32, TF32, fp16 and bf16 against the card's floor;
3. ``scripts/frontier.py`` on the GPU: repsr's plain nets and the peer networks, NTIRE protocol in fp32, and fp16
   (SPAN, SAFMN and SwinIR-light need spandrel: ``--prepare-data`` carries its wheel and einops', installed
   there with ``pip --no-index`` into the scratch folder);
4. x4 M4C16 RepSR (BN, switched) and plain at batch 32 / LR patch 64 for equal iterations, fitted to the time
   left from a measured RepSR rate, each evaluated on Set5 and Set14.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVICE_DATA = ROOT / ".device-data"
SHARED = ROOT.parent / "shared" / "datasets"  # the data root beside the checkout, whatever the current folder
BSD200_IMAGES = 120  # with T91 and Set14 about 45 MiB: the checkout and its results need the rest
HR_PATCH = 256  # LR patch 64 at x4: smaller training images cannot give a patch and are not carried
MAX_CARRY_MIB = 60  # the device machine takes the checkout plus carried folders up to 64 MiB
WHEELS = ("spandrel==0.4.2", "einops==0.8.1")  # pure Python; the GPU machine has torch and torchvision already
OUT_FILES = ("summary.json", "gpu_run.tar.gz")
GRACE = 30.0  # seconds between SIGTERM and SIGKILL
PACK_RESERVE = 10.0  # seconds kept back for the last packing of $OUT
EVAL_RESERVE = {"cuda": 25.0, "cpu": 5.0}  # seconds a training run needs after its loop: merge, evaluation, results


# ----------------------------------------------------------------------------- data, prepared here

def prepare_data(shared: Path = SHARED, dest: Path = DEVICE_DATA, scale: int = 4) -> dict:
    """Copy what the training stage needs into ``dest`` (emptied first): T91 and the first 120 BSD200 images that
    can give an HR patch, Set14, Set5 (from tests/data), their x4 LR cache, and the commit; refuse if the checkout
    and ``dest`` together would not travel."""
    from repsr.data import HRFolder

    picks = {name: sorted((shared / name).glob("*.png")) for name in ("T91", "BSD200", "Set14")}
    picks["Set5"] = sorted((ROOT / "tests" / "data" / "Set5").glob("*.png"))
    if not all(picks.values()):
        raise SystemExit(f"gpu_run: {shared} lacks T91, BSD200 or Set14")
    from PIL import Image

    def big_enough(p: Path) -> bool:
        with Image.open(p) as im:
            return min(im.size) >= HR_PATCH

    picks["T91"] = [p for p in picks["T91"] if big_enough(p)]
    picks["BSD200"] = [p for p in picks["BSD200"] if big_enough(p)][:BSD200_IMAGES]
    shutil.rmtree(dest, ignore_errors=True)
    for name, files in picks.items():
        (dest / name).mkdir(parents=True)
        for f in files:
            shutil.copy2(f, dest / name / f.name)
        for i in range(len(files)):  # the LR images, made here once (MATLAB bicubic costs CPU there too)
            HRFolder(dest / name, scale, dest / "lr_cache")[i]
    wheels = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                             "-d", str(dest / "wheels"), *WHEELS], capture_output=True, text=True) if WHEELS else None
    if wheels is not None and wheels.returncode != 0:
        print(f"gpu_run: no wheels for {', '.join(WHEELS)} (the GPU frontier will skip SPAN, SAFMN, SwinIR): "
              f"{wheels.stderr.strip().splitlines()[-1] if wheels.stderr.strip() else 'pip failed'}")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    (dest / "commit.txt").write_text(commit + (" (with uncommitted changes)" if dirty else "") + "\n")
    mib = carried_mib(dest)
    if mib > MAX_CARRY_MIB:
        shutil.rmtree(dest)
        raise SystemExit(f"gpu_run: checkout + {dest.name} would be {mib:.1f} MiB, over {MAX_CARRY_MIB} MiB")
    report = {name: len(files) for name, files in picks.items()}
    print(f"gpu_run: {report} in {dest}; with the checkout {mib:.1f} MiB travel")
    return report


def carried_mib(dest: Path) -> float:
    """MiB of what a device call sends: tracked and untracked-not-ignored files, plus ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True).stdout.split("\0")
    files = [ROOT / f for f in listed if f] + [p for p in dest.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file()) / 2**20


# ----------------------------------------------------------------------------- time, stages and $OUT

class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def timeout(self, own: float) -> float:
        """A stage's time-out: its own, or what is left before the last packing, whichever is smaller."""
        return max(0.0, min(own, self.left() - PACK_RESERVE))


@dataclass
class Run:
    out: Path
    work: Path
    deadline: Deadline
    smoke: bool
    summary: dict = field(default_factory=lambda: {"stages": [], "key_numbers": {}})
    started: float = field(default_factory=time.monotonic)

    def stage(self, name: str, cmd: list[str], own_timeout: float, env: dict[str, str] | None = None) -> dict:
        """Run one stage with its output in WORK/name.log; past its time-out SIGTERM, then SIGKILL after a grace
        period. A failing stage is recorded and the next ones still run. $OUT is rewritten after it."""
        timeout = self.deadline.timeout(own_timeout)
        result = {"stage": name, "timeout_s": round(timeout, 1)}
        if timeout < 5:
            result.update(status="skipped: no time left", seconds=0.0)
        else:
            start = time.monotonic()
            path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
            with open(self.work / f"{name}.log", "w") as log:
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONPATH": path, **(env or {})})
                result["status"] = finish(proc, timeout)
            result["returncode"] = proc.returncode
            result["seconds"] = round(time.monotonic() - start, 1)
        self.summary["stages"].append(result)
        print(f"gpu_run: {name}: {result['status']} in {result['seconds']} s "
              f"({self.deadline.left():.0f} s left)", flush=True)
        self.publish()
        return result

    def key(self, name: str, value) -> None:
        self.summary["key_numbers"][name] = value
        print(f"gpu_run: {name} = {value}", flush=True)

    def publish(self) -> None:
        """$OUT holds summary.json and gpu_run.tar.gz (everything small in the scratch folder), nothing else."""
        self.summary["seconds"] = round(time.monotonic() - self.started, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.iterdir():
            if stale.name not in OUT_FILES:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        tmp = self.out / ".gpu_run.tar.gz.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(self.work, arcname="gpu_run", filter=small_files)
        tmp.replace(self.out / "gpu_run.tar.gz")
        text = json.dumps(self.summary, indent=2) + "\n"
        (self.out / ".summary.json.tmp").write_text(text)
        (self.out / ".summary.json.tmp").replace(self.out / "summary.json")


def finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        return "ok" if proc.wait(timeout=timeout) == 0 else "failed"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=GRACE)
            return "timed out (SIGTERM, finished)"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "timed out (killed)"


def small_files(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """What goes into the archive: no checkpoints, training data, caches or installed wheels."""
    parts = Path(info.name).parts
    return None if {"checkpoints", "data", "lr_cache", "tb", "site"} & set(parts) else info


# ----------------------------------------------------------------------------- the stages

def environment(smoke: bool) -> dict:
    import torch

    from repsr.speed import tf32_flags

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "tf32_defaults": tf32_flags(), "cpus": os.cpu_count(), "smoke": smoke,
           "commit": (DEVICE_DATA / "commit.txt").read_text().strip() if (DEVICE_DATA / "commit.txt").is_file()
           else None}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    if shutil.which("nvidia-smi"):
        env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm",
                                            "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    return env


def train_config(name: str, block: str, iterations: int, data: Path, device: str, smoke: bool,
                 max_seconds: float = 0.0) -> dict:
    """The x4 M4C16 recipe at batch 32 / LR patch 64 (tiny on --smoke), one block type."""
    train_paths = ["Set5"] if smoke else ["T91", "BSD200"]
    return {
        "name": name, "scale": 4, "seed": 0, "device": device, "data_root": str(data),
        "network": {"num_feat": 16, "num_block": 4, "block": block},
        "data": {"train": {"paths": train_paths, "lr_patch": 16 if smoke else 64, "batch_size": 4 if smoke else 32,
                           "repeat": 4 if smoke else 100, "num_workers": 0, "on_device": True,
                           "cache_dir": str(data / "lr_cache")},
                 "val": {"paths": ["Set5", "Set14"], "every": max(1, iterations // (2 if smoke else 10))}},
        "train": {"total_iter": iterations, "max_seconds": max_seconds, "optimizer": {"lr": 5e-4},
                  "scheduler": {"type": "cosine", "warmup_iter": max(0, min(2000, iterations // 50)), "min_lr": 1e-7},
                  "ema_decay": 0.999, "bn": {"switch": 0.8, "recompute_batches": 2 if smoke else 100}},
        "checkpoint": {"every": max(1, iterations // 4), "keep": 1},
        "logger": {"print_every": max(1, iterations // (8 if smoke else 40)), "tensorboard": False, "progress": False},
    }


def rates_by_phase(log: Path) -> dict[str, float]:
    """Median it/s per BN phase ('batch', 'population', '-' for none) from a train.log's progress lines."""
    found: dict[str, list[float]] = {}
    text = log.read_text() if log.is_file() else ""
    for rate, phase in re.findall(r" ([0-9.]+) it/s BN (\S+)", text):
        found.setdefault(phase, []).append(float(rate))
    return {phase: statistics.median(r) for phase, r in found.items()}


def train_stage(run: Run, data: Path, device: str) -> None:
    """Calibrate the RepSR rate, then RepSR and plain for the same iterations (each stops on wall-clock if need be)."""
    import yaml

    runs = run.work / "train"
    runs.mkdir(exist_ok=True)

    reserve = EVAL_RESERVE[device]

    def train(name: str, cfg: dict, seconds: float) -> dict:
        (runs / f"{name}.yml").write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "repsr.cli", "train", str(runs / f"{name}.yml"), "--out", str(runs / name)]
        result = run.stage(f"train_{name}", cmd, seconds + reserve)
        shutil.rmtree(runs / name / "checkpoints", ignore_errors=True)
        return result

    calibration = 8 if run.smoke else 400
    cfg = train_config("calibrate", "repsr", calibration, data, device, run.smoke)
    cfg["data"]["val"] = {"paths": [], "every": 0}
    train("calibrate", cfg, 60 if run.smoke else 90)
    rates = rates_by_phase(runs / "calibrate" / "train.log")
    # the slower phase sets the pace (the median of its windows, not the best one), with a margin of 20%
    rate = min(rates.values()) if rates else 1.0
    budget = run.deadline.left() - PACK_RESERVE - 2 * reserve
    share = max(5.0, budget * 0.55)  # RepSR is the slower of the two
    iterations = max(10, int(rate * 0.8 * share) // 10 * 10)
    if run.smoke:  # the rehearsal checks the stages, not the pace: keep it short however slow the CPU is today
        iterations = min(iterations, 20)
    comparison = {"calibration_it_per_s": rates, "iterations": iterations, "runs": {}}
    run.summary["training"] = comparison
    for block in ("repsr", "plain"):
        seconds = share if block == "repsr" else max(5.0, run.deadline.left() - PACK_RESERVE - reserve)
        cfg = train_config(f"gpu_{block}", block, iterations, data, device, run.smoke, max_seconds=seconds)
        stage = train(block, cfg, seconds)
        res = runs / block / "results.json"
        entry = {"status": stage["status"], "it_per_s": rates_by_phase(runs / block / "train.log")}
        if res.is_file():
            results = json.loads(res.read_text())
            entry.update(iterations=results["iterations"], stopped_early=results["stopped_early"],
                         psnr={k: round(v["psnr"], 3) for k, v in results["datasets"].items()})
        comparison["runs"][block] = entry
        run.key(f"train_{block}", entry)
        run.publish()


def install_wheels(work: Path) -> None:
    """The carried wheels (spandrel, einops) into WORK/site, on PYTHONPATH for every stage: pip without network."""
    wheels = sorted((DEVICE_DATA / "wheels").glob("*.whl"))
    if not wheels:
        return
    site = work / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--target", str(site), *map(str, wheels)], capture_output=True, text=True)
    if done.returncode == 0:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    else:
        print(f"gpu_run: the carried wheels did not install: {done.stderr.strip()[-300:]}", flush=True)


def frontier_stage(run: Run, device: str) -> None:
    """The peers and repsr's plain nets timed on the device: NTIRE protocol (fp32), then fp16."""
    for precision in ("fp32",) if run.smoke else ("fp32", "fp16"):
        out = run.work / f"frontier_{precision}"
        cmd = [sys.executable, "scripts/frontier.py", "--device", device, "--precision", precision, "--out", str(out)]
        if run.smoke:
            cmd += ["--smoke", "--networks", "m4c16,imdn", "--threads", "1"]
        if run.stage(f"frontier_{precision}", cmd, 120)["status"] == "ok":
            rows = json.loads((out / "frontier.json").read_text())["results"]
            run.summary[f"frontier_{precision}"] = {f"{r['name']}/{r['series']}": round(r["ms_per_image"], 3)
                                                    for r in rows}
            run.key(f"frontier_{precision}_ms", run.summary[f"frontier_{precision}"])
            run.publish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu_run"),
                        help="what comes back: summary.json and gpu_run.tar.gz (default: $OUT, else runs/gpu_run)")
    parser.add_argument("--work", help="scratch folder (default: a fresh temporary folder)")
    parser.add_argument("--deadline", type=float, default=530.0,
                        help="seconds for everything, the last packing included (default: 530, for a 600 s command)")
    parser.add_argument("--smoke", action="store_true", help="every stage on the CPU, tiny: the rehearsal")
    parser.add_argument("--prepare-data", nargs="?", const=str(SHARED), metavar="SHARED",
                        help=f"copy the training subset from SHARED (default {SHARED}) and stop")
    args = parser.parse_args(argv)
    if args.prepare_data:
        sys.path.insert(0, str(ROOT / "src"))
        prepare_data(Path(args.prepare_data).resolve())
        return 0
    import tempfile

    deadline = Deadline(args.deadline)
    work = Path(args.work or tempfile.mkdtemp(prefix="repsr_gpu_run_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    run = Run(Path(args.out).resolve(), work, deadline, args.smoke)
    device = "cpu" if args.smoke else "cuda"
    if args.smoke:  # Set5 from the tests doubles as training and validation data
        data = work / "data"
        for name in ("Set5", "Set14"):
            shutil.copytree(ROOT / "tests" / "data" / "Set5", data / name, dirs_exist_ok=True)
    else:
        data = DEVICE_DATA
        if not (DEVICE_DATA / "BSD200").is_dir():
            raise SystemExit(f"gpu_run: no training data in {DEVICE_DATA}; run --prepare-data here and carry it")
    sys.path.insert(0, str(ROOT / "src"))
    install_wheels(work)
    run.summary["environment"] = environment(args.smoke)
    if not args.smoke and "gpu" not in run.summary["environment"]:
        raise SystemExit("gpu_run: no CUDA device (use --smoke to rehearse on the CPU)")
    run.publish()

    tests = [sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "device", "-q", "-p", "no:cacheprovider",
             "tests/test_device.py"] + (["-k", "patch_moments or tf32"] if args.smoke else [])
    run.stage("pytest_device", tests, 150, env={"REPSR_TEST_DEVICE": device, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    bench_json = ROOT / "benchmarks" / "results" / "gpu_inference.json"
    bench = [sys.executable, "benchmarks/gpu_inference.py"] + (["--device", "cpu", "--quick"] if args.smoke else [])
    if run.stage("bench_gpu", bench, 150)["status"] == "ok" and not args.smoke and bench_json.is_file():
        shutil.copy2(bench_json, work / "gpu_inference.json")
        shutil.copy2(ROOT / "benchmarks" / "RESULTS.md", work / "RESULTS.md")
        run.summary["bench_gpu"] = json.loads(bench_json.read_text())
        run.key("bench_gpu_rows", len(run.summary["bench_gpu"].get("results", [])))
    frontier_stage(run, device)
    train_stage(run, data, device)
    run.publish()
    ok = all(s["status"] == "ok" for s in run.summary["stages"])
    print(f"gpu_run: {'done' if ok else 'done with failures'} in {run.summary['seconds']} s -> {run.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
