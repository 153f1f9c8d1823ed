"""Training infrastructure shared by every stage: the loop, checkpoints, resumable data order."""
from .checkpoint import (
    CheckpointMismatchError,
    TrainState,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)
from .data import ResumableSampler, SeededDataset
from .loop import IN_LOOP, STOP, LoopConfig, NonFiniteLossError, Preempted, Trainer, scaled_lr, warmup_cosine

__all__ = [
    "IN_LOOP", "STOP", "CheckpointMismatchError", "LoopConfig", "NonFiniteLossError", "Preempted", "ResumableSampler", "SeededDataset",
    "TrainState", "Trainer", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "load_weights",
    "save_checkpoint", "save_weights", "scaled_lr", "warmup_cosine",
]
