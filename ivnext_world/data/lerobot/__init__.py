"""LeRobot dataset layout: write v2.1 (parallel-safe), read v2.1 and v3.0, convert v2.1 -> v3.0."""
from .convert import convert_v21_to_v30
from .layout import depth_key, extrinsics_key, ground_truth_key, intrinsics_key
from .read import LeRobotDataset
from .write import LeRobotWriter

__all__ = ["LeRobotWriter", "LeRobotDataset", "convert_v21_to_v30", "depth_key", "intrinsics_key", "extrinsics_key",
           "ground_truth_key"]
