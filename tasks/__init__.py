"""Restoration tasks (registered in ``nasdip_deap.registry.TASKS``); third-party tasks arrive through
the entry-point group ``nasdip_deap.tasks``."""
from .base import Option, Task
from .denoise import Denoise
from .inpaint import Inpaint
from .super_resolution import SuperResolution

__all__ = ["Option", "Task", "Denoise", "Inpaint", "SuperResolution"]
