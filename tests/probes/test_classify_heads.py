"""Classification heads and the head grid: structure, independence of heads, and learning a toy problem."""
import torch

from ivnext_world.probes.classify import GridTrainer, HeadGrid
from ivnext_world.probes.classify.features import TokenViews
from ivnext_world.probes.classify.heads import AttentiveClassifier, LinearClassifier, build_head
from ivnext_world.probes.classify.train import ClassifyObjective
from ivnext_world.train import LoopConfig


def toy_tokens(n: int, classes: int = 4, tokens: int = 6, dim: int = 16, seed: int = 0):
    """Class ``c`` puts a class-specific pattern on one random token among noise: separable, but only
    after pooling over tokens (the signal's position changes from clip to clip)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.nn.functional.normalize(torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)), dim=-1) * 4
    y = torch.arange(n) % classes
    x = 0.3 * torch.randn(n, tokens, dim, generator=g)
    where = torch.randint(0, tokens, (n,), generator=g)
    x[torch.arange(n), where] += protos[y]
    return x, y


def test_attentive_probe_has_v_jepa2_structure():
    head = build_head("attentive", 32, 5, num_heads=4, depth=4)
    assert isinstance(head, AttentiveClassifier) and len(head.blocks) == 3  # 3 self-attention + 1 cross-attention
    assert head.query.shape == (1, 1, 32) and head.linear.out_features == 5
    pooler = build_head("pooler", 32, 5, num_heads=4)
    assert len(pooler.blocks) == 0  # the single cross-attention pooler
    assert isinstance(build_head("linear", 32, 5, num_heads=4), LinearClassifier)
    x = torch.randn(3, 7, 32)
    for h in (head, pooler):
        assert h(x).shape == (3, 5)
        # attention pooling ignores token order: the probe must get order from the backbone's tokens
        assert torch.allclose(h(x), h(x[:, torch.randperm(7)]), atol=1e-5)


def test_grid_heads_are_independent_and_have_their_own_lr_and_decay():
    grid = HeadGrid(16, 3, ["linear", "attentive"], [1e-3, 3e-3], [0.01, 0.1], num_heads=2, depth=2)
    assert len(grid.specs) == 8 and grid.names[0] == "linear/lr0.001_wd0.01"
    groups = grid.param_groups()
    decayed = {(g["head"], g["lr"], g["weight_decay"]) for g in groups if g["weight_decay"] > 0}
    assert decayed == {(s.name, s.lr, s.weight_decay) for s in grid.specs}
    assert sum(len(g["params"]) for g in groups) == len(list(grid.parameters()))
    # one head's loss gives gradients to that head only
    x, y = toy_tokens(8, 3, dim=16)
    torch.nn.functional.cross_entropy(grid(x)[5], y).backward()
    with_grad = [i for i, h in enumerate(grid.heads) if any(p.grad is not None and p.grad.abs().sum() > 0 for p in h.parameters())]
    assert with_grad == [5]


def test_each_head_learns_a_separable_toy_problem_to_100_percent(tmp_path):
    x, y = toy_tokens(128)
    x_test, y_test = toy_tokens(128, seed=1)
    torch.manual_seed(0)
    grid = HeadGrid(16, 4, ["linear", "pooler", "attentive"], [1e-2], [0.01], num_heads=2, depth=4)
    cfg = LoopConfig(steps=100, batch_size=16, num_workers=0, warmup_steps=0, min_lr_ratio=0.0, clip_grad=0.0,
                     ckpt_every=100, log_every=20)
    trainer = GridTrainer(grid, ClassifyObjective(), TokenViews(x[:, None], y), cfg, tmp_path)
    trainer.fit()
    grid.eval()
    with torch.no_grad():
        train_acc = (grid(x).argmax(-1) == y).float().mean(1)
        test_acc = (grid(x_test).argmax(-1) == y_test).float().mean(1)
    assert train_acc.tolist() == [1.0, 1.0, 1.0], dict(zip(grid.names, train_acc.tolist()))
    assert (test_acc >= 0.95).all(), dict(zip(grid.names, test_acc.tolist()))  # the rule, not the samples


def test_grid_trainer_refuses_a_joint_gradient_clip(tmp_path):
    import pytest

    grid = HeadGrid(16, 4, ["linear"], [1e-3], [0.0], num_heads=2)
    x, y = toy_tokens(8)
    with pytest.raises(ValueError, match="clip_grad"):
        GridTrainer(grid, ClassifyObjective(), TokenViews(x[:, None], y), LoopConfig(steps=1, clip_grad=5.0), tmp_path)
