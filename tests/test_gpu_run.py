"""scripts/gpu_run.py end to end in its CPU smoke mode: every stage of the one-shot GPU session runs."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_run_smoke(tmp_path):
    out = tmp_path / "gpu_run"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_run.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["pytest_device", "bench_gpu", "train_calibrate",
                                                         "train_repsr", "train_plain"]
    assert all(s["returncode"] == 0 for s in summary["stages"])
    assert "passed" in (out / "pytest_device.log").read_text()
    train = json.loads((out / "train_summary.json").read_text())
    assert set(train["runs"]) == {"repsr", "plain"}
    assert train["runs"]["repsr"]["iterations"] == train["runs"]["plain"]["iterations"] == train["iterations"]
    for block in ("repsr", "plain"):
        assert (out / "train" / block / "model_deploy.safetensors").is_file()
        assert not (out / "train" / block / "checkpoints").exists()  # only small files come back
        assert {"Set5", "Set14"} <= set(train["runs"][block]["datasets"])


def test_training_subset_fits_the_carry_limit(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from gpu_run import MAX_MIB, prepare_data

    shared = tmp_path / "shared"
    for name, count in (("T91", 3), ("BSD200", 160), ("Set14", 2)):
        (shared / name).mkdir(parents=True)
        for i in range(count):
            (shared / name / f"{i:03d}.png").write_bytes(b"x" * 100)
    prepare_data(shared, tmp_path / "dest")
    assert len(list((tmp_path / "dest" / "BSD200").iterdir())) == 150
    assert MAX_MIB <= 55
