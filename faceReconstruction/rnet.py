"""R-Net: the authors' TF1 frozen graph that regresses face coefficients from aligned crops.

Corresponds to `load_graph` and the session loop of `demo.py` in the original code
(rwenqi/3Dfacedeblurring; the graph itself is Deep3DFaceReconstruction's R-Net, e.g.
`faceReconstruction/network/model_deblurfinetune_iter40000.pb`). The graph is imported with
`tf.compat.v1` exactly as the original does (a placeholder mapped onto its input tensor), so
the `.pb` files users have run unchanged on TensorFlow 2.

Input: aligned crops (`align.align_crop`), fed as float32 (B, 224, 224, 3) **BGR** in 0-255.
Output: (B, 239) or (B, 257) coefficients (80 id, 64 exp, 80 tex, 3 angles, 9 or 27 SH,
3 translation).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.fileio import COEFF_SIZES, InputError

DEFAULT_INPUT = "input_imgs:0"
DEFAULT_OUTPUT = "coeff:0"


class RNet:
    """A loaded frozen graph; call it on RGB uint8 crops (it converts them to BGR floats)."""

    def __init__(self, pb_path, input_name=DEFAULT_INPUT, output_name=DEFAULT_OUTPUT, batch_size=16):
        import tensorflow as tf
        from google.protobuf.message import DecodeError

        pb_path = Path(pb_path)
        if not pb_path.is_file():
            raise InputError(f"{pb_path}: R-Net frozen graph (.pb) not found")
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(pb_path.read_bytes())
        except DecodeError as e:
            raise InputError(f"{pb_path}: not a TensorFlow frozen graph ({e})") from None
        self.batch_size = int(batch_size)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self._images = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3], name="input_imgs")
            try:
                tf.import_graph_def(graph_def, name="resnet", input_map={input_name: self._images})
                self._coeff = self.graph.get_tensor_by_name(f"resnet/{output_name}")
            except (ValueError, KeyError) as e:
                raise InputError(
                    f"{pb_path}: cannot connect input '{input_name}' / output '{output_name}' "
                    f"(use --rnet_input / --rnet_output to name the graph's tensors): {e}"
                ) from None
        self.session = tf.compat.v1.Session(graph=self.graph)

    def __call__(self, crops_rgb) -> np.ndarray:
        """crops_rgb uint8 (B, 224, 224, 3) RGB -> float64 (B, 239|257) coefficients."""
        crops = np.asarray(crops_rgb)
        if crops.ndim != 4 or crops.shape[1:] != (224, 224, 3):
            raise ValueError(f"RNet: expected (B, 224, 224, 3) crops, got {crops.shape}")
        out = []
        for i in range(0, len(crops), self.batch_size):
            bgr = crops[i:i + self.batch_size, :, :, ::-1].astype(np.float32)
            out.append(np.asarray(self.session.run(self._coeff, {self._images: bgr}), np.float64))
        coeff = np.concatenate(out, 0).reshape(len(crops), -1) if out else np.zeros((0, 239))
        if coeff.shape[1] not in COEFF_SIZES:
            raise InputError(f"R-Net output has {coeff.shape[1]} values per image, expected 239 or 257")
        return coeff

    def close(self):
        self.session.close()
