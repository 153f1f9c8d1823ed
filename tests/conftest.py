import os

# Headless rendering for every test process (envs/ also sets this default on import).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
