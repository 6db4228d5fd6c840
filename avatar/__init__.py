"""Offline talking-head avatar toolkit (Neural Voice Puppetry on Deferred Neural Rendering)."""
from avatar.errors import AvatarError

__version__ = "0.1.0"
__all__ = ["AvatarError", "__version__"]
