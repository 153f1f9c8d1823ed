"""Policies learned in latent space: behaviour cloning on frozen encoder latents (and a pixel baseline)."""
from .bc import BCConfig, BCDataset, BCNet, BCPolicy, load_bc_policy, pool_latents, train_bc

__all__ = ["BCConfig", "BCDataset", "BCNet", "BCPolicy", "load_bc_policy", "pool_latents", "train_bc"]
