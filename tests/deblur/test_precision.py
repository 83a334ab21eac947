"""--precision fp32|bf16|fp16|auto: detection, fallback, dtypes, and training under bf16."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from deblur.testing import datasets as deblur_data
import run_model
from deblur import checkpoint as ckpt
from deblur.network import build_generator
from deblur.precision import (cpu_has_bf16, precision_note, precision_scope, resolve_precision,
                              set_precision)

AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile avx512_bf16\n"
OLD = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"


@pytest.fixture(autouse=True)
def _reset_policy():
    yield
    keras.config.set_dtype_policy("float32")


def test_cpu_flag_detection():
    assert cpu_has_bf16(AMX) is True
    assert cpu_has_bf16(OLD) is False
    assert cpu_has_bf16("flags : avx512_bf16\n") is True


def test_bf16_asked_for_on_a_cpu_without_it_is_pointed_out():
    # emulated bf16 made a training step 16x slower than fp32 on an AVX2-only VM
    line = precision_note("bf16", OLD, on_gpu=False)
    assert line and "--precision bf16" in line and "auto or fp32" in line
    assert "--precision fp16" in precision_note("fp16", OLD, on_gpu=False)
    assert precision_note("bf16", AMX, on_gpu=False) is None
    assert precision_note("bf16", OLD, on_gpu=True) is None
    for p in ("fp32", "auto"):
        assert precision_note(p, OLD, on_gpu=False) is None


def test_run_model_prints_the_note_before_training(monkeypatch, capsys):
    monkeypatch.setattr("deblur.precision.cpu_has_bf16", lambda cpuinfo=None: False)
    monkeypatch.setattr("deblur.precision.gpu_kind", lambda: None)
    monkeypatch.setattr("deblur.train.train", lambda cfg: None)
    # a missing datalist is not reached: train is replaced, only the note is under test
    assert run_model.main(["--phase", "train", "--precision", "bf16", "--datalist", "nope.txt"]) == 0
    assert "NOTE: --precision bf16 on a CPU without" in capsys.readouterr().out


def test_auto_falls_back_to_fp32_without_bf16_hardware(monkeypatch):
    monkeypatch.setattr("deblur.precision.gpu_kind", lambda: None)
    monkeypatch.setattr("deblur.precision.cpu_has_bf16", lambda cpuinfo=None: False)
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setattr("deblur.precision.cpu_has_bf16", lambda cpuinfo=None: True)
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr("deblur.precision.gpu_kind", lambda: "fp16")
    assert resolve_precision("auto") == "fp16"


def test_environment_switch_forces_detection_off(monkeypatch):
    monkeypatch.setenv("FACEDEBLUR_NO_BF16", "1")
    monkeypatch.setattr("deblur.precision.gpu_kind", lambda: None)
    assert cpu_has_bf16(AMX) is False
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"  # an explicit choice is kept
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_keeps_fp32_weights_and_outputs(precision):
    keras.utils.set_random_seed(0)
    ref_net = build_generator("both", 2, "color", 5, channels=4)
    arrays = ckpt.network_arrays(ref_net)
    assert set_precision(precision) == precision
    net = build_generator("both", 2, "color", 5, channels=4)
    ckpt.assign_by_name(net, arrays, "fp32 weights")
    assert all(v.dtype == "float32" for v in net.weights)
    rng = np.random.default_rng(0)
    x = {"blur": rng.random((1, 64, 64, 15), dtype=np.float32),
         "render": rng.random((1, 64, 64, 3), dtype=np.float32),
         "coeff": rng.normal(size=(1, 9, 9)).astype(np.float32)}
    out = net(x)
    ref = ref_net(x)
    for o, r in zip(out, ref):
        assert keras.backend.standardize_dtype(o.dtype) == "float32"
        err = np.abs(np.asarray(o) - np.asarray(r)).max()
        # Low precision changes the numbers a little, not the result.
        assert 0 < err < 0.1 * (np.abs(np.asarray(r)).max() + 1e-3)


def test_training_in_bf16_saves_fp32_checkpoints(tmp_path):
    deblur_data.build(tmp_path, n=4, h=40, w=40)
    args = run_model.parse_args([
        "--phase", "train", "--datalist", str(tmp_path / "datalist_train.txt"),
        "--data_root", str(tmp_path / "dataset"), "--train_root", str(tmp_path / "training_set"),
        "--checkpoint_dir", str(tmp_path / "ck"), "--channels", "4", "--batch_size", "2",
        "--patch_size", "36", "--max_steps", "3", "--precision", "bf16", "--gpu", "-1"])
    from deblur.config import TrainConfig
    from deblur.train import train

    res = train(TrainConfig.from_args(args))
    assert res["precision"] == "bf16" and np.all(np.isfinite(res["losses"]))
    w, _, meta = ckpt.read_native(tmp_path / "ck" / "deblur-3.npz")
    assert all(v.dtype == np.float32 for v in w.values())
    # ...and they load into an fp32 network.
    keras.config.set_dtype_policy("float32")
    net, cfg, step = ckpt.load_generator(tmp_path / "ck")
    assert step == 3 and net.weights[0].dtype == "float32"


def test_precision_scope_builds_in_low_precision_and_restores_the_global_policy():
    """A network built in the scope keeps bf16; what is built after it (MTCNN in the video
    command's next run in this process) is float32 again, also after an error in the block."""
    keras.config.set_dtype_policy("float32")
    with precision_scope("bf16") as p:
        assert p == "bf16" and keras.config.dtype_policy().name == "mixed_bfloat16"
        net = build_generator("none", 1, "color", 5, channels=4)
    assert keras.config.dtype_policy().name == "float32"
    assert {layer.compute_dtype for layer in net.layers if layer.weights} == {"bfloat16"}
    out = net({"blur": np.zeros((1, 32, 32, 15), np.float32)})
    assert keras.backend.standardize_dtype(out[0].dtype) == "float32"
    assert keras.layers.Dense(2).compute_dtype == "float32"
    with pytest.raises(RuntimeError):
        with precision_scope("fp16"):
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float32"


def test_gpu_asked_for_but_not_there_is_said(monkeypatch, tmp_path, capsys):
    import tensorflow as tf

    from deblur.precision import gpu_note

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert gpu_note("-1") is None
    assert "--gpu 3: TensorFlow sees no GPU" in gpu_note("3") and "running on the CPU" in gpu_note("3")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    assert gpu_note("0") is None
    # The command says it (select_gpu sets CUDA_VISIBLE_DEVICES: restored by monkeypatch).
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert run_model.main(["--phase", "export", "--checkpoint", str(ckpt.SHIPPED_CHECKPOINT),
                           "--output_path", str(tmp_path / "x.npz"), "--gpu", "3"]) == 0
    assert "NOTE: --gpu 3: TensorFlow sees no GPU" in capsys.readouterr().out
