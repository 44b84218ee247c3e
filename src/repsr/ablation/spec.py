"""Ablation specs: a base config, overrides, the variants, the seeds, the test sets and the comparisons."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, from_dict, load_config, read_config_dict, set_dotted
from ..data import SRDataset, default_cache_dir, open_dataset
from ..degradation import EvalDegradation
from ..errors import RepsrError


@dataclass
class Variant:
    name: str
    opt: dict[str, Any] = field(default_factory=dict)
    label: str = ""


@dataclass
class BNStudySpec:
    noswitch: str = ""  # variant trained with BN but never switched
    switched: str = ""  # the same with the switch (the method)
    images: list[str] = field(default_factory=lambda: ["Set14"])  # test sets for figures


@dataclass
class AblationSpec:
    base: str = "demo"  # preset or config file every variant starts from
    opt: dict[str, Any] = field(default_factory=dict)  # overrides for all variants
    variants: list[Variant] = field(default_factory=list)
    # test sets by name; "SET DEGRADATION" (e.g. "B100 jpeg40") scores a named degradation of its LR
    test_sets: list[str] = field(default_factory=lambda: ["Set5", "Set14", "B100"])
    seeds: list[int] = field(default_factory=list)  # every variant trains once per seed; empty: the config's seed
    reference: str = ""  # the variant the others are compared with (default: the first)
    pairs: list[list[str]] = field(default_factory=list)  # further paired comparisons: [[variant, against], ...]
    bn_study: BNStudySpec | None = None


def read_spec(path: str | Path) -> AblationSpec:
    path = Path(path)
    if not path.is_file():
        raise RepsrError(f"{path}: no such ablation spec")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RepsrError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    spec = from_dict(AblationSpec, data)
    if not spec.variants:
        raise RepsrError(f"{path}: no variants")
    names = [v.name for v in spec.variants]
    if len(set(names)) != len(names):
        raise RepsrError(f"{path}: variant names repeat")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise RepsrError(f"{path}: seeds repeat")
    for name in [spec.reference] * bool(spec.reference) + [n for pair in spec.pairs for n in pair]:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise RepsrError(f"{path}: {name!r} (reference or pairs) is not a variant{hint}")
    if any(len(pair) != 2 for pair in spec.pairs):
        raise RepsrError(f"{path}: pairs must be [variant, against] lists of two names")
    for entry in spec.test_sets:
        if degradation := entry.partition(" ")[2].strip():
            try:
                EvalDegradation(degradation)
            except RepsrError as e:
                raise RepsrError(f"{path}: test set {entry!r}: {e}") from None
    return spec


def variant_config(spec: AblationSpec, variant: Variant, base_dir: Path, seed: int | None = None,
                   check_paths: bool = True) -> Config:
    base = str(base_dir / spec.base) if (base_dir / spec.base).is_file() else spec.base
    data = read_config_dict(base)
    for key, value in {**spec.opt, **variant.opt, "name": variant.name}.items():
        set_dotted(data, key, value)
    if seed is not None:
        data["seed"] = seed
    return load_config(data, check_paths=check_paths)


def open_test_set(config: Config, entry: str) -> SRDataset:
    """A spec's test set: ``SET`` (bicubic LR) or ``SET DEGRADATION`` (a named degradation of it)."""
    name, _, degradation = entry.partition(" ")
    return open_dataset(config.data_path(name), config.scale, default_cache_dir(),
                        EvalDegradation(degradation.strip()) if degradation.strip() else None)


def spec_seeds(spec: AblationSpec, base_dir: Path) -> list[int]:
    """The seeds every variant trains with: the spec's list, else the base config's one seed."""
    return list(spec.seeds) or [variant_config(spec, spec.variants[0], base_dir).seed]
