"""Bundled models: deploy files shipped in ``repsr/models``, described by their own metadata.

Each ``repsr/models/NAME.safetensors`` is an ordinary deploy file whose safetensors metadata also
holds how it was made (preset, iterations, training data) and its validation results, all written
by ``scripts/model_zoo.py``; ``MODEL_ZOO.md`` is generated from the same run.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from safetensors import safe_open

DEFAULT_MODEL = "repsr-x4-m4c16-real"  # real photos and video: what people upscale
# the order in which the field's papers list the standard test sets; others follow by name
SET_ORDER = ("Set5", "Set14", "B100", "BSD100", "Urban100", "Manga109", "DIV2K")
# what each kind of bundled model is trained for (metadata "inputs"), as `repsr models` and the README say it
INPUTS = {"clean": "clean bicubic downscales: benchmarks", "real": "real photos and video: JPEG, noise, blur"}


@dataclass
class BundledModel:
    name: str
    path: Path
    scale: int
    size: str
    results: dict  # test set (or "SET DEGRADATION" label) -> {"psnr", "ssim", "bicubic_psnr", ...}
    metadata: dict

    @property
    def inputs(self) -> str:
        """``clean`` (trained on bicubic downscales) or ``real`` (on the real-world degradation model)."""
        return self.metadata.get("inputs", "clean")

    @property
    def clean_results(self) -> dict:
        return {k: v for k, v in self.results.items() if " " not in k}

    @property
    def degraded_results(self) -> dict:
        return {k: v for k, v in self.results.items() if " " in k}


def models_dir() -> Path:
    return Path(str(resources.files("repsr").joinpath("models")))


def bundled_models() -> list[BundledModel]:
    found = []
    folder = models_dir()
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        found.append(BundledModel(
            name=path.stem, path=path, scale=int(meta.get("scale", 0)),
            size=f"M{meta.get('num_conv', '?')}C{meta.get('num_feat', '?')}",
            results=json.loads(meta.get("results", "{}")), metadata=meta))
    return found


def bundled_names() -> list[str]:
    """The bundled models' names, without reading the files."""
    folder = models_dir()
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def sample_image() -> Path:
    """The bundled sample: Set5 'butterfly', MATLAB-bicubic downscaled x4 to 64x64."""
    return Path(str(resources.files("repsr").joinpath("samples", "butterfly.png")))


def bundled_model_path(name: str) -> Path | None:
    path = models_dir() / f"{name}.safetensors"
    return path if path.is_file() else None


def ordered_sets(names: Iterable[str]) -> list[str]:
    """Test set names in the papers' order (Set5, Set14, B100, Urban100, Manga109), others after by name."""
    rank = {name.lower(): i for i, name in enumerate(SET_ORDER)}
    return sorted(set(names), key=lambda n: (rank.get(n.lower(), len(rank)), n.lower()))


def closest_name(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``name`` was probably meant to be (case, ``_`` for ``-`` and typos forgiven), or None."""
    candidates = list(candidates)

    def key(text: str) -> str:
        return text.lower().replace("_", "-").replace(" ", "-")

    by_key = {key(c): c for c in candidates}
    if key(name) in by_key:
        return by_key[key(name)]
    close = difflib.get_close_matches(key(name), list(by_key), n=1, cutoff=0.6)
    return by_key[close[0]] if close else None


def models_table() -> str:
    """What ``repsr models`` prints: the bundled models with their PSNR/SSIM on the clean test sets and the mean
    over the degraded ones, bicubic's beside, and what inputs each is for."""
    import numpy as np

    models = bundled_models()
    if not models:
        return "no bundled models"
    sets = ordered_sets({name for m in models for name in m.clean_results})
    degraded = any(m.degraded_results for m in models)
    columns = sets + (["degraded (mean)"] if degraded else [])
    width = 26
    lines = [(f"{'':<22} {'':>5} {'':>6} {'':>4}" + "".join(f"  {s:<{width}}" for s in columns)).rstrip(),
             (f"{'model':<22} {'scale':>5} {'size':>6} {'KiB':>4}" + f"  {'PSNR/SSIM':<14}{'bicubic':<12}"
              * len(columns) + "  for").rstrip()]
    for m in models:
        cells = [m.results.get(s) for s in sets]
        if degraded:
            rows = list(m.degraded_results.values())
            cells.append({key: float(np.mean([r[key] for r in rows])) for key in rows[0]} if rows else None)
        text = ""
        for r in cells:
            cell = "-"
            if r:
                cell = f"{r['psnr']:.2f}/{r['ssim']:.4f}"
                if "bicubic_psnr" in r:
                    cell += f"  {r['bicubic_psnr']:.2f}/{r['bicubic_ssim']:.4f}"
            text += f"  {cell:<{width}}"
        default = " (default)" if m.name == DEFAULT_MODEL else ""
        kib = m.path.stat().st_size / 1024
        lines.append(f"{m.name:<22} {'x' + str(m.scale):>5} {m.size:>6} {kib:>4.0f}{text}  {INPUTS[m.inputs]}"
                     f"{default}")
    lines.append("PSNR (dB) / SSIM on the Y channel, border crop = scale (repsr eval); bicubic: MATLAB imresize. "
                 + ("degraded: mean over Set14 and B100 with the LR degraded by JPEG q40, noise 10 + JPEG q60, blur "
                    "1 + JPEG q60 and the real-world pipeline (repsr eval --degradation standard). " if degraded
                    else "") + "Recipes: MODEL_ZOO.md")
    return "\n".join(lines)
