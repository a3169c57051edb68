"""Image intake: untrusted bytes to checked RGB images (Pillow), and the device JPEG path for GPUs."""

from .images import ImageLimits, load_image

__all__ = ["ImageLimits", "load_image"]
