"""Does the Stage-1 diffusion decoder read its condition, and how good is it on the path it trains on?

On held-out clips of the pretraining length, with Stage 1's own masks, the predictor's outputs at the
masked tokens condition the decoder exactly as in training. For each masked token the script scores the
decoder's one-step estimate of the clean pixels from a noised patch at several timesteps (t = 999: from
pure noise, the decoder's best guess from the condition alone), the same estimate with the conditions
shuffled across tokens (does it use them?), and two estimates that never look at the latents: the
per-position mean over the clips and the global mean patch. Errors are MSEs in ImageNet-normalised
pixels (the decoder's targets), lower is better.

    python scripts/stage1_decoder_diagnostic.py --checkpoint outputs/demo/stage1 --data outputs/demo/data \\
        --episodes 80-99
"""
from __future__ import annotations

import argparse
import json

def _range(text: str) -> list[int]:
    a, b = (int(x) for x in text.split("-"))
    return list(range(a, b + 1))

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a Stage-1 run folder or checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--episodes", type=_range, required=True, help="held-out episodes, e.g. 80-99")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--timesteps", type=int, nargs="+", default=[999, 700, 400, 100])
    ap.add_argument("--mask-ratio", type=float, default=None, help="default: Stage1Loss's (the official 0.75)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from ivnext_world.data import TrajectoryDataset
    from ivnext_world.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from ivnext_world.masking import motion_guided_mask, random_tube_mask
    from ivnext_world.models.patch_embed import patchify
    from ivnext_world.pretrain.run import load_epd, resolve_checkpoint
    from ivnext_world.pretrain.stage1 import Stage1Loss, token_motion

    torch.manual_seed(args.seed)
    model = load_epd(resolve_checkpoint(args.checkpoint))[0].eval()
    enc, dec = model.encoder, model.decoder
    if dec is None or not hasattr(dec, "alphas_cumprod"):
        raise SystemExit(f"{args.checkpoint} has no diffusion decoder (a Stage-2 or alignment-only run)")
    size, frames = model.cfg.img_size, model.cfg.num_frames
    ds = TrajectoryDataset(args.data, window=frames, stride=frames, episodes=args.episodes, on_error="raise")
    pick = torch.linspace(0, len(ds) - 1, min(args.clips, len(ds))).round().long().tolist()
    clips = torch.stack([ds[i]["frames"] for i in pick])  # (B, T, 3, H, W) in [0, 1]
    b = clips.shape[0]
    x = F.interpolate(clips.flatten(0, 1), size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    video = ((x - mean) / std).unflatten(0, (b, frames)).transpose(1, 2)  # (B, 3, T, S, S)
    grid = enc.token_grid(video.shape[2:])
    pixels = patchify(video, enc.patch_size, enc.tubelet_size, order=dec.pixel_order)  # (B, N, P)

    def x0_estimate(cond, target, t_value, gen):
        noise = torch.randn(target.shape, generator=gen)
        t = torch.full((target.shape[0],), t_value, dtype=torch.long)
        x_t = dec.add_noise(target, noise, t)  # the forward process the decoder was trained on
        ab = dec.alphas_cumprod[t].unsqueeze(-1)
        out = dec.net(x_t, t, cond).float()[:, :dec.patch_dim]
        if dec.prediction_type == "v_prediction":
            return ab.sqrt() * x_t - (1 - ab).sqrt() * out
        return (x_t - (1 - ab).sqrt() * out) / ab.sqrt()

    ratio = Stage1Loss().mask_ratio if args.mask_ratio is None else args.mask_ratio
    with torch.no_grad():
        for kind in ("motion", "tube"):
            g = torch.Generator().manual_seed(args.seed)
            if kind == "motion":
                mask = motion_guided_mask(token_motion(video, grid, enc.tubelet_size), ratio, generator=g)
            else:
                mask = random_tube_mask(b, grid, ratio, generator=g)
            n_vis = int((~mask[0]).sum())
            final = enc.forward_intermediates(video, mask, indices=1, num_visible=n_vis)[0]
            cond, target = model.predictor(final, mask, grid).patches[mask], pixels[mask]

            def mse(est):
                return round(float((est - target).square().mean()), 4)

            row = {"per-position mean": mse(pixels.mean(0, keepdim=True).expand_as(pixels)[mask]),
                   "global mean patch": mse(target.mean(0, keepdim=True).expand_as(target))}
            for t in args.timesteps:
                row[f"x0 estimate at t={t}"] = mse(x0_estimate(cond, target, t, torch.Generator().manual_seed(1)))
            perm = torch.randperm(cond.shape[0], generator=torch.Generator().manual_seed(2))
            row[f"x0 estimate at t={args.timesteps[0]}, conditions shuffled"] = mse(
                x0_estimate(cond[perm], target, args.timesteps[0], torch.Generator().manual_seed(1)))
            print(json.dumps({kind: row}), flush=True)

if __name__ == "__main__":
    main()
