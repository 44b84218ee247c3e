"""One finished (variant, seed) run of a study, as its ``run.json`` keeps it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fileio import atomic_write


@dataclass
class RunRecord:
    name: str  # the variant
    label: str
    seed: int
    block: str
    bn_switch: int | None  # the iteration BN switched to population statistics (None: never)
    iterations: int
    train_params: int
    train_flops_per_px: float
    deploy_params: int
    deploy_flops_per_px: float
    train_it_per_s: float
    test: dict[str, dict[str, float]]  # test set ("B100", "B100 jpeg40") -> {"psnr", "ssim"} of the deploy model
    history: list[dict[str, float]] = field(default_factory=list)  # validation: {"iteration", "ema/Set5", ...}
    has_bn: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        return cls.from_dict(json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
