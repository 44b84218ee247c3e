"""scripts/model_zoo.py's bookkeeping: the budget record and the projection to a published number."""

import importlib.util
import math
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("model_zoo", Path(__file__).parents[1] / "scripts" / "model_zoo.py")
model_zoo = importlib.util.module_from_spec(_spec)
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


def test_budget_record_keeps_one_point_per_budget_and_source():
    record = {"name": "m", "budgets": []}
    meta = {"iterations": "8000", "results": '{"Set5": {"psnr": 30.5, "ssim": 0.86}}'}
    model_zoo.add_budget(record, model_zoo.budget_point(meta, "bundled 2026-11-28"))
    model_zoo.add_budget(record, {"iterations": 12000, "psnr": {"Set5": 30.55}, "seeds": 3, "source": "study"})
    model_zoo.add_budget(record, model_zoo.budget_point(meta, "bundled 2026-11-28"))  # the same again
    model_zoo.add_budget(record, model_zoo.budget_point(meta, "bundled 2026-11-30"))  # re-bundled: replaces it
    assert [(p["iterations"], p["psnr"]["Set5"], p["seeds"]) for p in record["budgets"]] == \
        [(8000, 30.5, 1), (12000, 30.55, 3)]
