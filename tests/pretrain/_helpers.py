"""Tiny model settings shared by the pretraining tests."""
from ivnext_world.pretrain import EPDConfig

TINY = dict(img_size=56, num_frames=4, encoder_kwargs={"embed_dim": 48, "depth": 3, "num_heads": 2, "pool_num_heads": 2},
            predictor_dim=48, predictor_depth=1, predictor_heads=2, decoder_width=64, decoder_depth=2, align_layers=2)


def tiny_cfg(**kw) -> EPDConfig:
    return EPDConfig(**{**TINY, **kw})
