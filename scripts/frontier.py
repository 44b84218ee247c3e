"""The speed/quality frontier: repsr's plain VGG-style nets against the efficient SR networks people pick instead.

    python scripts/frontier.py                  # this machine's CPU: 2 threads, fp32 -> results/frontier/
    python scripts/frontier.py --device cuda --out DIR [--precision fp16]   # a GPU (scripts/gpu_run.py runs it)

Every network is timed here with `repsr bench` (random weights, x4, 180x320 LR -> 1280x720, candidates in turns);
its quality is the published x4 PSNR (Y channel, DIV2K-trained, each number cited in repsr.peers), and our own
trained plain nets (the 291-image set, CPU budgets) are added from the studies and the model zoo, marked as ours.
Writes frontier.json, frontier.md and one figure per test set (Set5, B100): PSNR against images/s, as the RepSR
paper's Figure 1 plots Urban100 against throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from repsr.bench import BenchOptions, machine_facts, run_bench, series_label
from repsr.fileio import atomic_write
from repsr.peers import PEERS
from repsr.plots import scatter_svg

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "frontier"
NETWORKS = ["m4c8", "m4c16", "m4c32", "m6c40", "m10c32", "m16c64", "fsrcnn", "carn_m", "imdn", "rfdn", "rlfn",
            "span", "span28", "safmn", "edsr_baseline", "swinir_light"]
PLAIN = {"m4c8", "m4c16", "m4c32", "m6c40", "m10c32", "m16c64"}
FIGURE_SETS = ("Set5", "B100")
# our own trained nets (x4, the 291-image set, CPU budgets): (size, who, where the numbers are, variant or None).
# The studies' plain and RepSR (BN, switched) runs share one recipe per size; their deploy nets are the same plain
# net, so they share its speed.
STUDIES = ROOT / "results" / "studies"
OURS = [("m4c8", "plain", STUDIES / "x4_m4c8" / "ablation.json", "plain"),
        ("m4c8", "RepSR", STUDIES / "x4_m4c8" / "ablation.json", "repsr"),
        ("m4c16", "plain", STUDIES / "x4_m4c16_lr4e-3" / "ablation.json", "plain"),
        ("m4c16", "RepSR", STUDIES / "x4_m4c16_lr4e-3" / "ablation.json", "repsr"),
        ("m4c16", "bundled", ROOT / "src" / "repsr" / "models" / "repsr-x4-m4c16.safetensors", None),
        ("m10c32", "plain", STUDIES / "x4_m10c32" / "ablation.json", "plain"),
        ("m10c32", "RepSR", STUDIES / "x4_m10c32" / "ablation.json", "repsr")]


def our_points() -> list[dict]:
    """PSNR of our trained nets per size: a study's variant (mean over seeds) or the bundled model."""
    points = []
    for size, who, path, variant in OURS:
        if not path.is_file():
            continue
        if variant is None:
            from repsr.loading import load_deploy

            meta = load_deploy(path)[1]
            psnr = {k: v["psnr"] for k, v in json.loads(meta["results"]).items() if " " not in k}
            points.append({"size": size, "who": who, "psnr": psnr,
                           "source": f"{meta['name']} (bundled, {meta['iterations']} iterations)"})
            continue
        row = next((r for r in json.loads(path.read_text())["summary"] if r["name"] == variant), None)
        if row:
            psnr = {k: v["psnr"] for k, v in row["test"].items() if " " not in k}
            points.append({"size": size, "who": who, "psnr": psnr,
                           "source": f"{path.parent.relative_to(ROOT)} ({variant}, {row['iterations']} iterations, "
                                     f"mean over {len(row['seeds'])} seeds)"})
    return points


def available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The networks that can be built here, and why the others cannot (SPAN, SAFMN, SwinIR need spandrel)."""
    from repsr.errors import RepsrError
    from repsr.peers import build_peer

    ok, skipped = [], {}
    for name in names:
        try:
            build_peer(name, 4)
            ok.append(name)
        except RepsrError as e:
            skipped[name] = str(e)
    return ok, skipped


def measure(names: list[str], device: str, threads: int, precision: str, rounds: int, smoke: bool) -> list[dict]:
    options = BenchOptions(device=device, threads=threads if device == "cpu" else None, precision=precision,
                           rounds=rounds, protocol="ntire" if device.startswith("cuda") and precision == "fp32"
                           else "default", input=(16, 24) if smoke else None)
    rows = [r.__dict__ for r in run_bench(names, options)]
    if device == "cpu":  # the second series: repsr's best runtime for its own (plain) nets, uint8 images end to end
        options.series = ("repsr",)
        rows += [r.__dict__ for r in run_bench([n for n in names if n in PLAIN], options)]
    return rows


def frontier_lines(rows: list[dict], test_set: str) -> list[str]:
    """Which networks no other beats at once in speed and published PSNR (torch series)."""
    pts = [(r["images_per_s"], PEERS[r["name"]].psnr[test_set], PEERS[r["name"]].title) for r in rows
           if r["series"] == "torch" and test_set in PEERS[r["name"]].psnr]
    best = [p for p in pts if not any(q[0] >= p[0] and q[1] > p[1] or q[0] > p[0] and q[1] >= p[1] for q in pts)]
    return [f"- {test_set}: " + ", ".join(f"{t} ({s:.1f} img/s, {q:.2f} dB)" for s, q, t in sorted(best))]


def write(rows: list[dict], facts: dict, out: Path, precision: str, skipped: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ours = our_points()
    with atomic_write(out / "frontier.json") as tmp:
        tmp.write_text(json.dumps({"machine": facts, "precision": precision, "results": rows, "ours": ours,
                                   "skipped": skipped}, indent=1) + "\n")
    r0 = rows[0]
    lines = [f"# Speed and quality of efficient SR networks ({facts.get('gpu') or facts['cpu']})", "",
             f"Written by `python scripts/frontier.py` on {facts['date']}: {facts.get('gpu') or facts['cpu']}, "
             f"{facts['torch_threads']} threads, torch {facts['torch']}. x{r0['scale']}, LR {r0['input'][0]}x"
             f"{r0['input'][1]} -> {r0['input'][0] * r0['scale']}x{r0['input'][1] * r0['scale']}, batch 1, "
             f"{precision}, random weights, every network timed in turns with the others (`repsr bench`). "
             "PSNR: published x4 numbers (Y channel, DIV2K-trained; sources below), and ours (the 291-image set, "
             "CPU budgets) marked as such. GMAC/s: multiply-adds per second achieved (how well a network's operations "
             "use the machine).", "",
             "| network | series | params | GMACs | ms/image | img/s | GMAC/s | peak tensor MB | Set5 | B100 "
             "| Urban100 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peer = PEERS[r["name"]]
        psnr = [f"{peer.psnr[s]:.2f}" if s in peer.psnr else "-" for s in ("Set5", "B100", "Urban100")]
        memory = f"{r['peak_memory_mb']:.0f}" if r["peak_memory_mb"] is not None else "-"
        series = series_label(r["series"], r.get("runtime", "PyTorch"))
        lines.append(f"| {peer.title} | {series} | {r['params']:,} | {r['macs'] / 1e9:.2f} | "
                     f"{r['ms_per_image']:.1f} | {r['images_per_s']:.2f} | {r['macs'] / r['ms_per_image'] / 1e6:.0f} | "
                     f"{memory} | " + " | ".join(psnr) + " |")
    lines += [f"- not timed here: {name} ({why})" for name, why in skipped.items()]
    lines += ["", "Not dominated (no other network is both faster and better), published PSNR, torch series:", ""]
    for test_set in FIGURE_SETS:
        lines += frontier_lines(rows, test_set)
    for test_set in FIGURE_SETS:
        points = []
        for r in rows:
            peer = PEERS[r["name"]]
            plain = r["name"] in PLAIN
            if test_set in peer.psnr and r["series"] == "torch":
                points.append({"x": r["images_per_s"], "y": peer.psnr[test_set], "label": peer.title,
                               "group": "plain VGG (published)" if plain else "peers (published)"})
            elif test_set in peer.psnr:  # the same plain net in repsr's own runtime: how far it moves right
                points.append({"x": r["images_per_s"], "y": peer.psnr[test_set], "label": "",
                               "group": "plain VGG in repsr's runtime (published)"})
            for o in ours if plain and r["series"] == "torch" else []:
                if o["size"] == r["name"] and test_set in o["psnr"]:
                    points.append({"x": r["images_per_s"], "y": o["psnr"][test_set], "hollow": True,
                                   "label": f"{peer.title} {o['who']}", "group": f"{o['who']}, ours (291 images)"})
        svg = scatter_svg(points, f"images/s ({r0['input'][0]}x{r0['input'][1]} -> x{r0['scale']}, log scale)",
                          f"{test_set} x4 PSNR (dB)")
        with atomic_write(out / f"frontier_{test_set}.svg") as tmp:
            tmp.write_text(svg)
        lines += ["", f"![{test_set}](frontier_{test_set}.svg)"]
    lines += ["", "Sources of the published numbers:", ""]
    for name in (r["name"] for r in rows if r["series"] == "torch"):
        p = PEERS[name]
        said = [f"{what} {src}" for what, src in (("PSNR", p.psnr_source), ("params", p.params and p.params.source),
                                                  ("MACs", p.macs and p.macs.source)) if src]
        lines.append(f"- {p.title}: " + ("; ".join(said) if said else "nothing published at this size (RGB)"))
    lines += [f"- ours, {PEERS[o['size']].title} {o['who']}: {o['source']}" for o in ours]
    with atomic_write(out / "frontier.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--networks", help=f"comma-separated subset (default: {','.join(NETWORKS)})")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one round: a check of the script")
    parser.add_argument("--replot", action="store_true",
                        help="no timing: rewrite the page and figures from OUT/frontier.json with today's points")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads((Path(args.out) / "frontier.json").read_text())
        write(saved["results"], saved["machine"], Path(args.out), saved["precision"], saved["skipped"])
        print((Path(args.out) / "frontier.md").read_text())
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("frontier: no CUDA device")
    names, skipped = available(args.networks.split(",") if args.networks else NETWORKS)
    rows = measure(names, args.device, args.threads, args.precision, 1 if args.smoke else args.rounds, args.smoke)
    write(rows, machine_facts(args.device), Path(args.out), args.precision, skipped)
    print((Path(args.out) / "frontier.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
