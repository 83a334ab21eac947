"""The network's configuration: one frozen object built once and passed to the network, the
checkpoints, training, testing and the video command (keras-hub's get_config/from_config idea).

It imports no Keras, so command lines take their `--face`/`--model` choices from here without
loading TensorFlow.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

# --face: the 3D facial priors the network sees (paper Sec. 3.2): the rendered face
# concatenated after the first conv, the 80 identity coefficients at the bottleneck, both, none.
FACE_MODES = ("both", "render", "coeff", "none")
# --model: colour network, the gray one (per channel), or the conv-LSTM bottleneck (SRN-Deblur).
MODELS = ("color", "gray", "lstm")
# Settings added after the first checkpoints were written, with the value those checkpoints
# (and every TF1 checkpoint of the authors) imply: the paper's network.
LEGACY_DEFAULTS = {"residual": False}


@dataclass(frozen=True)
class NetworkConfig:
    """What fixes the network's variables and outputs (run_model.py's network flags).

    face      FACE_MODES; the facial priors used
    levels    scales of the scale-recurrent network (>= 1); weights are shared across scales,
              but a network trained with 3 gives other results with 1
    model     MODELS
    n_frames  blurry frames per input, odd (5: t-2..t+2)
    channels  base width (channels, 2x, 4x); 32 is the original network
    residual  this project's departure from the paper: each scale outputs the blurry centre
              frame plus a learned correction (deblur/network.py)

    Raises ValueError for values no network can be built with.
    """

    face: str = "both"
    levels: int = 1
    model: str = "color"
    n_frames: int = 5
    channels: int = 32
    residual: bool = False

    def __post_init__(self):
        if self.face not in FACE_MODES:
            raise ValueError(f"face must be one of {FACE_MODES}, got {self.face!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.levels < 1 or self.n_frames < 1 or self.n_frames % 2 == 0:
            raise ValueError(f"need levels >= 1 and an odd n_frames, got {self.levels}, {self.n_frames}")
        if self.channels < 1:
            raise ValueError(f"channels must be at least 1, got {self.channels}")
        object.__setattr__(self, "residual", bool(self.residual))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict:
        """JSON-ready dict (the `config` entry of a native checkpoint's meta)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "NetworkConfig":
        """From `to_dict` output or a checkpoint's stored config. Keys older checkpoints lack
        take their LEGACY_DEFAULTS value; other missing keys raise ValueError; unknown keys are
        ignored (they are not network settings)."""
        d = {**LEGACY_DEFAULTS, **{k: d[k] for k in cls.keys() if k in d}}
        missing = [k for k in cls.keys() if k not in d]
        if missing:
            raise ValueError(f"network config lacks {', '.join(missing)}")
        return cls(**d)

    @classmethod
    def from_args(cls, args) -> "NetworkConfig":
        """From parsed command-line flags (run_model.py's network group)."""
        return cls(**{k: getattr(args, k) for k in cls.keys() if hasattr(args, k)})

    def replace(self, **changes) -> "NetworkConfig":
        return dataclasses.replace(self, **changes)

    def differences(self, other: "NetworkConfig") -> list[str]:
        """Names of the settings that differ from `other`."""
        return [k for k in self.keys() if getattr(self, k) != getattr(other, k)]


def add_face_flag(parser, default: str | None = "both", help_default: str | None = None) -> None:
    """The --face flag of every command that picks the network's facial prior."""
    parser.add_argument("--face", choices=FACE_MODES, default=default,
                        help="3D facial priors: render + identity coefficients (both), one of them, or "
                             f"none (default {help_default or default})")
