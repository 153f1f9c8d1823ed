"""Small shared utilities."""
from .io import atomic_write_bytes, atomic_write_text, fsync_dir

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_dir"]
