"""InternVideo-Next two-stage pretraining: the EPD model and the objectives of each stage."""
from .epd import EPDConfig, EPDModel, FrozenEncoder, build_epd, cosine_loss
from .stage1 import Stage1Loss, Stage1Objective
from .stage2 import Stage2Objective, stage2_from_stage1

__all__ = [
    "EPDConfig", "EPDModel", "FrozenEncoder", "Stage1Loss", "Stage1Objective", "Stage2Objective",
    "build_epd", "cosine_loss", "stage2_from_stage1",
]
