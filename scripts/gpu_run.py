"""One GPU session in one command, sized for a 15-minute slot on one card; everything lands in one folder.

    python scripts/gpu_run.py --prepare-data          # here, before: copy the training subset to .device-data/
    PYTHONPATH=src python3 scripts/gpu_run.py         # on the GPU machine (run with carry: [.device-data])
    python scripts/gpu_run.py --smoke --out DIR       # the same stages on the CPU in seconds (the test suite runs it)

Stages, each logged to OUT/<stage>.log and summarized in OUT/summary.json:
1. ``pytest -m device`` with REPSR_TEST_DEVICE=cuda: merge exactness in fp32/fp16/bf16, online merge in
   both BN phases, patch moments, tiled upscaling, on-device sampling.
2. ``benchmarks/gpu_inference.py`` (``make bench-gpu``): deploy networks against the card's floor.
3. x4 M4C16 RepSR and plain at the paper's batch 32 / LR patch 64 for equal iterations, the count
   fitted to the time box from a measured RepSR rate, then both evaluated on Set5 and Set14.

The training data must travel with the checkout (a GPU machine gets no ../shared), at most ~55 MiB:
T91 (91 images) + the first 150 BSD200 images by name (together 241 of the 291-image set) + Set14,
about 51 MiB; Set5 ships in tests/data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVICE_DATA = ROOT / ".device-data"
BSD200_IMAGES = 150
MAX_MIB = 55


def prepare_data(shared: Path, dest: Path = DEVICE_DATA) -> None:
    """Copy the training subset and Set14 into ``dest`` (git-ignored), refusing to exceed the size limit."""
    picks = {"T91": sorted((shared / "T91").glob("*.png")),
             "BSD200": sorted((shared / "BSD200").glob("*.png"))[:BSD200_IMAGES],
             "Set14": sorted((shared / "Set14").glob("*.png"))}
    if not all(picks.values()):
        raise SystemExit(f"gpu_run: {shared} lacks T91, BSD200 or Set14")
    total = sum(p.stat().st_size for files in picks.values() for p in files)
    if total > MAX_MIB * 2**20:
        raise SystemExit(f"gpu_run: the subset is {total / 2**20:.1f} MiB, over {MAX_MIB} MiB")
    for name, files in picks.items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, dest / name / f.name)
    print(f"gpu_run: {sum(map(len, picks.values()))} images, {total / 2**20:.1f} MiB in {dest}")


def stage(out: Path, name: str, cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> dict:
    """Run one stage, its output to OUT/name.log; a failing stage is recorded, the next ones still run."""
    start = time.time()
    with open(out / f"{name}.log", "w") as log:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    result = {"stage": name, "returncode": rc, "seconds": round(time.time() - start, 1)}
    print(f"gpu_run: {name}: {rc} in {result['seconds']} s", flush=True)
    return result


def train_config(name: str, block: str, iterations: int, data: Path, device: str, smoke: bool) -> dict:
    """The x4 M4C16 recipe at batch 32 / LR patch 64 (tiny on --smoke), one block type."""
    train_paths = ["Set5"] if smoke else ["T91", "BSD200"]
    return {
        "name": name, "scale": 4, "seed": 0, "device": device, "data_root": str(data),
        "network": {"num_feat": 16, "num_block": 4, "block": block},
        "data": {"train": {"paths": train_paths, "lr_patch": 16 if smoke else 64, "batch_size": 4 if smoke else 32,
                           "repeat": 4 if smoke else 100, "num_workers": 0, "on_device": True,
                           "cache_dir": str(data / "lr_cache")},
                 "val": {"paths": ["Set5", "Set14"], "every": iterations // (2 if smoke else 10)}},
        "train": {"total_iter": iterations, "optimizer": {"lr": 5e-4},
                  "scheduler": {"type": "cosine", "warmup_iter": max(0, min(2000, iterations // 50)), "min_lr": 1e-7},
                  "ema_decay": 0.999, "bn": {"switch": 0.8, "recompute_batches": 2 if smoke else 100}},
        "checkpoint": {"every": max(1, iterations // 4), "keep": 1},
        "logger": {"print_every": max(1, iterations // 20), "tensorboard": False, "progress": False},
    }


def train_stage(out: Path, data: Path, device: str, budget: float, smoke: bool) -> list[dict]:
    """Calibrate the RepSR iteration rate, then train RepSR and plain for the same number of iterations."""
    import yaml

    runs = out / "train"
    runs.mkdir(exist_ok=True)
    calibration = 8 if smoke else 300
    cfg = train_config("calibrate", "repsr", calibration, data, device, smoke)
    cfg["data"]["val"] = {"paths": [], "every": 0}
    (runs / "calibrate.yml").write_text(yaml.safe_dump(cfg))
    results = [stage(out, "train_calibrate", [sys.executable, "-m", "repsr.cli", "train", str(runs / "calibrate.yml"),
                                              "--out", str(runs / "calibrate")], timeout=budget)]
    log = (runs / "calibrate" / "train.log").read_text() if (runs / "calibrate" / "train.log").is_file() else ""
    rates = [float(line.split(" it/s")[0].split()[-1]) for line in log.splitlines() if " it/s " in line]
    rate = max(rates) if rates else 1.0
    # RepSR (the slower one) gets half the time box, validation and the final evaluation included
    iterations = 16 if smoke else max(1000, int(rate * budget * 0.4) // 1000 * 1000)
    summary = {"repsr_it_per_s_calibration": rate, "iterations": iterations, "runs": {}}
    for block in ("repsr", "plain"):
        cfg = train_config(f"gpu_{block}", block, iterations, data, device, smoke)
        (runs / f"{block}.yml").write_text(yaml.safe_dump(cfg))
        results.append(stage(out, f"train_{block}", [sys.executable, "-m", "repsr.cli", "train",
                                                     str(runs / f"{block}.yml"), "--out", str(runs / block)],
                             timeout=budget))
        res = runs / block / "results.json"
        if res.is_file():
            summary["runs"][block] = json.loads(res.read_text())
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for block in ("repsr", "plain"):  # checkpoints stay behind; the results, logs and deploy files come back
        shutil.rmtree(runs / block / "checkpoints", ignore_errors=True)
    shutil.rmtree(runs / "calibrate" / "checkpoints", ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu_run"),
                        help="output folder (default: $OUT when set, else runs/gpu_run)")
    parser.add_argument("--smoke", action="store_true", help="every stage on the CPU, tiny, in seconds")
    parser.add_argument("--train-budget", type=float, default=330.0,
                        help="seconds for the two training runs together (default: 330)")
    parser.add_argument("--prepare-data", nargs="?", const="../shared/datasets", metavar="SHARED",
                        help="copy the training subset from SHARED (default ../shared/datasets) and stop")
    args = parser.parse_args(argv)
    if args.prepare_data:
        prepare_data(Path(args.prepare_data).resolve())
        return 0
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.smoke else "cuda"
    data = out / "data" if args.smoke else DEVICE_DATA
    if args.smoke:  # Set5 from the tests doubles as training and validation data
        for name in ("Set5", "Set14"):
            shutil.copytree(ROOT / "tests" / "data" / "Set5", data / name, dirs_exist_ok=True)
    else:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu_run: no CUDA device (use --smoke to check the script on the CPU)")
        if not (DEVICE_DATA / "BSD200").is_dir():
            raise SystemExit(f"gpu_run: no training data in {DEVICE_DATA}; run --prepare-data first and carry it")
        if not (DEVICE_DATA / "Set5").is_dir():
            shutil.copytree(ROOT / "tests" / "data" / "Set5", DEVICE_DATA / "Set5")
    started = time.time()
    env = subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout if shutil.which("nvidia-smi") else ""
    (out / "env.txt").write_text(env + f"\npython {sys.version}\n")
    tests = [sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "device", "-q", "-p", "no:cacheprovider",
             "tests/test_device.py"]
    if args.smoke:
        tests += ["-k", "patch_moments"]
    results = [stage(out, "pytest_device", tests, env={"REPSR_TEST_DEVICE": device}, timeout=240)]
    bench = [sys.executable, "benchmarks/gpu_inference.py"] + (["--device", "cpu", "--quick"] if args.smoke else [])
    results.append(stage(out, "bench_gpu", bench, timeout=300))
    for name in ("RESULTS.md", "results/gpu_inference.json"):
        if (ROOT / "benchmarks" / name).is_file() and not args.smoke:
            shutil.copy2(ROOT / "benchmarks" / name, out / Path(name).name)
    results += train_stage(out, data, device, args.train_budget, args.smoke)
    summary = {"stages": results, "seconds": round(time.time() - started, 1), "smoke": args.smoke}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"gpu_run: done in {summary['seconds']} s -> {out}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
