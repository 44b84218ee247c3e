"""The RepSR paper's claim 3, size by size: RepSR against plain training and against ECB at M4C8, M4C16, M10C32.

    python scripts/size_claim.py      # reads the committed studies' run.json files -> results/studies/sizes.md

No training: it reads every finished run of the three x4 studies (the same recipe per size: LR patch 32, batch 16,
cosine, EMA; CPU budgets), pairs the variants by seed and calls each difference with the studies' own rule
(repsr.ablation.statistics.verdict). A study still running is read as far as it has got; the table says how many
seeds each comparison rests on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repsr.ablation.record import RunRecord
from repsr.ablation.report import delta_cell, paired_deltas
from repsr.ablation.statistics import summarize
from repsr.fileio import atomic_write

ROOT = Path(__file__).resolve().parent.parent
STUDIES = ROOT / "results" / "studies"
SIZES = [("M4C8", "x4_m4c8"), ("M4C16", "x4_m4c16_lr4e-3"), ("M10C32", "x4_m10c32")]
COMPARISONS = [("repsr", "plain"), ("ecb", "plain"), ("repsr_nobn", "plain"), ("repsr", "ecb"),
               ("repsr", "repsr_nobn")]
LABELS = {"plain": "plain", "repsr": "RepSR (BN, switched)", "ecb": "ECB", "repsr_nobn": "RepSR without BN"}
TEST_SETS = ["Set5", "Set14", "B100"]


def study_runs(folder: Path) -> list[RunRecord]:
    return [RunRecord.read(p) for p in sorted(folder.glob("variants/*/seed_*/run.json"))]


def size_table() -> str:
    lines = ["| size | study | comparison | seeds | " + " | ".join(TEST_SETS) + " |",
             "|---|---|---|---|" + "---|" * len(TEST_SETS)]
    for size, name in SIZES:
        runs = study_runs(STUDIES / name)
        if not runs:
            lines.append(f"| {size} | {name} | no finished runs yet | | " + " | " * (len(TEST_SETS) - 1) + " |")
            continue
        plain = summarize(runs, ["plain"], "plain", TEST_SETS)
        if plain:
            cells = [f"{plain[0]['test'][s]['psnr']:.2f}" for s in TEST_SETS]
            lines.append(f"| {size} | [{name}]({name}/ablation.md), {plain[0]['iterations']} it | plain PSNR (dB) | "
                         f"{len(plain[0]['seeds'])} | " + " | ".join(cells) + " |")
        for variant, against in COMPARISONS:
            deltas = paired_deltas(runs, variant, against, TEST_SETS)
            if deltas is not None:
                lines.append(f"| {size} | | {LABELS[variant]} - {LABELS[against]} | {len(deltas[0]['seeds'])} | "
                             + " | ".join(delta_cell(d) for d in deltas) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(STUDIES / "sizes.md"))
    out = Path(parser.parse_args(argv).out)
    text = "\n".join([
        "# Claim 3 size by size: RepSR against plain and ECB (x4, CPU budgets)", "",
        "Written by `python scripts/size_claim.py` from the committed studies' finished runs. PSNR differences "
        "(dB, Y channel, crop = scale) of the merged deploy models, paired by seed: mean ± std (per seed); "
        "**better**/**worse** only when every seed agrees in sign and the mean exceeds the larger seed spread, "
        "else **tie** (one seed: **one seed**). Each study's page gives its recipe, costs and curves; "
        "[docs/studies.md](../../docs/studies.md#claim-3-size-by-size) reads the table.", "",
        size_table(), ""])
    with atomic_write(out) as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
