#!/usr/bin/env bash
# Stage-1 pretraining, ViT-Base at paper scale, on 4 nodes x 8 GPUs (32 ranks, nccl, FSDP off).
# Set DATA, OUT, TEACHER (shared filesystem) and ACCOUNT; extra arguments are passed on, e.g. --dry-run.
# Run it again with the same OUT to resume after a failure or cancellation.
# Warm-up: 5% of STEPS (5000 of 100000: ~4.7 epochs of the paper's 1.1M clips at global batch 1024),
# as MAE/VideoMAE-style recipes warm up ~5% of the run. The peak lr is 1e-3 x 1024/256 = 4e-3 for a
# model trained from scratch; configs/pretrain.yaml's 30 steps (sized for its 300-step CPU demo)
# would reach it before AdamW's second moments (beta2 0.98, a ~50-step memory) have settled.
# Memory (measured by --dry-run, bench/bench_memory.py): 24.5 GiB per H100 with grad checkpointing; 86 GiB
# without, which does not fit an 80 GB H100.
set -euo pipefail
STEPS="${STEPS:-100000}"
WARMUP="${WARMUP:-$((STEPS / 20))}"
: "${DATA:?path of the training manifest/LeRobot folder}" "${OUT:?run folder on a shared filesystem}"
: "${TEACHER:?local SigLIP weights (safetensors)}" "${ACCOUNT:?SLURM account}"
exec "$(dirname "${BASH_SOURCE[0]}")/launch.sh" pretrain launcher=h100_4x8 \
    launcher.account="$ACCOUNT" launcher.partition="${PARTITION:-gpu}" launcher.time="${TIME:-2-00:00:00}" \
    stage=1 data.source="$DATA" out="$OUT" \
    model.encoder=ivnext_vit_base_patch14_224 model.img_size=224 model.num_frames=16 \
    model.predictor_dim=1024 model.predictor_depth=5 model.predictor_heads=16 \
    model.decoder_width=1536 model.decoder_depth=6 model.drop_path=0.1 model.grad_checkpointing=true \
    teacher.model=vit_base_patch16_siglip_224 teacher.checkpoint="$TEACHER" \
    loop.steps="$STEPS" loop.warmup_steps="$WARMUP" loop.batch_size=32 loop.num_workers=8 loop.ckpt_every=1000 "$@"
