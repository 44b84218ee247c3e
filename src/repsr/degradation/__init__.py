"""Degradations: the second-order real-world model for training (:mod:`.second_order`), named and seeded
degradations of test sets (:mod:`.named`), their kernels (:mod:`.kernels`) and operations (:mod:`.ops`)."""

from .named import STANDARD, EvalDegradation, parse_degradations
from .second_order import DegradationConfig, FirstDegradation, SecondDegradation, SecondOrderDegradation

__all__ = ["STANDARD", "DegradationConfig", "FirstDegradation", "SecondDegradation", "SecondOrderDegradation",
           "EvalDegradation", "parse_degradations"]
