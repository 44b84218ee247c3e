"""scripts/gpu_run.py rehearsed on the CPU under the device machine's rules: a deadline it must keep, at most 8
files in $OUT no deeper than $OUT/a/b/file, a complete summary.json, and only the packages that machine has."""

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from repsr.images import write_image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_run  # noqa: E402

# installed here for the tests, absent on the GPU machine (its python3: torch, numpy, pillow, opencv, pyyaml,
# safetensors, tqdm, onnx, onnxruntime, tensorboard, scikit-image, pytest, torchvision, timm, matplotlib)
ABSENT_THERE = ("hypothesis", "resize_right", "einops", "ruff", "av", "openvino", "ncnn", "spandrel")

# imported by every Python process of the run (PYTHONPATH reaches them all): each writes, at exit, the top-level
# modules it imported
AUDIT = """
import atexit, os, sys
def _write():
    names = sorted({name.split(".")[0] for name in list(sys.modules)})
    with open(os.path.join(os.environ["REPSR_IMPORT_AUDIT"], f"{os.getpid()}.txt"), "w") as f:
        f.write("\\n".join(names))
atexit.register(_write)
"""


def test_smoke_rehearsal_keeps_the_machine_rules(tmp_path):
    site, audit = tmp_path / "site", tmp_path / "audit"
    site.mkdir()
    audit.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT)
    out, deadline = tmp_path / "OUT", 90
    (out / "old" / "deep").mkdir(parents=True)  # a previous stage's leftovers are cleared
    (out / "old" / "deep" / "file").write_text("x")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_run.py"), "--smoke", "--deadline", str(deadline),
                           "--out", str(out), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(site), "REPSR_IMPORT_AUDIT": str(audit), "PATH": "/usr/bin:/bin"})
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert elapsed < deadline
    files = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["gpu_run.tar.gz", "summary.json"]
    assert all(len(p.relative_to(out).parts) <= 3 and p.stat().st_size < 16 * 2**20 for p in files)
    summary = json.loads((out / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["pytest_device", "bench_gpu", "frontier_fp32",
                                                         "train_calibrate", "train_repsr", "train_plain"]
    assert all(s["status"] == "ok" for s in summary["stages"])
    assert {"torch", "cuda", "cudnn", "tf32_defaults", "python"} <= set(summary["environment"])
    training = summary["training"]
    for block in ("repsr", "plain"):
        run = training["runs"][block]
        assert run["iterations"] == training["iterations"] and {"Set5", "Set14"} <= set(run["psnr"])
        assert run["it_per_s"]
    assert set(training["runs"]["repsr"]["it_per_s"]) == {"batch", "population"}  # per BN phase
    with tarfile.open(out / "gpu_run.tar.gz") as tar:
        names = tar.getnames()
    assert "gpu_run/train/repsr/model_deploy.safetensors" in names and "gpu_run/pytest_device.log" in names
    assert not any("checkpoints" in n or "/data/" in n for n in names)
    assert "passed" in (tmp_path / "work" / "pytest_device.log").read_text()
    assert "gpu_run: train_repsr = " in proc.stdout  # the key numbers on stdout
    imported = {name for f in audit.iterdir() for name in f.read_text().split()}
    assert len(list(audit.iterdir())) >= 6  # gpu_run itself, pytest, the benchmark and three trainings
    assert {"torch", "repsr", "pytest"} <= imported and not imported & set(ABSENT_THERE)


def test_a_stage_past_its_timeout_gets_sigterm_then_sigkill(monkeypatch):
    monkeypatch.setattr(gpu_run, "GRACE", 2.0)
    polite = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                               "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\ntime.sleep(60)"])
    time.sleep(0.5)
    assert gpu_run.finish(polite, 0.5) == "timed out (SIGTERM, finished)"
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)"])
    time.sleep(0.5)
    assert gpu_run.finish(stubborn, 0.5) == "timed out (killed)"


def test_deadline_bounds_every_stage():
    deadline = gpu_run.Deadline(100)
    assert deadline.timeout(30) == 30
    assert 100 - gpu_run.PACK_RESERVE - 1 < deadline.timeout(1000) <= 100 - gpu_run.PACK_RESERVE
    assert gpu_run.Deadline(5).timeout(30) == 0


def test_prepare_data_carries_only_what_can_give_a_patch(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_run, "WHEELS", ())  # no download in the tests
    shared = tmp_path / "shared"
    rng = np.random.default_rng(0)
    sizes = {"T91": [(100, 120), (260, 300)], "BSD200": [(321, 481)] * 3 + [(200, 481)], "Set14": [(64, 64)]}
    for name, shapes in sizes.items():
        (shared / name).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            write_image(shared / name / f"{i:03d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    dest = tmp_path / "dest"
    (dest / "stale").mkdir(parents=True)
    report = gpu_run.prepare_data(shared, dest)
    assert report == {"T91": 1, "BSD200": 3, "Set14": 1, "Set5": 5}
    assert not (dest / "stale").exists() and (dest / "commit.txt").read_text().strip()
    assert len(list((dest / "lr_cache").glob("*.png"))) == 10  # the x4 LR of every carried image
    with pytest.raises(SystemExit, match="lacks"):
        gpu_run.prepare_data(tmp_path / "nothing", tmp_path / "dest2")


@pytest.mark.parametrize("target", ["gpu-run", "bench-gpu"])
def test_gpu_targets_need_no_venv_or_network(target):
    commands = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
    assert "setup_env" not in commands and "pip" not in commands and ".venv" not in commands
    assert commands.startswith("PYTHONPATH=src python3 ")
