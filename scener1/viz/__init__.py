"""Looking at results: Open3D viewer and offscreen renders of a result folder, 2D overlays."""

from .overlay import draw_overlay
from .view import Layer, SceneView, load_result_view, render_png, show, vulkan_available

__all__ = ["Layer", "SceneView", "draw_overlay", "load_result_view", "render_png", "show", "vulkan_available"]
