"""The paper's ModernBERT predictor: its layers equal transformers' own forward, text/random init,
the predictor interface, and a Stage-1 step through the EPD config (predictor_kind=modernbert)."""

import json
import logging

import pytest
import torch
from safetensors.torch import save_file

from ivnext_world import masking
from ivnext_world.pretrain import Stage1Loss, Stage1Objective, build_epd, stage2_from_stage1

from .conftest import GRID

transformers = pytest.importorskip("transformers")
from ivnext_world.models.modernbert_predictor import ModernBertPredictor  # noqa: E402

N = GRID[0] * GRID[1] * GRID[2]
TOL = dict(atol=1e-5, rtol=1e-5)
# 4 layers: 0 and 3 global, 1 and 2 local with a window of +-4 tokens; the last 2 are one of each.
TINY = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=2,
            global_attn_every_n_layers=3, local_attention=8)
TOKENS = dict(vocab_size=16, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)


@pytest.fixture
def text_folder(tmp_path):
    """A tiny ModernBERT saved as answerdotai/ModernBERT-large is published (a masked-LM checkpoint)."""
    torch.manual_seed(0)
    cfg = transformers.ModernBertConfig(**TINY, **TOKENS)
    transformers.ModernBertForMaskedLM(cfg).save_pretrained(str(tmp_path / "modernbert"))
    return tmp_path / "modernbert"


def _reference(folder, depth):
    """transformers' own ModernBertModel forward restricted to its last ``depth`` layers."""
    ref = transformers.ModernBertModel.from_pretrained(str(folder)).eval()
    ref.layers = ref.layers[-depth:]
    ref.embeddings.norm = torch.nn.Identity()  # feed hidden states, not token embeddings
    ref.final_norm = torch.nn.Identity()  # the predictor has no final norm (as the official code)
    return ref


def test_layers_equal_transformers_forward(text_folder):
    pred = ModernBertPredictor(enc_dim=48, grid_size=GRID, num_cls_tokens=4, depth=2, text_model=text_folder).eval()
    assert pred.init == f"text:{text_folder}" and pred.embed_dim == 32
    assert [layer.attention_type for layer in pred.layers] == ["sliding_attention", "full_attention"]
    ref = _reference(text_folder, 2)
    for mine, theirs in zip(pred.layers, ref.layers):
        for (k, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), k  # the text checkpoint's last layers
    x = torch.randn(2, 20, 32, generator=torch.Generator().manual_seed(0))  # longer than the local window
    with torch.no_grad():
        torch.testing.assert_close(pred.run_layers(x), ref(inputs_embeds=x).last_hidden_state, **TOL)
        # A boolean attention mask (two blocks, block-causal) combines with the local window.
        frame = torch.arange(20) // 10
        user = frame[:, None] >= frame[None, :]  # (L, L)
        i = torch.arange(20)
        window = (i[:, None] - i[None, :]).abs() <= pred.config.sliding_window
        masks = {"full_attention": user.expand(2, 1, 20, 20), "sliding_attention": (user & window).expand(2, 1, 20, 20)}
        want = ref(inputs_embeds=x, attention_mask=masks).last_hidden_state
        torch.testing.assert_close(pred.run_layers(x, user), want, **TOL)
        torch.testing.assert_close(pred.run_layers(x, user.expand(2, 1, 20, 20)), want, **TOL)


def test_random_init_warns_and_rebuilds_from_its_config(caplog):
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        pred = ModernBertPredictor(enc_dim=48, grid_size=GRID, depth=2, config=TINY)
    assert pred.init == "random" and "RANDOM weights" in caplog.text
    # The library's init: output projections scaled by 1/sqrt(2 * num_hidden_layers) = 1/sqrt(8).
    layer = pred.layers[0]
    assert layer.attn.Wo.weight.std() < 0.6 * layer.attn.Wqkv.weight.std()
    stored = json.loads(json.dumps(pred.config_dict()))  # what a checkpoint's state.json holds
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = ModernBertPredictor(enc_dim=48, grid_size=GRID, depth=2, config=stored, load_text_weights=False)
    assert "RANDOM" not in caplog.text
    again.load_state_dict(pred.state_dict(), strict=True)
    tokens = torch.randn(1, 4 + N, 48)
    torch.testing.assert_close(again.eval()(tokens).patches, pred.eval()(tokens).patches)


def test_predictor_interface(encoder, video):
    torch.manual_seed(0)
    pred = ModernBertPredictor(enc_dim=96, grid_size=GRID, depth=2, config=TINY).eval()
    mask = masking.random_tube_mask(2, GRID, 0.75, torch.Generator().manual_seed(0))
    out = pred(encoder.forward_features(video, mask), mask)
    assert out.patches.shape == (2, N, 32) and out.cls.shape == (2, 4, 32) and out.extra is None
    # Extra tokens (world-model actions) appended; a mask hiding them from the rest keeps the rest fixed.
    tokens = encoder.forward_features(video)
    length = 4 + N + 3
    attn_mask = torch.ones(length, length, dtype=torch.bool)
    attn_mask[: 4 + N, 4 + N:] = False
    a = pred(tokens, extra_tokens=torch.randn(2, 3, 32), attn_mask=attn_mask)
    b = pred(tokens, extra_tokens=torch.randn(2, 3, 32), attn_mask=attn_mask)
    assert a.extra.shape == (2, 3, 32)
    torch.testing.assert_close(a.patches, b.patches)
    assert not torch.allclose(a.extra, b.extra)
    assert not torch.allclose(pred(tokens, extra_tokens=torch.randn(2, 3, 32)).patches, a.patches)
    with pytest.raises(TypeError, match="boolean"):
        pred(tokens, attn_mask=torch.zeros(4 + N, 4 + N))
    # Gradients reach the mask token and the encoder, with and without gradient checkpointing.
    encoder.train()
    for ckpt in (False, True):
        pred.train().set_grad_checkpointing(ckpt)
        pred.zero_grad()
        pred(encoder.forward_features(video, mask), mask).patches.square().mean().backward()
        assert pred.mask_token.grad.abs().sum() > 0 and pred.layers[0].attn.Wqkv.weight.grad.abs().sum() > 0
    assert encoder.cls_token.grad.abs().sum() > 0


def test_text_folder_errors(tmp_path, text_folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        ModernBertPredictor(enc_dim=48, grid_size=GRID, depth=2, text_model=tmp_path / "empty")
    cfg = json.loads((text_folder / "config.json").read_text())
    (text_folder / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    with pytest.raises(ValueError, match="not ModernBERT"):
        ModernBertPredictor(enc_dim=48, grid_size=GRID, depth=2, text_model=text_folder)
    (text_folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="depth 5 must be in 1..4"):
        ModernBertPredictor(enc_dim=48, grid_size=GRID, depth=5, text_model=text_folder)
    (text_folder / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 40}))
    with pytest.raises(ValueError, match="mlp.Wo.weight: checkpoint \\(32, 48\\) vs model \\(32, 40\\)"):
        ModernBertPredictor(enc_dim=48, grid_size=GRID, depth=2, text_model=text_folder)


def test_stage1_step_and_checkpoint_rebuild_with_modernbert(tmp_path, text_folder):
    from ivnext_world.models import ImageTeacher
    from ivnext_world.pretrain import EPDConfig

    teacher = ImageTeacher("vit_tiny_patch16_224", img_size=56, num_layers=2, model_kwargs={"depth": 3})
    model = build_epd(EPDConfig(
        img_size=56, num_frames=4, encoder_kwargs={"embed_dim": 48, "depth": 3, "num_heads": 2, "pool_num_heads": 2},
        decoder_width=64, decoder_depth=2, align_layers=2, teacher_dim=teacher.embed_dim,
        predictor_kind="modernbert", predictor_depth=2, predictor_text_model=str(text_folder),
    ))
    assert model.cfg.predictor_init == f"text:{text_folder}" and model.cfg.predictor_dim == 32
    video = torch.randn(2, 3, 4, 56, 56, generator=torch.Generator().manual_seed(0))
    loss, metrics = Stage1Objective(Stage1Loss(), teacher)(model, {"video": video}, torch.Generator().manual_seed(0))
    loss.backward()
    assert set(metrics) == {"loss_middle", "loss_final", "loss_recon"} and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.predictor.parameters())

    # A checkpoint rebuilds from its stored config alone: the text folder is not read again.
    stored = json.loads(json.dumps(model.config_dict()))
    weights = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(weights))
    for f in text_folder.iterdir():
        f.unlink()
    student, _ = stage2_from_stage1(str(weights), stored)
    assert student.cfg.predictor_init == f"text:{text_folder}" and student.latent_head is not None
    torch.testing.assert_close(student.predictor.layers[1].mlp.Wi.weight, model.predictor.layers[1].mlp.Wi.weight)


def test_world_model_predictor_refuses_modernbert_layers():
    from ivnext_world.world_model import ACPredictorConfig, ActionConditionedPredictor

    pred = ModernBertPredictor(enc_dim=48, grid_size=GRID, depth=1, config=TINY)
    cfg = ACPredictorConfig(enc_dim=48, tokens_per_frame=4, embed_dim=32, num_heads=2, depth=1)
    ac = ActionConditionedPredictor(cfg)
    with pytest.raises(TypeError, match="ModernBertEncoderLayer"):
        ac.init_blocks_from(pred.blocks)
