"""Recording benchmark results: machine facts, a JSON file, and a section of RESULTS.md."""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from repsr.bench import machine_facts

HERE = Path(__file__).parent


def machine() -> dict:
    return machine_facts()


def seconds_in_turns(runs: dict[str, Callable[[], object]], rounds: int, per_turn: int = 2,
                     warmup_rounds: int = 0, cuda: bool = False, gap: float = 0.0,
                     samples: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Median seconds of each of ``runs``. They take turns, ``per_turn`` runs each (with more than one,
    the first is untimed: it re-warms caches and the allocator after the others), so that all see
    the same machine state: this CPU's speed drifts by tens of percent within minutes. ``gap``: idle
    seconds before each turn (runtimes whose worker threads spin after a run slow the next one down).
    ``samples``, if given, receives every timed run (for per-round ratios and their ranges)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(warmup_rounds + rounds):
        for name, run in runs.items():
            if gap:
                time.sleep(gap)
            for i in range(per_turn):
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                run()
                if cuda:
                    torch.cuda.synchronize()
                if r >= warmup_rounds and (per_turn == 1 or i > 0):
                    times[name].append(time.perf_counter() - start)
    if samples is not None:
        samples.update(times)
    return {name: statistics.median(t) for name, t in times.items()}


def record(name: str, markdown: str, data: dict, smoke: bool = False) -> None:
    """Write results/NAME.json and replace the NAME section of RESULTS.md (added if missing). A smoke run
    (a check of the script, not a result) only prints the table."""
    if smoke:
        print(markdown)
        return
    info = machine()
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}.json").write_text(json.dumps({"machine": info, **data}, indent=2) + "\n")
    header = (f"Machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads)"
              f"{', GPU ' + info['gpu'] if info['gpu'] else ''}; torch {info['torch']}, Python {info['python']}; "
              f"{info['date']}. Command: `python benchmarks/{name}.py`.")
    section = f"<!-- {name} -->\n{header}\n\n{markdown.strip()}\n<!-- /{name} -->"
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n\nEach section is written by its script.\n"
    pattern = re.compile(rf"<!-- {name} -->.*?<!-- /{name} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    print(section)
