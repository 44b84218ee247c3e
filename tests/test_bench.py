"""repsr bench: every listed network runs on the CPU at a tiny size, the JSON schema, the series and the errors."""

import json

import pytest

from repsr.bench import STANDARD_SIZES, BenchOptions, build_subject, parse_size, run_bench
from repsr.cli import main
from repsr.errors import RepsrError
from repsr.peers import PEERS
from repsr.zoo import bundled_names

RESULT_KEYS = {"name", "title", "series", "scale", "input", "batch", "precision", "device", "params", "macs",
               "ms_per_image", "ms_fastest", "ms_slowest", "images_per_s", "megapixels_per_s", "peak_memory_mb",
               "runtime", "runs"}


def test_every_listed_network_runs_on_the_cpu_at_a_tiny_size(capsys):
    assert main(["bench", "--list"]) == 0
    listing = capsys.readouterr().out
    names = [n for n in [*bundled_names(), *(f"compact:{s}" for s in STANDARD_SIZES), *PEERS] if n in listing]
    assert len(names) == len(bundled_names()) + len(STANDARD_SIZES) + len(PEERS)
    x4 = [n for n in names if "x2" not in n]
    assert main(["bench", *x4, "--input", "16x24", "--rounds", "1", "--threads", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"cpu", "cores", "torch", "torch_threads", "date"} <= set(report["machine"])
    assert report["settings"]["input"] == [16, 24] and report["settings"]["rounds"] == 1
    assert [r["name"] for r in report["results"]] == x4
    for r in report["results"]:
        assert set(r) == RESULT_KEYS and r["series"] == "torch" and r["input"] == [16, 24] and r["scale"] == 4
        assert r["params"] > 0 and r["macs"] > 0 and r["ms_per_image"] > 0 and len(r["runs"]) == 1
        assert r["megapixels_per_s"] == pytest.approx(r["images_per_s"] * 16 * 24 * 16 / 1e6)


def test_series_protocol_and_sizes(capsys):
    results = run_bench(["repsr-x2-m4c16", "imdn"], BenchOptions(input=(12, 20), scale=2, rounds=2,
                                                                  series=("torch", "repsr")))
    assert [(r.name, r.series) for r in results] == [("repsr-x2-m4c16", "torch"), ("repsr-x2-m4c16", "repsr"),
                                                     ("imdn", "torch")]  # the repsr series runs Compact nets only
    default = run_bench(["compact:m2c4"], BenchOptions(rounds=1, memory=False))[0]
    assert default.input == [180, 320] and default.peak_memory_mb is None  # the 1280x720 output
    assert main(["bench", "compact:m4c16", "--protocol", "ntire", "--device", "cpu"]) == 1
    assert "GPU" in capsys.readouterr().err
    assert main(["bench", "repsr-x2-m4c16", "--input", "8x8"]) == 1
    assert "use --scale 2" in capsys.readouterr().err
    with pytest.raises(RepsrError, match="did you mean"):
        build_subject("repsr-x4-m4c61", 4)
    with pytest.raises(RepsrError, match="HxW"):
        parse_size("180 by 320")


def test_frontier_script_smoke_and_replot(tmp_path):
    """scripts/frontier.py at a tiny size: its page, JSON and figures; --replot rewrites them without timing."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "frontier.py"
    cmd = [sys.executable, str(script), "--smoke", "--threads", "1", "--networks", "m4c8,m4c16,fsrcnn",
           "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((tmp_path / "frontier.json").read_text())
    assert {(r["name"], r["series"]) for r in saved["results"]} >= {("m4c16", "torch"), ("m4c16", "repsr"),
                                                                    ("fsrcnn", "torch")}
    assert any(o["size"] == "m4c16" and o["who"] == "bundled" for o in saved["ours"])
    assert "FSRCNN" in (tmp_path / "frontier.md").read_text()
    (tmp_path / "frontier_Set5.svg").unlink()
    done = subprocess.run([sys.executable, str(script), "--replot", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "frontier_Set5.svg").read_text().startswith("<svg")


@pytest.mark.parametrize("script", ["benchmarks/video_speed.py", "benchmarks/degradation_speed.py",
                                    "scripts/size_claim.py"])
def test_scripts_that_write_committed_numbers_run(script, tmp_path):
    """They still run against today's API: benchmarks in their smoke modes (printed, nothing recorded), the
    size-claim table from the committed studies into a temporary file."""
    import subprocess
    import sys
    from pathlib import Path

    if "video" in script:
        pytest.importorskip("av")
    args = ["--out", str(tmp_path / "sizes.md")] if "size_claim" in script else ["--smoke"]
    done = subprocess.run([sys.executable, str(Path(__file__).parents[1] / script), *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    if "size_claim" in script:
        text = (tmp_path / "sizes.md").read_text()
        assert "| M4C8 |" in text and "ECB - plain" in text and "**worse**" in text
