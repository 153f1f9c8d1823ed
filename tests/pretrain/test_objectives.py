"""Stage 1 and Stage 2 objectives: which parts get gradients, what the losses depend on, ablations."""
import pytest
import torch
from _host_reads import HostReads  # tests/ is on sys.path (rootdir conftest)

from ivnext_world.masking import masked_indices, stage2_mask_views
from ivnext_world.models import ImageTeacher
from ivnext_world.pretrain import (
    FrozenEncoder, Stage1Loss, Stage1Objective, Stage2Objective, build_epd, cosine_loss,
)

from ._helpers import tiny_cfg


def teacher():
    return ImageTeacher("vit_tiny_patch16_224", img_size=56, num_layers=2, model_kwargs={"depth": 3})


def video(b=2, seed=0):
    return torch.randn(b, 3, 4, 56, 56, generator=torch.Generator().manual_seed(seed))


def test_cosine_loss_range():
    x = torch.nn.functional.normalize(torch.randn(5, 7, 16), dim=-1)
    assert cosine_loss(x, 3.0 * x).item() == pytest.approx(0.0, abs=1e-6)  # scale of target irrelevant
    assert cosine_loss(x, -x).item() == pytest.approx(4.0, abs=1e-5)


def test_stage1_gradients_reach_every_trained_part_and_not_the_teacher():
    t = teacher()
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim))
    obj = Stage1Objective(Stage1Loss(), t)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # The denoiser's output layer and AdaLN modulations start at zero (DiT/MAR init): gradient reaches
    # the condition, hence the predictor, only after the output layer and then the modulations moved.
    for step in range(4):
        opt.zero_grad()
        loss, metrics = obj(model, {"video": video()}, torch.Generator().manual_seed(step))
        loss.backward()
        if step < 3:
            opt.step()
    assert set(metrics) == {"loss_middle", "loss_final", "loss_recon"}
    for name in ("encoder", "predictor", "decoder", "align_heads", "final_align_head"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert all(p.grad is None and not p.requires_grad for p in t.parameters())
    assert not t.training


@pytest.mark.parametrize(
    "overrides, loss_cfg, expected",
    [
        ({"decoder": "linear"}, Stage1Loss(), {"loss_middle", "loss_final", "loss_recon"}),
        ({"decoder": "none"}, Stage1Loss(w_recon=0), {"loss_middle", "loss_final"}),  # alignment only
    ],
)
def test_stage1_ablations(overrides, loss_cfg, expected):
    t = teacher()
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim, **overrides))
    loss, metrics = Stage1Objective(loss_cfg, t)(model, {"video": video()}, torch.Generator().manual_seed(0))
    assert set(metrics) == expected and torch.isfinite(loss)


def test_stage1_reconstruction_only_needs_no_teacher():
    model = build_epd(tiny_cfg())
    obj = Stage1Objective(Stage1Loss(w_middle=0, w_final=0), teacher=None)
    loss, metrics = obj(model, {"video": video()}, torch.Generator().manual_seed(0))
    assert set(metrics) == {"loss_recon"} and torch.isfinite(loss)
    with pytest.raises(ValueError, match="need an image teacher"):
        Stage1Objective(Stage1Loss(), teacher=None)


def test_stage1_layer_count_mismatch_is_an_error():
    t = ImageTeacher("vit_tiny_patch16_224", img_size=56, num_layers=1, model_kwargs={"depth": 3})
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim))  # aligns 2 student blocks
    with pytest.raises(ValueError, match="aligns 2 student blocks but the teacher gives 1"):
        Stage1Objective(Stage1Loss(), t)(model, {"video": video()}, torch.Generator().manual_seed(0))


def test_stage1_is_deterministic_given_the_generator():
    t = teacher()
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim)).eval()
    obj = Stage1Objective(Stage1Loss(), t)
    a, _ = obj(model, {"video": video()}, torch.Generator().manual_seed(3))
    b, _ = obj(model, {"video": video()}, torch.Generator().manual_seed(3))
    c, _ = obj(model, {"video": video()}, torch.Generator().manual_seed(4))
    assert a.item() == b.item() and a.item() != c.item()


class FixedTargets(torch.nn.Module):
    """Stand-in Stage-2 teacher returning given unit-norm targets (B, N, D)."""

    def __init__(self, targets):
        super().__init__()
        self.targets = targets

    def forward(self, video):
        return self.targets


def test_stage2_loss_depends_only_on_masked_positions():
    model = build_epd(tiny_cfg(decoder="none", latent_head=True)).eval()
    v = video()
    grid = model.encoder.token_grid(v.shape[2:])
    n = grid[0] * grid[1] * grid[2]
    targets = torch.nn.functional.normalize(torch.randn(2, n, model.encoder.embed_dim), dim=-1)
    masked = torch.zeros(2, n, dtype=torch.bool)
    for m in stage2_mask_views(2, grid, generator=torch.Generator().manual_seed(7)):
        masked |= m
    changed = torch.where(masked.unsqueeze(-1), targets, -targets)  # flip every never-masked target
    loss_a, _ = Stage2Objective(FixedTargets(targets))(model, {"video": v}, torch.Generator().manual_seed(7))
    loss_b, _ = Stage2Objective(FixedTargets(changed))(model, {"video": v}, torch.Generator().manual_seed(7))
    assert (~masked).any()  # the test changes something
    assert loss_a.item() == pytest.approx(loss_b.item(), abs=1e-6)
    loss_c, _ = Stage2Objective(FixedTargets(-targets))(model, {"video": v}, torch.Generator().manual_seed(7))
    assert loss_a.item() + loss_c.item() == pytest.approx(8.0, abs=1e-4)  # two views, 2-2cos and 2+2cos


def test_stage2_teacher_is_frozen_eval_copy_of_the_encoder():
    model = build_epd(tiny_cfg(decoder="none", latent_head=True, drop_path=0.5))
    frozen = FrozenEncoder(model.encoder)
    parent = torch.nn.ModuleDict({"teacher": frozen})
    parent.train()
    assert not frozen.training and not frozen.encoder.training
    assert not any(p.requires_grad for p in frozen.parameters())
    v = video()
    assert torch.equal(frozen(v), frozen(v))  # eval mode: drop path off
    out = frozen(v)
    assert torch.allclose(out.norm(dim=-1), torch.ones(out.shape[:2]), atol=1e-5)
    with torch.no_grad():
        model.encoder.blocks[0].mlp.fc1.weight.add_(1.0)  # training the student leaves the teacher alone
    assert torch.equal(frozen(v), out)


def test_stage2_gradients_flow_to_student_only():
    model = build_epd(tiny_cfg(decoder="none", latent_head=True))
    frozen = FrozenEncoder(model.encoder)
    loss, metrics = Stage2Objective(frozen)(model, {"video": video()}, torch.Generator().manual_seed(0))
    assert set(metrics) == {"loss_view1", "loss_view2"}
    loss.backward()
    assert all(p.grad is not None for p in model.latent_head.parameters())
    assert model.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen.parameters())


@pytest.mark.parametrize("with_teacher", [True, False])  # attention-guided / random tube mask
def test_stage1_step_reads_nothing_back(with_teacher):
    # On a GPU every value read on the host waits for the device. The masks' visible count is fixed
    # by the ratio, and the decoder gets gathered rows: the step's forward reads nothing (it read 8:
    # three counts, three row-equality checks, two boolean-mask selections).
    t = teacher() if with_teacher else None
    model = build_epd(tiny_cfg(teacher_dim=t.embed_dim if t else None))
    obj = Stage1Objective(Stage1Loss() if t else Stage1Loss(w_middle=0, w_final=0), t)
    with HostReads() as reads:
        loss, _ = obj(model, {"video": video()}, torch.Generator().manual_seed(0))
    assert reads.total == 0, reads.reads
    assert torch.isfinite(loss)


def test_stage2_step_reads_only_the_cpu_masks_counts():
    # The views are sampled on the CPU and their two visible counts read there (one tolist of a CPU
    # tensor: no device sync on a GPU); nothing else is read. It read 37 values at batch 2.
    model = build_epd(tiny_cfg(decoder="none", latent_head=True))
    obj = Stage2Objective(FrozenEncoder(model.encoder))
    with HostReads() as reads:
        loss, _ = obj(model, {"video": video()}, torch.Generator().manual_seed(0))
    assert dict(reads.reads) == {"Tensor.tolist": 1}
    assert torch.isfinite(loss)


def test_motion_mask_masks_moving_tokens_more_often():
    """A clip where only the top-left 2x2 tokens move: motion-aware masks hide them far more often
    than tube masks do (visible weight 1 / (1 + motion / mean motion))."""
    from ivnext_world.masking import motion_guided_mask, random_tube_mask
    from ivnext_world.pretrain.stage1 import token_motion

    v = torch.zeros(1, 3, 4, 56, 56)
    for t in range(4):
        v[:, :, t, :28, :28] = float(t)  # tokens (0..1, 0..1) of the 4x4 grid (patch 14) change every frame
    motion = token_motion(v, (4, 4, 4), 1)
    assert motion.shape == (1, 4, 16) and bool((motion[0, :, 0] > 0).all()) and motion[0, :, 15].abs().max() == 0
    model = build_epd(tiny_cfg())
    masked = {}
    for kind in ("motion", "tube"):
        obj = Stage1Objective(Stage1Loss(w_middle=0, w_final=0, mask=kind), teacher=None)
        assert obj.mask_kind == kind
        hits = 0.0
        for seed in range(40):
            g = torch.Generator().manual_seed(seed)
            if kind == "motion":
                m = motion_guided_mask(motion, 0.75, generator=g)
            else:
                m = random_tube_mask(1, (4, 4, 4), 0.75, generator=g)
            hits += m.reshape(4, 16)[:, [0, 1, 4, 5]].float().mean().item()
        masked[kind] = hits / 40
        loss, metrics = obj(model, {"video": video()}, torch.Generator().manual_seed(0))
        assert torch.isfinite(loss) and set(metrics) == {"loss_recon"}
    assert masked["motion"] > 0.9 and masked["tube"] < 0.85
    with pytest.raises(ValueError, match="needs an image teacher"):
        Stage1Objective(Stage1Loss(w_middle=0, w_final=0, mask="attention"), teacher=None)
    with pytest.raises(ValueError, match="mask must be one of"):
        Stage1Loss(mask="blocks")
