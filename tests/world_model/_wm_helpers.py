"""Tiny models shared by the world-model tests (CPU, seconds)."""
import torch

from ivnext_world.pretrain import EPDConfig, build_epd
from ivnext_world.train.checkpoint import TrainState, save_checkpoint
from ivnext_world.world_model import ACPredictorConfig, ActionConditionedPredictor

# 56 px, patch 14 -> 4x4 patches + 4 cls tokens = 20 latent tokens per frame, width 48.
TINY_EPD = dict(img_size=56, num_frames=4, encoder_kwargs={"embed_dim": 48, "depth": 2, "num_heads": 2, "pool_num_heads": 2},
                predictor_dim=48, predictor_depth=1, predictor_heads=2, decoder_width=32, decoder_depth=1)
N_TOKENS, DIM = 20, 48


def save_tiny_epd(root, **kw):
    """A Stage-1-like checkpoint folder (random weights) that ``load_epd`` rebuilds."""
    torch.manual_seed(0)
    model = build_epd(EPDConfig(**{**TINY_EPD, **kw}))
    return save_checkpoint(root / "checkpoints", model, None,
                           TrainState(step=1, data={}, extra={"model": model.config_dict(), "stage": 1}))


def tiny_predictor(action_dim=2, proprio_dim=3, depth=2, seed=0, predict_proprio=False) -> ActionConditionedPredictor:
    """A predictor whose residual branches and output head are switched fully on (LayerScale 1e-5 and
    the zero-initialised head would make it a near-identity, and the causality/cache tests vacuous)."""
    torch.manual_seed(seed)
    p = ActionConditionedPredictor(ACPredictorConfig(
        enc_dim=DIM, tokens_per_frame=N_TOKENS, action_dim=action_dim, proprio_dim=proprio_dim,
        embed_dim=32, depth=depth, num_heads=2, max_frames=16, predict_proprio=predict_proprio))
    with torch.no_grad():
        for name, param in p.named_parameters():
            if ".ls" in name:
                param.fill_(1.0)
        # The residual head starts at zero (the model = copy-last); give it weights so outputs
        # depend on the inputs.
        torch.nn.init.normal_(p.output_proj.weight, std=0.05)
        if p.proprio_head is not None:
            torch.nn.init.normal_(p.proprio_head.weight, std=0.05)
    return p.eval()
