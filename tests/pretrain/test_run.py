"""run_pretrain on real decoded video: learning, exact resume, checkpoints and config errors."""
import json
import shutil
from dataclasses import asdict

import pytest
import torch

from ivnext_world.config import load_config
from ivnext_world.pretrain.run import ClipDataConfig, PretrainConfig, TeacherConfig, load_epd, run_pretrain
from ivnext_world.train import CheckpointMismatchError, LoopConfig, save_checkpoint
from ivnext_world.train.checkpoint import TrainState

from ._helpers import tiny_cfg


def pcfg(manifest, out, stage=1, **loop):
    base = dict(steps=6, batch_size=2, num_workers=0, warmup_steps=2, ckpt_every=3, log_every=1, base_lr=0.05)
    base.update(loop)
    return PretrainConfig(
        stage=stage, model=tiny_cfg(drop_path=0.1), out=str(out),
        teacher=TeacherConfig(model="vit_tiny_patch16_224", num_layers=2, allow_random=True),
        data=ClipDataConfig(source=str(manifest), stride=2), loop=LoopConfig(**base),
        init_from=None,
    )


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_stage1_resume_is_bitwise_identical(video_manifest, tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    full = run_pretrain(pcfg(video_manifest, tmp_path / "run"))
    a = weights(ckpts / "step_00000006")
    shutil.rmtree(ckpts / "step_00000006")  # as if killed after the step-3 checkpoint
    resumed = run_pretrain(pcfg(video_manifest, tmp_path / "run"))
    b = weights(ckpts / "step_00000006")
    assert resumed["steps"] == 6
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert full["teacher"]["pretrained"] is False and "RANDOM" in full["warning"]
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_few_steps_of_each_stage_reduce_the_loss(video_manifest, tmp_path):
    s1 = run_pretrain(pcfg(video_manifest, tmp_path / "s1", steps=40, warmup_steps=5, ckpt_every=40, base_lr=0.2))
    assert s1["final_loss"] < s1["first_loss"] * 0.9
    cfg2 = pcfg(video_manifest, tmp_path / "s2", stage=2, steps=30, warmup_steps=5, ckpt_every=30, base_lr=0.05)
    cfg2.init_from = str(tmp_path / "s1")
    s2 = run_pretrain(cfg2)
    assert s2["final_loss"] < s2["first_loss"] * 0.9
    assert s2["teacher"]["stage1_checkpoint"].endswith("step_00000040")
    model, extra = load_epd(tmp_path / "s2")
    assert extra["stage"] == 2 and model.latent_head is not None and model.decoder is None


def test_load_epd_rejects_foreign_and_mismatched_checkpoints(video_manifest, tmp_path):
    run_pretrain(pcfg(video_manifest, tmp_path / "run", steps=1, ckpt_every=1))
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000001"
    state = json.loads((ckpt / "state.json").read_text())
    state["extra"]["model"]["predictor_dim"] = 64  # the stored config no longer matches the weights
    (ckpt / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointMismatchError, match=r"predictor\.blocks\.0\.attn\.qkv\.weight: checkpoint \(144, 48\) vs model \(192, 64\)"):
        load_epd(tmp_path / "run")
    foreign = tmp_path / "foreign"
    save_checkpoint(foreign, torch.nn.Linear(2, 2), None, TrainState(step=1, data={}))
    with pytest.raises(ValueError, match="not an ivnext_world pretraining checkpoint"):
        load_epd(foreign)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        load_epd(tmp_path / "nowhere")


def test_stage_config_errors(video_manifest, tmp_path):
    with pytest.raises(ValueError, match="Stage 2 needs init_from"):
        run_pretrain(pcfg(video_manifest, tmp_path / "a", stage=2))
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        run_pretrain(pcfg(video_manifest, tmp_path / "b", stage=3))
    with pytest.raises(ValueError, match="decoder must be"):
        tiny_cfg(decoder="gan")


def test_pretrain_yaml_is_typed():
    cfg = load_config("pretrain", ["stage=2", "model.decoder_depth=4", "loop.base_lr=1e-4"])
    assert cfg.out == "outputs/pretrain/stage2" and cfg.model.decoder_depth == 4
    with pytest.raises(Exception, match="decoder_dept"):
        load_config("pretrain", ["model.decoder_dept=4"])
    with pytest.raises(Exception, match="base_lr"):
        load_config("pretrain", ["loop.base_lr=fast"])


def test_checkpoint_configs_from_before_predictor_layer_scale_still_build():
    from ivnext_world.pretrain import EPDConfig, build_epd

    cfg = {k: v for k, v in vars(EPDConfig(img_size=28, num_frames=2, encoder_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2, "pool_num_heads": 2}, predictor_dim=32, predictor_depth=1, predictor_heads=2, decoder="none")).items()
           if k != "predictor_layer_scale"}
    legacy = build_epd(cfg)
    assert any(".ls1." in k for k in legacy.predictor.state_dict())  # LayerScale 1e-5, as those runs had
    fresh = build_epd({**cfg, "predictor_layer_scale": 0.0})
    assert not any(".ls1." in k for k in fresh.predictor.state_dict())


def test_without_teacher_weights_stage1_trains_reconstruction_only(video_manifest, tmp_path, caplog):
    """No teacher checkpoint: no alignment to a random network; the summary and the log say so."""
    cfg = pcfg(video_manifest, tmp_path / "run", steps=2, ckpt_every=2)
    cfg.teacher.allow_random = False
    with caplog.at_level("WARNING"):
        s = run_pretrain(cfg)
    assert s["teacher"]["objective"] == "reconstruction only" and "warning" not in s
    assert "reconstruction only" in s["note"] and "tube masks" in s["note"]
    assert any("reconstruction only" in r.message for r in caplog.records)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    keys = {k for m in metrics for k in m}
    assert "loss_recon" in keys and not keys & {"loss_middle", "loss_final"}
    model, _ = load_epd(tmp_path / "run")
    assert model.align_heads is None  # no teacher, no alignment heads trained or stored
    cfg = pcfg(video_manifest, tmp_path / "b", steps=1, ckpt_every=1)
    cfg.teacher.allow_random, cfg.loss.w_recon = False, 0.0
    with pytest.raises(ValueError, match="align to a random network"):
        run_pretrain(cfg)
