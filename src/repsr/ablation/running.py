"""Running a study: one trainer run per (variant, seed), merged and tested; finished runs are never redone."""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from ..archs.protocol import branch_forward
from ..bn import has_batchnorm
from ..config import Config
from ..data import default_cache_dir, open_dataset
from ..errors import RepsrError
from ..evaluate import evaluate_dataset
from ..inference import Upscaler
from ..loading import load_deploy
from ..speed import conv_flops
from ..training import Trainer
from .bn_study import bn_study
from .record import RunRecord
from .report import write_report
from .spec import AblationSpec, Variant, open_test_set, read_spec, spec_seeds, variant_config


def _per_pixel_flops(model: nn.Module, channels: int) -> float:
    """Conv FLOPs per LR pixel of the network as trained (every branch, not the online-merged conv)."""
    x = torch.rand(1, channels, 32, 32, device=next(model.parameters()).device)
    with branch_forward(model):
        return conv_flops(model, x) / (32 * 32)


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / "variants" / variant / f"seed_{seed}"


def run_variant(spec: AblationSpec, variant: Variant, seed: int, out: Path, base_dir: Path) -> RunRecord:
    """Train, merge and test one (variant, seed) run; its ``run.json`` marks it finished."""
    results_path = out / "run.json"
    if results_path.is_file():
        return RunRecord.read(results_path)
    config = variant_config(spec, variant, base_dir, seed)
    trainer = Trainer(config, out, resume=(out / "checkpoints").is_dir())
    trainer.run()
    if trainer.stopped_early:  # SIGTERM or train.max_seconds: resumable, not finished
        raise RepsrError(f"{out}: stopped at iteration {trainer.iteration} of {config.train.total_iter}; the same "
                         "command resumes it")
    model = trainer.model  # the raw training network as its last checkpoint holds it
    deploy, _ = load_deploy(out / "model_deploy.safetensors")
    channels = model.config["num_in_ch"]
    sets = {}
    upscaler = Upscaler(deploy, trainer.device)
    for name in spec.test_sets:
        ds = open_test_set(config, name)
        r = evaluate_dataset(upscaler, ds, progress=False)
        sets[name] = {"psnr": r["psnr"], "ssim": r["ssim"]}
    record = RunRecord(
        name=variant.name, label=variant.label or variant.name, seed=seed, block=config.network.block,
        bn_switch=config.switch_iteration(), iterations=config.train.total_iter, has_bn=has_batchnorm(model),
        train_params=sum(p.numel() for p in model.parameters()),
        train_flops_per_px=_per_pixel_flops(model, channels),
        deploy_params=sum(p.numel() for p in deploy.parameters()),
        deploy_flops_per_px=_per_pixel_flops(deploy, channels),
        train_it_per_s=trainer.train_iterations / max(trainer.train_seconds, 1e-9), test=sets,
        # the trainer's history, final validation included (the last checkpoint predates it)
        history=[{"iteration": h["iteration"], **{k: v["psnr"] for k, v in h.items() if isinstance(v, dict)}}
                 for h in trainer.history])
    record.write(results_path)
    return record


def run_ablation(spec_path: str | Path, out: str | Path, only: list[str] | None = None,
                 only_seeds: list[int] | None = None) -> list[RunRecord]:
    """Every (variant, seed) run, seed by seed so that partial studies compare all variants; the report is
    rewritten after each run. ``only`` / ``only_seeds``: train just these variants / seeds (the other runs
    finished by then still count), so that processes can share a study, one variant or seed each."""
    spec_path, out = Path(spec_path), Path(out)
    spec = read_spec(spec_path)
    names = [v.name for v in spec.variants]
    for name in only or []:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            raise RepsrError(f"--only {name}: no such variant{'; did you mean ' + close[0] + '?' if close else ''}")
    seeds = spec_seeds(spec, spec_path.parent)
    for seed in only_seeds or []:
        if seed not in seeds:
            raise RepsrError(f"--seeds {seed}: the spec's seeds are {', '.join(map(str, seeds))}")
    configs = [variant_config(spec, v, spec_path.parent, seeds[0]) for v in spec.variants]  # mistakes before work

    def ours(name: str, seed: int) -> bool:
        return (not only or name in only) and (not only_seeds or seed in only_seeds)

    def with_others(own: list[RunRecord]) -> list[RunRecord]:
        """Our runs plus the other runs finished by now (another process may be training them)."""
        done = [run_dir(out, v.name, seed) / "run.json" for seed in seeds for v in spec.variants
                if not ours(v.name, seed)]
        return own + [RunRecord.read(path) for path in done if path.is_file()]

    runs: list[RunRecord] = []
    for seed in seeds:
        for variant, config in zip(spec.variants, configs, strict=True):
            if not ours(variant.name, seed):
                continue
            print(f"== variant {variant.name}, seed {seed}: block {config.network.block}, "
                  f"switch {config.switch_iteration()}", flush=True)
            runs.append(run_variant(spec, variant, seed, run_dir(out, variant.name, seed), spec_path.parent))
            write_report(spec, spec_path, out, with_others(runs), configs[0], seeds)
    runs = with_others(runs)
    print(write_report(spec, spec_path, out, runs, configs[0], seeds, _bn_study_section(spec, out, configs[0], seeds)))
    return runs


def _bn_study_section(spec: AblationSpec, out: Path, config: Config, seeds: list[int]) -> list[str]:
    """The report's BN-artifact study: made from the two runs' checkpoints, or, where they are not here (they stay
    out of git: a fresh clone of a finished study), the section the report had."""
    if not (spec.bn_study and spec.bn_study.noswitch and spec.bn_study.switched):
        return []
    runs = [run_dir(out, name, seeds[0]) for name in (spec.bn_study.noswitch, spec.bn_study.switched)]
    if not all(list((run / "checkpoints").glob("iter_*.pth")) for run in runs):
        old = (out / "ablation.md").read_text() if (out / "ablation.md").is_file() else ""
        at = old.find("## BN-artifact study")
        return [old[at:].rstrip(), ""] if at >= 0 else []
    sets = [open_dataset(config.data_path(s), config.scale, default_cache_dir()) for s in spec.bn_study.images]
    return ["## BN-artifact study", "", f"Seed {seeds[0]}. " + bn_study(*runs, sets, out / "bn_study"), ""]
