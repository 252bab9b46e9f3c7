"""The sequence scheduler: plans sequence runs and launches them (see ``plans.py``, ``launch.py``)."""
from .launch import STRATEGIES, default_launch
from .plans import PlanCache, plan_bidirectional, plan_sequence
from .program import Dispatch, Program, Slot
from .recurrence import packs_lanes, weights_transposed

__all__ = ["STRATEGIES", "default_launch", "PlanCache", "plan_bidirectional", "plan_sequence",
           "Dispatch", "Program", "Slot", "packs_lanes", "weights_transposed"]
