"""From depth (and masks) to 3D points: fusion of posed RGB-D frames."""

from .fusion import fuse_frames, read_ply, voxel_down_sample, write_ply

__all__ = ["fuse_frames", "read_ply", "voxel_down_sample", "write_ply"]
