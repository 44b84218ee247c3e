"""Bundled models: deploy files shipped in ``repsr/models``, described by their own metadata.

Each ``repsr/models/NAME.safetensors`` is an ordinary deploy file whose safetensors metadata also
holds how it was made (preset, iterations, training data) and its validation results, all written
by ``scripts/model_zoo.py``; ``MODEL_ZOO.md`` is generated from the same run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from safetensors import safe_open

DEFAULT_MODEL = "repsr-x4-m4c16"


@dataclass
class BundledModel:
    name: str
    path: Path
    scale: int
    size: str
    results: dict  # dataset -> {"psnr", "ssim", ...}
    metadata: dict


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


def sample_image() -> Path:
    """The bundled sample: Set5 'butterfly', MATLAB-bicubic downscaled x4 to 64x64."""
    return Path(str(resources.files("repsr").joinpath("samples", "butterfly_lr_x4.png")))


def bundled_model_path(name: str) -> Path | None:
    path = models_dir() / f"{name}.safetensors"
    return path if path.is_file() else None
