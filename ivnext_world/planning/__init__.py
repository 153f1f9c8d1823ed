"""Planning in latent space: CEM, MPPI and gradient planners behind one interface, MPC, objectives.

    from ivnext_world.planning import CEM, MPC, LatentGoalCost, WorldModelDynamics, make_cost
    dyn = WorldModelDynamics(wm, wm.encode(obs_frames))             # context (1, Tc, n, D)
    cost = make_cost(dyn, LatentGoalCost(wm.encode(goal)[0, -1]), dyn.to_raw)
    plan = CEM().plan(cost, dyn.bounds(low, high))                  # PlanResult, normalised actions
    action = dyn.to_raw(plan.actions[0])                            # raw env units
"""
from .base import Bounds, CostFn, PlanResult, Planner
from .cem import CEM, CEMConfig
from .gradient import GradientConfig, GradientPlanner
from .mpc import MPC
from .mppi import MPPI, MPPIConfig
from .objectives import Imagined, LatentGoalCost, ProprioGoalCost, WeightedSum
from .problem import WorldModelDynamics, make_cost

PLANNERS = {"cem": (CEM, CEMConfig), "mppi": (MPPI, MPPIConfig), "gradient": (GradientPlanner, GradientConfig)}


def build_planner(name: str, **overrides) -> Planner:
    """A planner by name (``cem``, ``mppi``, ``gradient``) with config overrides."""
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; expected one of {sorted(PLANNERS)}")
    cls, cfg = PLANNERS[name]
    return cls(cfg(**overrides))


__all__ = [
    "Bounds", "CEM", "CEMConfig", "CostFn", "GradientConfig", "GradientPlanner", "Imagined", "LatentGoalCost", "MPC",
    "MPPI", "MPPIConfig", "PLANNERS", "PlanResult", "Planner", "ProprioGoalCost", "WeightedSum",
    "WorldModelDynamics", "build_planner", "make_cost",
]
