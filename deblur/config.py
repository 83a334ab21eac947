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
        """From parsed command-line flags (run_model.py's network group); impossible values
        raise InputError naming the flag (bad input, exit status 2)."""
        from common.errors import InputError

        try:
            return cls(**{k: getattr(args, k) for k in cls.keys() if hasattr(args, k)})
        except ValueError as e:
            raise InputError(f"network flags: {e}") from None

    def replace(self, **changes) -> "NetworkConfig":
        return dataclasses.replace(self, **changes)

    def differences(self, other: "NetworkConfig") -> list[str]:
        """Names of the settings that differ from `other`."""
        return [k for k in self.keys() if getattr(self, k) != getattr(other, k)]


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings (run_model.py's training group; `deblur.train.train`'s input).

    network         NetworkConfig of the network trained
    datalist        8-column training list; data_root / train_root: roots of its sharp column
                    and of its blurry, coefficient and render columns
    batch_size, patch_size   samples per step, square crop side in px
    epoch, max_steps         steps = epoch * len(datalist) // batch_size unless max_steps > 0
                             (also the length of the learning-rate decay)
    lr, lr_power    initial learning rate and the power of its polynomial decay to 0 (0.3 as
                    SRN-Deblur; 1.0 is a linear decay, for a short fine-tuning run)
    time_limit      seconds (0: none); stop_after: steps of this run (0: to the end)
    checkpoint_dir  where to save/resume (None: checkpoints/<face>_<levels>_<patch>)
    init_checkpoint weights to start from instead of random ones
    save_every, keep, log_every   checkpoint every N steps, keep the last K, scalars every N
    seed            seed of the initial weights, data order and crops
    neighbour_dropout   probability that each neighbour frame of a training sample is replaced
                    by the centre frame (deblur.data.make_dataset; not in the paper, 0 = off)
    mirror          probability that a training sample is mirrored left-right (every frame,
                    the target and the render; deblur.data.make_dataset; not in the paper, 0 = off)
    loss            "mse" (the paper's) or "psnr" (minus each sample's PSNR, batch mean; not in
                    the paper; deblur.train.multiscale_loss)
    val_every, val_datalist, val_input_path, val_gt_path, val_frames   validation (see run_model.py)
    precision       fp32 / bf16 / fp16 / auto; xla: compile the training step

    Stored in every checkpoint's meta (`train_config`), so a run can be read back and resumed
    with the settings it was made with.
    """

    network: NetworkConfig = NetworkConfig()
    datalist: str = "./datalist_train.txt"
    data_root: str = "./dataset"
    train_root: str = "./training_set"
    batch_size: int = 16
    patch_size: int = 256
    epoch: int = 4000
    lr: float = 1e-4
    lr_power: float = 0.3
    max_steps: int = 0
    time_limit: float = 0.0
    stop_after: int = 0
    checkpoint_dir: str | None = None
    init_checkpoint: str | None = None
    save_every: int = 1000
    keep: int = 5
    log_every: int = 20
    seed: int = 0
    neighbour_dropout: float = 0.0
    mirror: float = 0.0
    loss: str = "mse"
    val_every: int = 0
    val_datalist: str | None = None
    val_input_path: str | None = None
    val_gt_path: str | None = None
    val_frames: int = 0
    precision: str = "fp32"
    xla: bool = False

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The training settings (without `network`)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "network")

    def to_dict(self) -> dict:
        """JSON-ready: the training settings plus `network` (NetworkConfig.to_dict)."""
        return {"network": self.network.to_dict(), **{k: _plain(getattr(self, k)) for k in self.keys()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrainConfig":
        """From `to_dict` output; missing training keys take their defaults, unknown keys are
        ignored (an older checkpoint's `args` has the command's other flags too)."""
        net = d.get("network")
        net = NetworkConfig.from_dict(net) if net is not None else NetworkConfig.from_dict(d)
        return cls(network=net, **{k: d[k] for k in cls.keys() if k in d})

    @classmethod
    def from_args(cls, args) -> "TrainConfig":
        """From parsed run_model.py flags (paths as given, as strings)."""
        vals = {k: _plain(getattr(args, k)) for k in cls.keys() if hasattr(args, k)}
        return cls(network=NetworkConfig.from_args(args), **vals)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _plain(v):
    """A setting as JSON stores it: numbers, strings, booleans and None as they are, anything
    else (a Path) as its string."""
    return v if v is None or isinstance(v, (int, float, str, bool)) else str(v)


def add_face_flag(parser, default: str | None = "both", help_default: str | None = None) -> None:
    """The --face flag of every command that picks the network's facial prior."""
    parser.add_argument("--face", choices=FACE_MODES, default=default,
                        help="3D facial priors: render + identity coefficients (both), one of them, or "
                             f"none (default {help_default or default})")
