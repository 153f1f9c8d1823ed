"""ivnext_world: video world models for embodied AI, built on InternVideo-Next pretraining.

The public API, one screen (names load on first use, so ``import ivnext_world`` stays cheap)::

    from ivnext_world import WorldModel, collect, run_pretrain, load_epd, state_probe
    wm = WorldModel.load("runs/world_model")           # a world-model run folder
    z = wm.encode(frames)                               # (B, T, 3, H, W) -> (B, T, n, D)
    future = wm.rollout(z[:, :1], actions)              # (B, H, A) candidates -> (B, H, n, D)
    pixels = wm.decode(future)                          # (B, H, 3, S, S) in [0, 1]

    from ivnext_world import CEM, MPC, train_depth_probe  # planners; depth / 3D probes
    bb = load_backbone("vjepa2:/w/vjepa2-vitl")          # any frozen backbone: ours, official:, vjepa2:, timm:, hf:

The encoder presets (``ivnext_vit_*``) are registered with timm as soon as timm is imported, so
``import ivnext_world`` is enough for ``timm.create_model("ivnext_vit_base_patch14_224.official_s2")``.
"""
import importlib.abc
import importlib.util
import sys
from importlib import import_module

__version__ = "0.1.0"

_API = {
    "WorldModel": "ivnext_world.world_model",
    "train_world_model": "ivnext_world.world_model",
    "collect": "ivnext_world.sim",
    "run_pretrain": "ivnext_world.pretrain.run",
    "load_epd": "ivnext_world.pretrain.run",
    "load_backbone": "ivnext_world.backbones",
    "state_probe": "ivnext_world.probes",
    "VideoClipDataset": "ivnext_world.data",
    "TrajectoryDataset": "ivnext_world.data",
    "LeRobotDataset": "ivnext_world.data",
    "load_config": "ivnext_world.config",
    "CEM": "ivnext_world.planning",
    "MPPI": "ivnext_world.planning",
    "GradientPlanner": "ivnext_world.planning",
    "MPC": "ivnext_world.planning",
    "LatentGoalCost": "ivnext_world.planning",
    "run_plan_eval": "ivnext_world.planning.evaluate",
    "train_depth_probe": "ivnext_world.probes.depth",
    "load_depth_probe": "ivnext_world.probes.depth",
    "predict_video": "ivnext_world.probes.depth",
}


class _RegisterPresetsWithTimm(importlib.abc.MetaPathFinder):
    """Register the encoder presets right after ``timm`` is imported.

    Importing them eagerly would cost every ``import ivnext_world`` the ~2-4 s import of torch, timm
    and diffusers (the launcher and config tools never need them); waiting for timm keeps the
    package import cheap while ``import ivnext_world; timm.create_model("ivnext_vit_...")`` works.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "timm":
            return None
        sys.meta_path.remove(self)  # one shot; also lets the real finder resolve timm below
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        exec_timm = spec.loader.exec_module

        def exec_module(module):
            exec_timm(module)
            # If ivnext_world.models itself triggered this import, its __init__ is still running
            # and will import .vit (registering the presets) once timm is ready.
            if "ivnext_world.models" not in sys.modules:
                import_module("ivnext_world.models.vit")

        spec.loader.exec_module = exec_module
        return spec


if "timm" in sys.modules:
    import_module("ivnext_world.models.vit")
elif not any(isinstance(f, _RegisterPresetsWithTimm) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterPresetsWithTimm())


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'ivnext_world' has no attribute {name!r}")


__all__ = sorted(_API)
