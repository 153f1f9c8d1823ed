"""The latent world model (SPEC section 3): action-conditioned predictor, cached rollouts, decoding.

- :mod:`.latents`: per-frame latents from the frozen encoder, action/proprio normalisation statistics
- :mod:`.predictor`: the block-causal action-conditioned predictor and its KV-cached rollout
- :mod:`.model`: :class:`WorldModel`, the public API (``load``, ``encode``, ``predict``, ``rollout``, ``decode``)
- :mod:`.train`: V-JEPA 2-AC fine-tuning (teacher-forced + rollout loss) with the shared training loop
"""
from .latents import NormStats, encode_video, tokens_per_frame
from .model import WorldModel
from .predictor import ACPredictorConfig, ActionConditionedPredictor, block_causal_mask
from .train import WorldModelObjective, WorldModelTrainConfig, train_world_model

__all__ = [
    "ACPredictorConfig", "ActionConditionedPredictor", "NormStats", "WorldModel", "WorldModelObjective",
    "WorldModelTrainConfig", "block_causal_mask", "encode_video", "tokens_per_frame", "train_world_model",
]
