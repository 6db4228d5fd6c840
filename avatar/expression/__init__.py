"""Speech -> expressions: the generalized audio-to-blendshape network (NVP's Audio2ExpressionNet)."""
from avatar.expression.checkpoint import (DEFAULT_DIR, Audio2Expression, load_audio2expr,
                                          save_audio2expr)
from avatar.expression.model import Audio2ExpressionNet, NetConfig

__all__ = ["Audio2Expression", "Audio2ExpressionNet", "NetConfig", "load_audio2expr",
           "save_audio2expr", "DEFAULT_DIR"]
