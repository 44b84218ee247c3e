"""repsr ablate end to end on a tiny spec, and the BN-artifact study."""

import json

import yaml
from conftest import DATA

from repsr.ablation import psnr_plot_svg, read_spec, run_ablation
from repsr.cli import main


def test_tiny_ablation_runs_end_to_end_and_resumes(tmp_path, capsys):
    base = {
        "name": "base", "scale": 2, "seed": 0, "data_root": str(DATA),
        "network": {"num_feat": 4, "num_block": 1},
        "data": {"train": {"paths": ["Set5"], "lr_patch": 16, "batch_size": 4, "repeat": 2, "num_workers": 0,
                           "cache_dir": str(tmp_path / "cache")},
                 "val": {"paths": ["Set5"], "every": 4}},
        "train": {"total_iter": 8, "ema_decay": 0.9, "bn": {"switch": 0.5, "recompute_batches": 1}},
        "checkpoint": {"every": 4}, "logger": {"tensorboard": False, "progress": False},
    }
    (tmp_path / "base.yml").write_text(yaml.safe_dump(base))
    spec = {
        "base": "base.yml", "opt": {"train.total_iter": 8},
        "variants": [{"name": "plain", "opt": {"network.block": "plain"}},
                     {"name": "repsr", "opt": {"network.block": "repsr"}},
                     {"name": "noswitch", "opt": {"network.block": "repsr", "train.bn.switch": None}},
                     {"name": "ecb", "opt": {"network.block": "ecb"}}],
        "test_sets": ["Set5"],
        "bn_study": {"noswitch": "noswitch", "switched": "repsr", "images": ["Set5"]},
    }
    spec_path = tmp_path / "spec.yml"
    spec_path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "ablation"
    assert main(["ablate", str(spec_path), "--out", str(out)]) == 0
    results = json.loads((out / "ablation.json").read_text())
    assert [r["name"] for r in results] == ["plain", "repsr", "noswitch", "ecb"]
    by_name = {r["name"]: r for r in results}
    assert by_name["noswitch"]["bn_switch"] is None and by_name["repsr"]["bn_switch"] == 4
    assert len({r["deploy_params"] for r in results}) == 1  # the same deploy network for every block
    assert by_name["repsr"]["train_params"] > by_name["plain"]["train_params"]
    assert all(r["train_it_per_s"] > 0 and "Set5" in r["test"] for r in results)
    md = (out / "ablation.md").read_text()
    assert "| variant |" in md and "BN-artifact study" in md and "(iii) switched" in md
    assert (out / "ablation_psnr.svg").read_text().startswith("<svg")
    assert (out / "bn_study" / "bn_artifacts.png").is_file()
    # resumable: finished variants are not retrained
    stamp = (out / "variants" / "repsr" / "variant.json").stat().st_mtime_ns
    capsys.readouterr()
    run_ablation(spec_path, out)
    assert (out / "variants" / "repsr" / "variant.json").stat().st_mtime_ns == stamp


def test_shipped_specs_parse():
    for name in ("ablation_cpu", "ablation_gpu"):
        spec = read_spec(f"specs/{name}.yml")
        assert {"plain", "repsr", "repsr_noswitch", "repvgg", "acb", "dbb", "ecb"} <= {v.name for v in spec.variants}


def test_plot_without_history_is_empty():
    assert psnr_plot_svg([{"label": "a", "history": []}], "ema/Set5") == ""
