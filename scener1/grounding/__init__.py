"""Image grounding: the described object's 2D box on a frame of the span (Scene-R1 stage 2), chosen by
agreement between several frames."""

from .core import (
    ImageCandidate,
    ImageResult,
    ImageSettings,
    agreement_matrix,
    box_centre_point,
    choose_by_agreement,
    depth_valid_fraction,
    shrink_to_pixels,
    spread,
)
from .grounder import ImageGrounder

__all__ = [
    "ImageCandidate",
    "ImageGrounder",
    "ImageResult",
    "ImageSettings",
    "agreement_matrix",
    "box_centre_point",
    "choose_by_agreement",
    "depth_valid_fraction",
    "shrink_to_pixels",
    "spread",
]
