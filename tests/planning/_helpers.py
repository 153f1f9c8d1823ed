"""Analytic planning problems with known optima, and a tiny untrained world model (CPU, seconds)."""
from dataclasses import asdict

import torch

from ivnext_world.pretrain import EPDConfig, build_epd
from ivnext_world.train.checkpoint import TrainState, save_checkpoint
from ivnext_world.world_model import ACPredictorConfig, ActionConditionedPredictor, NormStats

# A controllable linear system x_{h+1} = x_h + B a_h (K candidates at once) and its quadratic goal.
B = torch.tensor([[1.0, 0.5], [-0.3, 1.0]])
X0 = torch.tensor([0.3, -0.2])


def linear_rollout(u: torch.Tensor) -> torch.Tensor:
    """Actions ``(K, H, 2)`` -> states ``(K, H, 2)``."""
    return X0 + torch.cumsum(u @ B.T, dim=1)


def quadratic_goal(goal: torch.Tensor, reg: float = 0.0):
    def objective(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return (states[:, -1] - goal).pow(2).sum(-1) + reg * actions.pow(2).sum((1, 2))

    return objective


def optimal_cost(goal: torch.Tensor, horizon: int, reg: float) -> tuple[torch.Tensor, float]:
    """Closed form of min_u |x0 + B sum(u) - g|^2 + reg |u|^2 (unconstrained): the optimum spreads
    s = sum(u) evenly, u_h = s / H, with s = argmin |B s - (g - x0)|^2 + reg/H |s|^2."""
    r = goal - X0
    s = torch.linalg.solve(B.T @ B + (reg / horizon) * torch.eye(2), B.T @ r)
    u = (s / horizon).expand(horizon, -1)
    cost = float((B @ s - r).pow(2).sum() + reg * u.pow(2).sum())
    return u, cost


TINY_EPD = dict(img_size=56, num_frames=4, encoder_kwargs={"embed_dim": 48, "depth": 2, "num_heads": 2, "pool_num_heads": 2},
                predictor_dim=48, predictor_depth=1, predictor_heads=2, decoder_width=32, decoder_depth=1)


def save_tiny_world_model(root, data_source=None, frame_skip=1):
    """A world-model run folder that ``WorldModel.load`` rebuilds: random Stage-1-like encoder with a
    decoder (56 px -> 4 cls + 16 patch tokens of width 48) + a random 1-block predictor acting in
    chunks of ``frame_skip`` 2-d env actions."""
    torch.manual_seed(0)
    epd = build_epd(EPDConfig(**TINY_EPD))
    enc_ckpt = save_checkpoint(root / "epd" / "checkpoints", epd, None,
                               TrainState(step=1, data={}, extra={"model": epd.config_dict(), "stage": 1}))
    pcfg = ACPredictorConfig(enc_dim=48, tokens_per_frame=20, action_dim=2 * frame_skip, proprio_dim=4, embed_dim=32, depth=1,
                             num_heads=2, max_frames=16, predict_proprio=True)
    predictor = ActionConditionedPredictor(pcfg)
    with torch.no_grad():  # the zero-initialised residual heads would make every plan equally good
        torch.nn.init.normal_(predictor.output_proj.weight, std=0.05)
        torch.nn.init.normal_(predictor.proprio_head.weight, std=0.05)
    stats = NormStats([0.0, 0.0], [0.5, 0.5], [0.0] * 4, [0.1] * 4).chunked(frame_skip)
    run = root / "wm"
    extra = {"world_model": {"predictor": asdict(pcfg), "encoder_checkpoint": str(enc_ckpt.resolve()),
                             "norm_stats": asdict(stats), "pool": 1, "frame_skip": frame_skip,
                             "train_config": {"data": {"source": data_source}, "loop": {"batch_size": 2}}}}
    save_checkpoint(run / "checkpoints", predictor, None, TrainState(step=3, data={}, extra=extra))
    return run
