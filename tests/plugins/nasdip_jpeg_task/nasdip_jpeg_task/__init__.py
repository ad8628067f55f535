"""An example third-party task for nasdip-deap: JPEG artefact removal.

The observation is the clean image saved as a JPEG at ``--jpeg-quality`` and read back; the forward
model is the identity (the network output is compared with the JPEG image directly, and DIP's prior
fits the image before it fits the block artefacts). Registered only through the entry point
``nasdip_deap.tasks: jpeg = nasdip_jpeg_task:JpegArtifacts`` in setup.cfg. Its option is declared as
data (``OPTIONS``): nasdip builds the ``--jpeg-quality`` flag and checks its range.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from nasdip_deap.image_io import pil_to_tensor, to_uint8
from nasdip_deap.params import Param
from nasdip_deap.tasks import Option, Task


def jpeg_roundtrip(img: torch.Tensor, quality: int) -> torch.Tensor:
    """(C, H, W) in [0, 1] -> the same image after JPEG compression at ``quality`` (1-95)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(to_uint8(img))).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        decoded.load()
        return pil_to_tensor(decoded)


class JpegArtifacts(Task):
    """Remove JPEG compression artefacts (forward model: identity)."""

    name = "jpeg"
    summary = "remove JPEG compression artefacts (example plugin; forward model: identity)"

    OPTIONS = (Option("jpeg_quality", 10, "JPEG quality used to compress a clean image", Param(int, low=1, high=95)),)

    @classmethod
    def from_clean(cls, clean: torch.Tensor, options: dict, seed: int) -> "JpegArtifacts":
        quality = int(options.get("jpeg_quality", 10))
        return cls(jpeg_roundtrip(clean, quality), clean=clean, options={"jpeg_quality": quality})
