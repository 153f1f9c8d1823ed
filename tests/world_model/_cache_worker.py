"""One rank of the 2-process latent-cache test (spawned by torch.multiprocessing; gloo on the CPU)."""
import json
import os
from pathlib import Path


def build_on_rank(rank: int, world: int, port: int, epd_ckpt: str, source: str, episodes: list, cache: str, out: str):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    seen = {}
    init = dist.init_process_group

    def recording_init(*args, **kwargs):  # the timeout the launcher's code asks for
        seen["timeout_s"] = kwargs["timeout"].total_seconds() if kwargs.get("timeout") else None
        return init(*args, **kwargs)

    dist.init_process_group = recording_init
    from ivnext_world.launch.distributed import init_distributed
    from ivnext_world.pretrain.run import load_epd, resolve_checkpoint
    from ivnext_world.world_model.latent_cache import build_latent_cache

    info = init_distributed("gloo")
    try:
        epd, _ = load_epd(epd_ckpt)
        weights = resolve_checkpoint(epd_ckpt) / "model.safetensors"
        build_latent_cache(epd.encoder, weights, source, episodes, Path(cache), 56, chunk_frames=5)
        Path(out).write_text(json.dumps({"rank": info.rank, "world_size": info.world_size, "backend": info.backend, **seen}))
    finally:
        dist.destroy_process_group()
