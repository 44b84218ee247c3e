"""repsr ablate end to end on a tiny spec, and the BN-artifact study."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import DATA

from repsr.ablation import (
    RunRecord,
    last_quarter_gain,
    read_spec,
    run_ablation,
    run_dir,
    summarize,
    variant_config,
    verdict,
)
from repsr.cli import main
from repsr.config import set_dotted
from repsr.errors import RepsrError
from repsr.loading import load_model
from repsr.plots import psnr_plot_svg

ROOT = Path(__file__).resolve().parents[1]


def _tiny_spec(tmp_path, **extra):
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
    spec = {"base": "base.yml", "opt": {"train.total_iter": 8}, "test_sets": ["Set5"], **extra}
    spec_path = tmp_path / "spec.yml"
    spec_path.write_text(yaml.safe_dump(spec))
    return spec_path


def test_tiny_ablation_runs_end_to_end_and_resumes(tmp_path, capsys):
    spec_path = _tiny_spec(tmp_path, variants=[
        {"name": "plain", "opt": {"network.block": "plain"}},
        {"name": "repsr", "opt": {"network.block": "repsr"}},
        {"name": "noswitch", "opt": {"network.block": "repsr", "train.bn.switch": None}},
        {"name": "ecb", "opt": {"network.block": "ecb"}}],
        bn_study={"noswitch": "noswitch", "switched": "repsr", "images": ["Set5"]})
    out = tmp_path / "ablation"
    assert main(["ablate", str(spec_path), "--out", str(out)]) == 0
    report = json.loads((out / "ablation.json").read_text())
    results = report["summary"]
    assert [r["name"] for r in results] == ["plain", "repsr", "noswitch", "ecb"]
    assert report["seeds"] == [0] and report["reference"] == "plain"
    by_name = {r["name"]: r for r in results}
    assert by_name["noswitch"]["bn_switch"] is None and by_name["repsr"]["bn_switch"] == 4
    assert len({r["deploy_params"] for r in results}) == 1  # the same deploy network for every block
    assert by_name["repsr"]["train_params"] > by_name["plain"]["train_params"]
    assert all(r["train_it_per_s"] > 0 and "Set5" in r["test"] for r in results)
    run = json.loads((out / "variants" / "repsr" / "seed_0" / "run.json").read_text())
    assert [h["iteration"] for h in run["history"]] == [4, 8]  # the final validation is in the curve
    for f in ("results.json", "train.log", "model_deploy.safetensors", "config.yml"):
        assert (out / "variants" / "repsr" / "seed_0" / f).is_file()
    md = (out / "ablation.md").read_text()
    assert "| variant |" in md and "BN-artifact study" in md and "(iii) switched" in md and "one seed" in md
    svg = (out / "ablation_psnr.svg").read_text()
    assert svg.startswith("<svg") and "BN switch" in svg
    assert (out / "bn_study" / "bn_artifacts.png").is_file()
    # resumable: finished runs are not retrained
    stamp = (out / "variants" / "repsr" / "seed_0" / "run.json").stat().st_mtime_ns
    capsys.readouterr()
    run_ablation(spec_path, out)
    assert (out / "variants" / "repsr" / "seed_0" / "run.json").stat().st_mtime_ns == stamp


def test_seeds_give_mean_std_and_paired_differences(tmp_path, capsys):
    spec_path = _tiny_spec(tmp_path, seeds=[3, 5], reference="plain", pairs=[["plain", "repsr"]], variants=[
        {"name": "repsr", "opt": {"network.block": "repsr"}},
        {"name": "plain", "opt": {"network.block": "plain"}}])
    out = tmp_path / "study"
    runs = run_ablation(spec_path, out)
    assert [(r.name, r.seed) for r in runs] == [("repsr", 3), ("plain", 3), ("repsr", 5), ("plain", 5)]
    # the seed reaches initialization and data: the two seeds' deploy models differ
    a = load_model(str(out / "variants" / "plain" / "seed_3" / "model_deploy.safetensors"))
    b = load_model(str(out / "variants" / "plain" / "seed_5" / "model_deploy.safetensors"))
    assert not torch.equal(a.body[0].weight, b.body[0].weight)
    assert yaml.safe_load((out / "variants" / "plain" / "seed_5" / "config.yml").read_text())["seed"] == 5
    report = json.loads((out / "ablation.json").read_text())
    by_name = {r["name"]: r for r in report["summary"]}
    psnrs = {(r.name, r.seed): r.test["Set5"]["psnr"] for r in runs}
    cell = by_name["repsr"]["test"]["Set5"]
    assert cell["psnr"] == pytest.approx(np.mean([psnrs["repsr", 3], psnrs["repsr", 5]]))
    assert cell["psnr_std"] == pytest.approx(np.std([psnrs["repsr", 3], psnrs["repsr", 5]], ddof=1))
    deltas = [psnrs["repsr", s] - psnrs["plain", s] for s in (3, 5)]
    assert cell["delta"]["per_seed"] == pytest.approx(deltas)
    assert cell["delta"]["mean"] == pytest.approx(np.mean(deltas))
    assert "delta" not in by_name["plain"]["test"]["Set5"]
    md = (out / "ablation.md").read_text()
    assert "reference" in md
    pair_row = next(line for line in md.splitlines() if line.startswith("| plain | repsr |"))
    assert f"{-np.mean(deltas):+.3f}" in pair_row  # the pair's difference is the reference's, negated
    # an interrupted run resumes from its checkpoint: drop one finished run's marker and its final checkpoint
    run = out / "variants" / "plain" / "seed_5"
    (run / "run.json").unlink()
    (run / "checkpoints" / "iter_00000008.pth").unlink()
    capsys.readouterr()
    again = run_ablation(spec_path, out)
    assert "resumed from" in (run / "train.log").read_text()
    assert [r.test for r in again] == [r.test for r in runs]  # bit-exact resume, same numbers


def test_verdict_needs_agreement_and_a_margin_over_the_spread():
    assert verdict([0.2, 0.3, 0.25], spread=0.05) == "better"
    assert verdict([-0.2, -0.3, -0.25], spread=0.05) == "worse"
    assert verdict([0.2, -0.01, 0.3], spread=0.05) == "tie"  # one seed disagrees
    assert verdict([0.02, 0.03, 0.01], spread=0.05) == "tie"  # smaller than the seed spread
    assert verdict([0.5], spread=0.0) == "one seed"


def test_last_quarter_gain():
    history = [{"iteration": i, "ema/Set5": v} for i, v in [(250, 28.0), (500, 29.0), (750, 29.5), (1000, 29.6)]]
    assert last_quarter_gain(history, "ema/Set5") == pytest.approx(0.1)
    assert last_quarter_gain(history[:1], "ema/Set5") is None


def test_spec_errors_name_the_problem(tmp_path):
    bad = _tiny_spec(tmp_path, reference="plian", variants=[{"name": "plain"}])
    with pytest.raises(RepsrError, match="did you mean plain"):
        read_spec(bad)
    bad = _tiny_spec(tmp_path, pairs=[["plain", "repsr"]], variants=[{"name": "plain"}])
    with pytest.raises(RepsrError, match="'repsr' .* is not a variant"):
        read_spec(bad)
    bad = _tiny_spec(tmp_path, pairs=[["plain"]], variants=[{"name": "plain"}])
    with pytest.raises(RepsrError, match="two names"):
        read_spec(bad)
    bad = _tiny_spec(tmp_path, seeds=[1, 1], variants=[{"name": "plain"}])
    with pytest.raises(RepsrError, match="seeds repeat"):
        read_spec(bad)


def test_shipped_specs_parse():
    for name in ("ablation_cpu", "ablation_gpu"):
        spec = read_spec(ROOT / "specs" / f"{name}.yml")
        assert {"plain", "repsr", "repsr_noswitch", "repvgg", "acb", "dbb", "ecb"} <= {v.name for v in spec.variants}
    study = read_spec(ROOT / "specs/study_x4_m4c16.yml")
    assert study.seeds == [0, 1, 2] and study.reference == "plain"
    assert [v.name for v in study.variants] == ["plain", "ecb", "repsr", "repsr_noswitch", "repsr_nobn", "repvgg"]
    recipe = read_spec(ROOT / "specs/study_x4_m4c16_recipe.yml")
    assert recipe.opt == study.opt and recipe.base == study.base  # its lr 2e-3 runs are the study's seed-0 runs


def _differences(saved, now, path=""):
    """Keys the saved config has whose value the spec no longer produces (keys added later are ignored)."""
    if isinstance(saved, dict):
        return [d for k, v in saved.items() for d in _differences(v, (now or {}).get(k), f"{path}.{k}")]
    return [] if saved == now else [(path, saved, now)]


@pytest.mark.parametrize("spec_path", sorted((ROOT / "specs").glob("study_*.yml")), ids=lambda p: p.stem)
def test_committed_study_runs_are_what_their_spec_trains_today(spec_path):
    """A study in git continues from a fresh clone only if its spec still produces its runs' configs, whatever
    the shared preset has become since (specs/study_X.yml writes results/studies/X)."""
    spec, out = read_spec(spec_path), ROOT / "results" / "studies" / spec_path.stem.removeprefix("study_")
    checked = 0
    for variant in spec.variants:
        for seed in spec.seeds or [0]:
            saved = run_dir(out, variant.name, seed) / "config.yml"
            if saved.is_file():
                now = variant_config(spec, variant, spec_path.parent, seed, check_paths=False).to_dict()
                assert _differences(yaml.safe_load(saved.read_text()), now) == [], saved
                checked += 1
    assert checked > 0


def test_an_override_never_writes_through_into_a_shared_value():
    shared = {"bn": {"switch": 0.8}}
    data = {}
    set_dotted(data, "train.bn", shared["bn"])
    set_dotted(data, "train.bn.switch", None)
    assert shared["bn"] == {"switch": 0.8} and data["train"]["bn"] == {"switch": None}


def test_spec_labels_win_over_labels_recorded_in_runs():
    """A run reused from another study keeps its numbers but is labelled as this spec names it."""
    run = {"name": "plain", "label": "from another spec", "seed": 0, "block": "plain", "bn_switch": None,
           "iterations": 8, "train_params": 1, "deploy_params": 1, "train_flops_per_px": 1.0,
           "deploy_flops_per_px": 1.0, "train_it_per_s": 1.0, "test": {"Set5": {"psnr": 30.0, "ssim": 0.8}},
           "history": []}
    run = RunRecord.from_dict(run)
    assert summarize([run], ["plain"], "plain", ["Set5"])[0]["label"] == "from another spec"
    assert summarize([run], ["plain"], "plain", ["Set5"], labels={"plain": "plain, lr 2e-3"})[0]["label"] == \
        "plain, lr 2e-3"
    assert summarize([run], ["plain"], "plain", ["Set5"], labels={"plain": ""})[0]["label"] == "from another spec"


def test_plot_without_history_is_empty():
    assert psnr_plot_svg([("a", [])], "ema/Set5") == ""


def test_bn_study_scores_gray_test_images_in_gray_as_eval_does():
    """Set14 has a gray image: scoring its replicated-RGB output on Y would compress its range (+1.3 dB)."""
    from repsr.ablation.bn_study import _as_scored
    from repsr.images import to_rgb
    gray = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    assert np.array_equal(_as_scored(to_rgb(gray), gray), gray)
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert _as_scored(rgb, rgb) is rgb


def test_only_trains_the_named_variants_and_degraded_test_sets_are_scored(tmp_path, capsys):
    spec_path = _tiny_spec(tmp_path, test_sets=["Set5", "Set5 jpeg40"], variants=[
        {"name": "plain", "opt": {"network.block": "plain", "data.train.degradation": {}}},
        {"name": "nobn", "opt": {"network.block": "repsr_nobn"}}])
    out = tmp_path / "ablation"
    assert main(["ablate", str(spec_path), "--out", str(out), "--only", "nobn"]) == 0
    assert not run_dir(out, "plain", 0).exists() and (run_dir(out, "nobn", 0) / "run.json").is_file()
    assert main(["ablate", str(spec_path), "--out", str(out), "--only", "plain"]) == 0
    report = json.loads((out / "ablation.json").read_text())
    assert [r["name"] for r in report["summary"]] == ["plain", "nobn"]  # the other process's run counts
    for r in report["summary"]:
        assert r["test"]["Set5 jpeg40"]["psnr"] < r["test"]["Set5"]["psnr"]
    assert "Set5 jpeg40 PSNR" in (out / "ablation.md").read_text()
    capsys.readouterr()
    assert main(["ablate", str(spec_path), "--out", str(out), "--only", "nbn"]) == 1
    assert "did you mean nobn" in capsys.readouterr().err
    bad = _tiny_spec(tmp_path, test_sets=["Set5 jpg40"], variants=[{"name": "plain"}])
    with pytest.raises(RepsrError, match="test set 'Set5 jpg40'"):
        read_spec(bad)


def test_a_run_stopped_before_its_end_is_not_recorded_as_finished(tmp_path, capsys):
    spec_path = _tiny_spec(tmp_path, opt={"train.total_iter": 100000, "train.max_seconds": 0.5,
                                          "checkpoint.every": 100000}, variants=[{"name": "plain"}])
    out = tmp_path / "study"
    assert main(["ablate", str(spec_path), "--out", str(out)]) == 1
    assert "the same command resumes it" in capsys.readouterr().err
    run = run_dir(out, "plain", 0)
    assert not (run / "run.json").exists() and list((run / "checkpoints").glob("iter_*.pth"))


def test_only_reports_the_other_variants_runs_that_finish_while_it_trains(tmp_path, monkeypatch):
    """Two processes share a study: runs the other finishes during ours (or at later seeds) are in our report."""
    import repsr.ablation.running as running

    spec_path = _tiny_spec(tmp_path, seeds=[0, 1], variants=[{"name": "plain", "opt": {"network.block": "plain"}},
                                                             {"name": "nobn", "opt": {"network.block": "repsr_nobn"}}])
    out = tmp_path / "study"

    def record(name: str, seed: int) -> RunRecord:
        return RunRecord(name=name, label=name, seed=seed, block=name, bn_switch=None, iterations=8, train_params=1,
                         train_flops_per_px=1.0, deploy_params=1, deploy_flops_per_px=1.0, train_it_per_s=1.0,
                         test={"Set5": {"psnr": 30.0 + seed, "ssim": 0.8}}, has_bn=False)

    def fake_run(spec, variant, seed, folder, base_dir):
        if seed:  # while we train seed 1, the other process finishes its seed 0 (its slot in our loop has passed)
            other = run_dir(out, "nobn", seed - 1)
            other.mkdir(parents=True, exist_ok=True)
            record("nobn", seed - 1).write(other / "run.json")
        folder.mkdir(parents=True, exist_ok=True)
        record(variant.name, seed).write(folder / "run.json")
        return record(variant.name, seed)

    monkeypatch.setattr(running, "run_variant", fake_run)
    runs = running.run_ablation(spec_path, out, only=["plain"])
    assert sorted((r.name, r.seed) for r in runs) == [("nobn", 0), ("plain", 0), ("plain", 1)]
    summary = {r["name"]: r for r in json.loads((out / "ablation.json").read_text())["summary"]}
    assert summary["nobn"]["seeds"] == [0] and summary["nobn"]["test"]["Set5"]["delta"]["mean"] == 0.0
    # one seed per process: seed 1 of both variants here, the finished seed-0 runs counted
    runs = running.run_ablation(spec_path, out, only_seeds=[1])
    assert sorted((r.name, r.seed) for r in runs) == [("nobn", 0), ("nobn", 1), ("plain", 0), ("plain", 1)]
    with pytest.raises(RepsrError, match="the spec's seeds are 0, 1"):
        running.run_ablation(spec_path, out, only_seeds=[2])
