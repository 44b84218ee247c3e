"""scripts/model_zoo.py's bookkeeping: the budget record and the projection to a published number."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("model_zoo", Path(__file__).parents[1] / "scripts" / "model_zoo.py")
model_zoo = importlib.util.module_from_spec(_spec)
sys.modules["model_zoo"] = model_zoo  # dataclasses look their module up
_spec.loader.exec_module(model_zoo)


def test_projection_inverts_an_exact_log_linear_curve():
    a, b = 29.0, 0.12
    points = [(n, a + b * math.log(n)) for n in (8000, 12000, 40000)]
    fit_a, fit_b, needed = model_zoo.project_budget(points, target=30.87)
    assert (fit_a, fit_b) == (pytest.approx(a), pytest.approx(b))
    assert needed == round(math.exp((30.87 - a) / b))


def test_projection_needs_two_budgets_and_a_gain():
    assert model_zoo.project_budget([(8000, 30.5), (8000, 30.6)], 30.87) is None  # one budget, two seeds
    assert model_zoo.project_budget([(8000, 30.6), (40000, 30.5)], 30.87) is None  # no gain with budget


def test_budget_record_keeps_one_point_per_budget_source_and_recipe():
    record = {"name": "m", "budgets": [], "recipe_key": "new"}
    meta = {"iterations": "8000", "results": '{"Set5": {"psnr": 30.5, "ssim": 0.86}}'}
    model_zoo.add_budget(record, model_zoo.budget_point(meta, "bundled 2026-11-28", "new"))
    model_zoo.add_budget(record, {"iterations": 12000, "psnr": {"Set5": 30.55}, "seeds": 3, "source": "study",
                                  "recipe": "new"})
    model_zoo.add_budget(record, model_zoo.budget_point(meta, "bundled 2026-11-28", "new"))  # the same again
    model_zoo.add_budget(record, model_zoo.budget_point(meta, "bundled 2026-11-30", "new"))  # re-bundled: replaces it
    model_zoo.add_budget(record, model_zoo.budget_point(meta, "bundled 2026-11-27", "old"))  # another recipe: kept
    assert [(p["iterations"], p["psnr"]["Set5"], p["seeds"], p["recipe"]) for p in record["budgets"]] == \
        [(8000, 30.5, 1, "new"), (12000, 30.55, 3, "new"), (8000, 30.5, 1, "old")]  # the current recipe first


def test_projection_uses_only_the_bundled_recipe():
    a, b = 29.0, 0.12
    record = {"name": "m", "recipe_key": "new", "budgets": [
        {"iterations": n, "psnr": {"Set5": a + b * math.log(n)}, "seeds": 1, "source": "s", "recipe": "new"}
        for n in (8000, 40000)] + [
        {"iterations": 100000, "psnr": {"Set5": 40.0}, "seeds": 1, "source": "s", "recipe": "old"}]}
    text = "\n".join(model_zoo.budget_lines("m", 4, record))
    needed = round(math.exp((30.87 - a) / b))
    assert f"about {needed:,} iterations" in text and "| old | 100000 | 40.00 |" in text


def test_recipe_key_and_text_follow_the_block():
    from repsr.config import load_config
    def config(*overrides):  # no datasets needed: only the recipe is read
        return load_config("zoo_x4_m4c16", list(overrides), check_paths=False)

    with_bn = config("network.block=repsr", "train.optimizer.lr=0.004")
    without = config("network.block=repsr_nobn", "train.optimizer.lr=0.004")
    assert model_zoo.recipe_key(with_bn) == "repsr blocks, lr 0.004, LR patch 32, batch 16"
    assert "BN switched" in model_zoo.recipe_text(with_bn) and "BN" not in model_zoo.recipe_text(without)
    assert model_zoo.has_bn(with_bn) and not model_zoo.has_bn(without)
    assert "switched to population statistics at iteration 32000 of 40000" in model_zoo.trained_as(
        config("network.block=repsr", "train.bn.switch=0.8", "train.total_iter=40000"))
    assert "BN" in model_zoo.trained_as(without) and "switched" not in model_zoo.trained_as(without)
