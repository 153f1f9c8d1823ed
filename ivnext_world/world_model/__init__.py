"""The latent world model (SPEC section 3): action-conditioned predictor, cached rollouts, decoding.

- :mod:`.latents`: per-frame latents from the frozen encoder, action/proprio normalisation statistics
- :mod:`.predictor`: the block-causal action-conditioned predictor and its KV-cached rollout
- :mod:`.model`: :class:`WorldModel`, the public API (``load``, ``encode``, ``predict``, ``rollout``, ``decode``)
- :mod:`.train`: V-JEPA 2-AC fine-tuning (teacher-forced + rollout loss) with the shared training loop
- :mod:`.masked_rollout`: the action-free baseline: the pretrained EPD predictor with the future masked
- :mod:`.wrappers`: gymnasium wrappers (latent observations; an imagined env stepped by the world model)
- :mod:`.evaluate`: held-out latent error vs horizon (+ copy-last baseline), plots and rollout videos
"""
from .latents import NormStats, encode_video, tokens_per_frame
from .model import WorldModel
from .predictor import ACPredictorConfig, ActionConditionedPredictor, block_causal_mask
from .evaluate import EvalConfig, evaluate_world_model
from .masked_rollout import masked_future_prediction, normalized_patch_latents
from .train import WorldModelObjective, WorldModelTrainConfig, train_world_model
from .wrappers import ImaginedEnv, LatentObservation

__all__ = [
    "ACPredictorConfig", "ActionConditionedPredictor", "EvalConfig", "ImaginedEnv", "LatentObservation", "NormStats",
    "WorldModel", "WorldModelObjective", "WorldModelTrainConfig", "block_causal_mask", "encode_video",
    "evaluate_world_model", "masked_future_prediction", "normalized_patch_latents", "tokens_per_frame",
    "train_world_model",
]
