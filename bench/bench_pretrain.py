"""Pretraining speed: our video encoder against timm's ViT, and where a Stage-1 / Stage-2 step goes.

Three tables (numbers only, nothing is asserted):

1. Encoder training step (forward + backward + AdamW; fp32 on the CPU, bf16 autocast on CUDA) of
   our ``VideoViT`` against ``timm.models.vision_transformer.VisionTransformer`` with the same
   width, depth, heads, MLP ratio and sequence length. The comparison is built to differ only in
   the code, not in the work:

   - same pixels and same tokens: timm gets the clip's frames tiled side by side into one
     ``(B, 3, H, T*W)`` image, so its ``H/p x T*W/p`` patch grid has exactly ``T'*H'*W'`` tokens, and
     ``1 cls + (num_cls - 1) register`` tokens match our ``num_cls`` cls tokens;
   - same block recipe: RMSNorm, q/k norm, no qkv bias, LayerScale 1e-5, GELU MLP, no final norm.
     Left different on purpose: timm's q/k norm is per head (ours is full width, same cost) and
     our patch embedding adds two RMSNorms around its Conv3d (timm: one Conv2d);
   - "whole model" = ``forward_features`` (patch embedding + positions + blocks), the part the
     pretraining objectives call; pooling heads are left out of both. "blocks only" feeds both
     block stacks the same random ``(B, L, D)`` tokens, which isolates the transformer, the main cost;
     "embedding only" is the rest (pixels -> ``(B, L, D)`` tokens with positions and prefix tokens);
   - the two models alternate iteration by iteration, so a drifting clock hits both alike.

   Also: the masked-encoder speed-up (25% of the patch tokens visible vs all of them).
2. Per-part wall time of one Stage-1 and one Stage-2 training step. The sequence of calls of
   ``Stage1Objective`` / ``Stage2Objective`` is replayed here with a clock around each part (the
   loss of the replay is printed next to the library's, same seed, to show it is the same
   computation), and the library's own step is timed as a reference. The optimiser step mirrors
   ``Trainer``: AdamW parameter groups, gradient clipping, finiteness check.
3. On CUDA only (``--mfu``): bf16 model-FLOPs utilisation at 16 frames x 224 px of the Base and
   Large encoders alone and of the full Stage-1 step (teacher forward, encoder, alignment heads,
   predictor, diffusion decoder, backward, AdamW). FLOPs are counted by PyTorch's FlopCounterMode
   over one real step (``ivnext_world.utils.flops``); MFU is given against the datasheet dense bf16
   peak (what papers quote) and against a bf16 matmul peak measured in the same process (about
   1.25-1.3x higher readings on H100s).

    python bench/bench_pretrain.py                      # tiny, 8 x 112 px, batch 2 (CPU: ~1-2 min)
    python bench/bench_pretrain.py --preset base --frames 16 --img-size 224 --batch 8 --iters 20
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from dataclasses import replace
from typing import Callable

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from ivnext_world.masking import (
    attention_guided_mask, gather_tokens, masked_indices, random_tube_mask, stage2_mask_views, visible_indices,
)
from ivnext_world.models import ImageTeacher, VideoViT, patchify
from ivnext_world.models.block import run_blocks
from ivnext_world.pretrain import (
    EPDConfig, FrozenEncoder, Stage1Loss, Stage1Objective, Stage2Objective, build_epd, cosine_loss,
)
from ivnext_world.pretrain.stage1 import _per_token_time  # the objective's own teacher-layout helper
from ivnext_world.train.loop import LoopConfig, param_groups
from ivnext_world.utils.flops import count_flops, datasheet_peak_flops, matmul_peak_flops, mfu

PRESETS = ("tiny", "small", "base", "large", "1b")


# ---------------------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def autocast(device: torch.device):
    """bf16 autocast on CUDA (the Trainer's "auto" precision), plain fp32 elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def time_interleaved(fns: dict[str, Callable[[], object]], warmup: int, iters: int, device) -> dict[str, float]:
    """Median seconds per call of each function; the functions take turns every iteration."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + iters):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


class PartClock:
    """Wall time of named parts of a step; a part entered several times in one step is summed."""

    def __init__(self, device: torch.device):
        self.device = device
        self.steps: list[dict[str, float]] = []
        self._current: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        sync(self.device)
        t0 = time.perf_counter()
        yield
        sync(self.device)
        self._current[name] = self._current.get(name, 0.0) + time.perf_counter() - t0

    def end_step(self, keep: bool) -> None:
        if keep:
            self.steps.append(self._current)
        self._current = {}

    def medians(self) -> dict[str, float]:
        return {name: statistics.median(step[name] for step in self.steps) for name in self.steps[0]}


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Left-aligned first column, right-aligned numbers."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    fmt = lambda r: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))
    )
    print(fmt(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt(r))


def train_step(forward: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer, device) -> None:
    """zero_grad, forward under autocast, mean-square loss, backward, AdamW step."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(device):
        out = forward()
    out.float().square().mean().backward()
    optimizer.step()


def encoder_name(preset: str) -> str:
    return f"ivnext_vit_{preset}_patch14_224"


def timm_twin(enc: VideoViT, grid: tuple[int, int, int]) -> VisionTransformer:
    """timm ViT with our encoder's block shape and token count (frames tiled along the width)."""
    t_, h_, w_ = grid
    blk = enc.blocks[0]
    p = enc.patch_size
    return VisionTransformer(
        img_size=(h_ * p, t_ * w_ * p), patch_size=p, in_chans=enc.in_chans, num_classes=0, global_pool="",
        embed_dim=enc.embed_dim, depth=enc.depth, num_heads=enc.num_heads,
        mlp_ratio=blk.mlp.fc1.out_features / enc.embed_dim,
        qkv_bias=False, qk_norm=True, init_values=1e-5, norm_layer="rmsnorm", final_norm=False,
        class_token=True, reg_tokens=enc.num_prefix_tokens - 1,
    )


def tile_frames(video: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C, H, T*W)``: the frames side by side, as timm's input image."""
    b, c, t, h, w = video.shape
    return video.permute(0, 1, 3, 2, 4).reshape(b, c, h, t * w)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


# ----------------------------------------------------------------------- 1. encoder vs timm
def bench_encoder(args, device: torch.device) -> None:
    torch.manual_seed(args.seed)
    enc: VideoViT = timm.create_model(encoder_name(args.preset), img_size=args.img_size, num_frames=args.frames)
    grid = enc.token_grid((args.frames, args.img_size, args.img_size))
    n_patch = grid[0] * grid[1] * grid[2]
    seq = enc.num_prefix_tokens + n_patch
    twin = timm_twin(enc, grid)
    enc.to(device).train()
    twin.to(device).train()
    video = torch.randn(args.batch, 3, args.frames, args.img_size, args.img_size, device=device)
    image = tile_frames(video)
    tokens = torch.randn(args.batch, seq, enc.embed_dim, device=device)
    twin_seq = twin.patch_embed.num_patches + twin.num_prefix_tokens

    n_blocks = lambda m: sum(p.numel() for p in m.blocks.parameters())  # noqa: E731
    print(f"ours: {encoder_name(args.preset)} D={enc.embed_dim} depth={enc.depth} heads={enc.num_heads} "
          f"mlp={enc.blocks[0].mlp.fc1.out_features / enc.embed_dim:g}, clip {args.frames}x{args.img_size}x"
          f"{args.img_size} -> grid {grid}, L = {enc.num_prefix_tokens} cls + {n_patch} patches = {seq}")
    print(f"timm: VisionTransformer img_size={tuple(twin.patch_embed.img_size)} patch {enc.patch_size}, "
          f"1 cls + {twin.num_reg_tokens} reg tokens, L = {twin_seq}, rmsnorm, per-head qk_norm, no final norm, "
          f"fused_attn={twin.blocks[0].attn.fused_attn}")
    print(f"block params: ours {n_blocks(enc) / 1e6:.3f} M, timm {n_blocks(twin) / 1e6:.3f} M; "
          f"batch {args.batch}; median of {args.iters} interleaved iterations after {args.warmup} warm-up")

    opt_blocks = {m: torch.optim.AdamW(mod.blocks.parameters(), lr=1e-4)
                  for m, mod in (("ours", enc), ("timm", twin))}
    opt = {"ours": torch.optim.AdamW(enc.parameters(), lr=1e-4), "timm": torch.optim.AdamW(twin.parameters(), lr=1e-4)}
    t = time_interleaved({
        "ours whole": lambda: train_step(lambda: enc.forward_features(video), opt["ours"], device),
        "timm whole": lambda: train_step(lambda: twin.forward_features(image), opt["timm"], device),
        "ours blocks": lambda: train_step(lambda: run_blocks(enc.blocks, tokens)[0], opt_blocks["ours"], device),
        "timm blocks": lambda: train_step(lambda: twin.blocks(tokens), opt_blocks["timm"], device),
        # What is left: patch embedding + positions + prefix tokens, (B, C, T, H, W) -> (B, L, D).
        "ours embedding": lambda: train_step(lambda: enc.embed(video), opt["ours"], device),
        "timm embedding": lambda: train_step(lambda: twin._pos_embed(twin.patch_embed(image)), opt["timm"], device),
    }, args.warmup, args.iters, device)
    tok = args.batch * n_patch  # patch tokens per step (the cls tokens ride along in both)
    rows = []
    for what, label in (("whole", "whole model"), ("blocks", "blocks only"), ("embedding", "embedding only")):
        ours, ref = t[f"ours {what}"], t[f"timm {what}"]
        rows.append([label, fmt_ms(ours), fmt_ms(ref),
                     f"{tok / ours:,.0f}", f"{tok / ref:,.0f}", f"{ref / ours:.2f}"])
    print()
    print_table(["train step", "ours ms", "timm ms", "ours patch tok/s", "timm patch tok/s",
                 "ours/timm throughput"], rows)

    # Masked pretraining runs the encoder on the visible tokens only.
    mask = random_tube_mask(args.batch, grid, args.mask_ratio, device=device)
    n_vis = int((~mask[0]).sum())

    def forward_only(m):
        with torch.no_grad(), autocast(device):
            enc.forward_features(video, m)

    t = time_interleaved({
        "fwd all": lambda: forward_only(None),
        "fwd masked": lambda: forward_only(mask),
        "step all": lambda: train_step(lambda: enc.forward_features(video), opt["ours"], device),
        "step masked": lambda: train_step(lambda: enc.forward_features(video, mask), opt["ours"], device),
    }, args.warmup, args.iters, device)
    print(f"\nmasked encoder: {n_vis}/{n_patch} patch tokens visible ({n_vis / n_patch:.0%}), "
          f"L = {enc.num_prefix_tokens + n_vis} vs {seq}")
    print_table(["ours", "all tokens ms", "visible only ms", "speed-up"], [
        ["forward (no grad)", fmt_ms(t["fwd all"]), fmt_ms(t["fwd masked"]), f"{t['fwd all'] / t['fwd masked']:.2f}x"],
        ["train step", fmt_ms(t["step all"]), fmt_ms(t["step masked"]), f"{t['step all'] / t['step masked']:.2f}x"],
    ])


# ----------------------------------------------------------------------- 2. stage breakdowns
def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, LoopConfig().weight_decay), lr=1e-4)


def backward_and_step(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """What ``Trainer._train_step`` does after the objective (minus the schedule and logging)."""
    optimizer.zero_grad(set_to_none=True)  # the Trainer clears before the forward; same effect
    if bool(torch.isfinite(loss)):
        loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, LoopConfig().clip_grad)
        optimizer.step()


def stage1_forward(model, teacher: ImageTeacher, cfg: Stage1Loss, video, gen, clock: PartClock) -> torch.Tensor:
    """``Stage1Objective.__call__`` with a clock around each part; returns the loss."""
    enc = model.encoder
    b = video.shape[0]
    grid = enc.token_grid(video.shape[2:])
    t_, h_, w_ = grid
    tub = enc.tubelet_size
    with clock("teacher forward"):
        tout = teacher(video, out_grid=(h_, w_))  # per frame: rows b * T + t
    with clock("attention-guided mask"):
        mask = attention_guided_mask(_per_token_time(tout.attn, b, t_, tub), cfg.mask_ratio, generator=gen)
    n_align = model.num_align_layers
    with clock("encoder forward"):
        final, inter = enc.forward_intermediates(video, mask, indices=n_align)
    with clock("alignment heads + losses"):
        vis = visible_indices(mask)
        middle = video.new_zeros(())
        for head, student, target in zip(model.align_heads, inter[-n_align:], tout.hidden[-n_align:]):
            target = _per_token_time(target, b, t_, tub).reshape(b, t_ * h_ * w_, -1)  # (B, N, Dt)
            middle = middle + cosine_loss(head(student), gather_tokens(target, vis))
        patches = final[:, enc.num_prefix_tokens:]  # (B, N_vis, D)
        pooled = model.final_align_head(enc.forward_head(patches.reshape(b * t_, -1, patches.shape[-1])))
        target = _per_token_time(tout.pooled, b, t_, tub).reshape(b * t_, -1)
        loss = cfg.w_middle * middle / n_align + cfg.w_final * cosine_loss(pooled, target)
    with clock("predictor forward"):
        pred = model.predictor(final, mask, grid).patches  # (B, N, D_pred)
    with clock("decoder loss"):
        pixels = patchify(video, enc.patch_size, tub)  # (B, N, P)
        loss = loss + cfg.w_recon * model.decoder.loss(pred, pixels.to(pred.dtype), mask, generator=gen)
    return loss


def stage2_forward(model, teacher: FrozenEncoder, video, gen, clock: PartClock) -> torch.Tensor:
    """``Stage2Objective.__call__`` with a clock around each part (summed over both views)."""
    b = video.shape[0]
    grid = model.encoder.token_grid(video.shape[2:])
    with clock("frozen teacher encoder forward"):
        target = teacher(video)  # (B, N, D), unit norm
    with clock("mask views"):
        views = stage2_mask_views(b, grid, generator=gen, device=video.device)
    loss = video.new_zeros(())
    for mask in views:
        with clock("student encoder forward"):
            tokens = model.encoder.forward_features(video, mask)
        with clock("predictor forward"):
            pred = model.predictor(tokens, mask, grid).patches  # (B, N, D_pred)
        with clock("latent head + loss"):
            idx = masked_indices(mask)
            loss = loss + cosine_loss(model.latent_head(gather_tokens(pred, idx)), gather_tokens(target, idx))
    return loss


def report_parts(title: str, clock: PartClock, reference_s: float, losses: tuple[float, float]) -> None:
    med = clock.medians()
    total = sum(med.values())
    rows = [[name, fmt_ms(s), f"{100 * s / total:.1f}%"] for name, s in med.items()]
    rows.append(["step (sum of parts)", fmt_ms(total), "100.0%"])
    print(f"\n{title}")
    print_table(["part", "ms", "% of step"], rows)
    print(f"library objective step, same shapes (reference): {fmt_ms(reference_s)} ms; "
          f"loss at equal seed: library {losses[0]:.6f}, replay {losses[1]:.6f}")


def bench_stages(args, device: torch.device) -> None:
    torch.manual_seed(args.seed)
    teacher = ImageTeacher(args.teacher, img_size=args.teacher_img_size).to(device)
    cfg1 = EPDConfig(
        encoder=encoder_name(args.preset), img_size=args.img_size, num_frames=args.frames,
        predictor_dim=args.predictor_dim, predictor_depth=args.predictor_depth, predictor_heads=args.predictor_heads,
        decoder_width=args.decoder_width, decoder_depth=args.decoder_depth, teacher_dim=teacher.embed_dim,
    )
    video = torch.randn(args.batch, 3, args.frames, args.img_size, args.img_size, device=device)
    gen = lambda: torch.Generator(device=device).manual_seed(args.seed)  # noqa: E731
    print(f"encoder {cfg1.encoder}, predictor {cfg1.predictor_dim}x{cfg1.predictor_depth}, diffusion decoder "
          f"{cfg1.decoder_width}x{cfg1.decoder_depth}, teacher {args.teacher} @ {args.teacher_img_size} px "
          f"(random weights), clip {args.frames}x{args.img_size}x{args.img_size}, batch {args.batch}")

    stages = []
    # Stage 1
    model = build_epd(cfg1).to(device).train()
    loss_cfg = Stage1Loss(mask_ratio=args.mask_ratio)
    objective = Stage1Objective(loss_cfg, teacher)
    replay = lambda m, v, g, clock: stage1_forward(m, teacher, loss_cfg, v, g, clock)  # noqa: E731
    stages.append(("Stage 1 step (teacher -> attention-guided mask -> encoder -> alignment + predictor "
                   "-> diffusion decoder)", model, objective, replay))
    # Stage 2: the student keeps encoder + predictor, the teacher is a frozen copy of the encoder.
    student = build_epd(replace(cfg1, decoder="none", teacher_dim=None, latent_head=True)).to(device).train()
    frozen = FrozenEncoder(student.encoder).to(device)
    stages.append(("Stage 2 step (frozen encoder on the full clip, 2 multi-block views through "
                   "student encoder + predictor)", student, Stage2Objective(frozen),
                   lambda m, v, g, clock: stage2_forward(m, frozen, v, g, clock)))

    for title, model, objective, replay in stages:
        with torch.no_grad(), autocast(device):  # same seed, same weights: the replay must match
            lib_loss = float(objective(model, {"video": video}, gen())[0])
            replay_loss = float(replay(model, video, gen(), PartClock(device)))
        optimizer = make_optimizer(model)
        clock = PartClock(device)
        g = gen()
        library = []
        for i in range(args.warmup + args.iters):  # replay and library steps take turns
            with autocast(device):
                loss = replay(model, video, g, clock)
            with clock("backward + optimizer"):
                backward_and_step(loss, model, optimizer)
            clock.end_step(keep=i >= args.warmup)

            sync(device)
            t0 = time.perf_counter()
            with autocast(device):
                loss, _ = objective(model, {"video": video}, g)
            backward_and_step(loss, model, optimizer)
            sync(device)
            if i >= args.warmup:
                library.append(time.perf_counter() - t0)
        reference = statistics.median(library)
        report_parts(title, clock, reference, (lib_loss, replay_loss))


# ----------------------------------------------------------------------- 3. MFU (CUDA)
def mfu_cells(flops: float, seconds: float, datasheet: float | None, measured: float) -> list[str]:
    """ms, TFLOP/step, TFLOP/s, MFU vs the datasheet peak, MFU vs the measured matmul peak."""
    vs_sheet = mfu(flops, seconds, datasheet)
    return [fmt_ms(seconds), f"{flops / 1e12:.2f}", f"{flops / seconds / 1e12:.1f}",
            "n/a" if vs_sheet is None else f"{100 * vs_sheet:.1f}%", f"{100 * mfu(flops, seconds, measured):.1f}%"]


def bench_mfu(args, device: torch.device, presets=("base", "large"), frames: int = 16, img_size: int = 224) -> None:
    """bf16 MFU of the encoder alone and of the full Stage-1 step (teacher, encoder, alignment,
    predictor, diffusion decoder), FLOPs counted by FlopCounterMode over one real step."""
    name = torch.cuda.get_device_name(device)
    measured = matmul_peak_flops(device)
    datasheet = datasheet_peak_flops(name)
    sheet = "unknown GPU: add it to DATASHEET_BF16_TFLOPS" if datasheet is None else f"{datasheet / 1e12:.1f}"
    print(f"{name}: datasheet dense bf16 peak {sheet} TFLOP/s; measured bf16 matmul peak (8192^3, best of 3) "
          f"{measured / 1e12:.1f} TFLOP/s")
    print(f"{frames}x{img_size}x{img_size}, batch {args.mfu_batch}, bf16 autocast, AdamW, median of {args.iters}")
    rows = []
    for preset in presets:
        torch.manual_seed(args.seed)
        enc = timm.create_model(encoder_name(preset), img_size=img_size, num_frames=frames).to(device).train()
        opt = torch.optim.AdamW(enc.parameters(), lr=1e-4, fused=True)
        grid = enc.token_grid((frames, img_size, img_size))
        n_patch = grid[0] * grid[1] * grid[2]
        video = torch.randn(args.mfu_batch, 3, frames, img_size, img_size, device=device)
        mask = random_tube_mask(args.mfu_batch, grid, args.mask_ratio, device=device)
        n_vis = int((~mask[0]).sum())
        for label, m in (("encoder, all tokens", None), (f"encoder, {n_vis / n_patch:.0%} visible", mask)):
            step = lambda: train_step(lambda: enc.forward_features(video, m), opt, device)  # noqa: E731
            try:
                flops = count_flops(step, device)
                t = time_interleaved({"s": step}, args.warmup, args.iters, device)["s"]
            except torch.cuda.OutOfMemoryError:
                rows.append([f"{preset}, {label}", "OOM", "", "", "", ""])
                torch.cuda.empty_cache()
                continue
            rows.append([f"{preset}, {label}", *mfu_cells(flops, t, datasheet, measured)])
        del enc, opt
        # The full Stage-1 step through the library objective, as Trainer runs it.
        teacher = ImageTeacher(args.teacher_mfu, img_size=img_size).to(device)
        model = build_epd(EPDConfig(encoder=encoder_name(preset), img_size=img_size, num_frames=frames,
                                    teacher_dim=teacher.embed_dim)).to(device).train()
        objective, opt = Stage1Objective(Stage1Loss(), teacher), make_optimizer(model)
        gen = torch.Generator(device=device).manual_seed(args.seed)

        def stage1_step():
            with autocast(device):
                loss, _ = objective(model, {"video": video}, gen)
            backward_and_step(loss, model, opt)
        try:
            flops = count_flops(stage1_step, device)
            t = time_interleaved({"s": stage1_step}, args.warmup, args.iters, device)["s"]
            rows.append([f"{preset}, full Stage-1 step", *mfu_cells(flops, t, datasheet, measured)])
        except torch.cuda.OutOfMemoryError:
            rows.append([f"{preset}, full Stage-1 step", "OOM", "", "", "", ""])
        del model, teacher, opt
        torch.cuda.empty_cache()
    print_table(["what", "ms/step", "TFLOP/step", "TFLOP/s", "MFU (datasheet)", "MFU (measured matmul)"], rows)


# ---------------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="encoder preset ivnext_vit_<preset>_patch14_224")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--img-size", type=int, default=112, help="multiple of the patch size 14")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=10, help="timed iterations per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--mask-ratio", type=float, default=0.75, help="masked fraction (Stage 1 and the masked encoder)")
    p.add_argument("--teacher", default="vit_tiny_patch16_224", help="timm image teacher architecture (random weights)")
    p.add_argument("--teacher-img-size", type=int, default=112)
    defaults = EPDConfig()
    p.add_argument("--predictor-dim", type=int, default=defaults.predictor_dim)
    p.add_argument("--predictor-depth", type=int, default=defaults.predictor_depth)
    p.add_argument("--predictor-heads", type=int, default=defaults.predictor_heads)
    p.add_argument("--decoder-width", type=int, default=defaults.decoder_width)
    p.add_argument("--decoder-depth", type=int, default=defaults.decoder_depth)
    p.add_argument("--mfu", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 MFU of Base/Large at 16x224 (default: on when CUDA is available; CUDA only)")
    p.add_argument("--mfu-batch", type=int, default=4)
    p.add_argument("--teacher-mfu", default="vit_base_patch16_siglip_224",
                   help="image teacher of the full Stage-1 step in the MFU table (random weights)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    print(f"torch {torch.__version__}, timm {timm.__version__}, device {device}, {precision}, "
          f"{torch.get_num_threads()} CPU threads")

    print("\n== 1. Encoder training step: ours (VideoViT) vs timm VisionTransformer, same tokens ==")
    bench_encoder(args, device)

    print("\n== 2. Per-part time of one pretraining step ==")
    bench_stages(args, device)

    print("\n== 3. bf16 model-FLOPs utilisation, Base and Large, 16 x 224 px ==")
    run_mfu = device.type == "cuda" if args.mfu is None else args.mfu
    if not run_mfu:
        print("skipped (" + ("--no-mfu" if device.type == "cuda" else "no CUDA device: bf16 MFU is a GPU number") + ")")
    elif device.type != "cuda":
        print("skipped (--mfu needs a CUDA device)")
    else:
        bench_mfu(args, device)


if __name__ == "__main__":
    main()
