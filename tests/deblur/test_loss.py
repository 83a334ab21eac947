"""The training losses (`run_model.py --phase train --loss mse|psnr`, deblur.train.multiscale_loss):
the PSNR loss is minus the mean PSNR over samples, floored at 8-bit rounding, and it weights each
sample's gradient by 1 / its MSE where the paper's MSE weights them all alike."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

import run_model
from deblur import checkpoint as ckpt
from deblur.config import TrainConfig
from deblur.testing import datasets as deblur_data
from deblur.train import PSNR_LOSS_EPS, check_settings, multiscale_loss, train
from common.fileio import InputError
from common.metrics import psnr


def _pair(seed=0):
    """Two 16x16 samples: one nearly sharp (error 1/255), one blurred (error 20/255)."""
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.2, 0.8, (2, 16, 16, 3)).astype(np.float32)
    err = np.stack([rng.choice([-1, 1], (16, 16, 3)) * (1 / 255),
                    rng.normal(0, 20 / 255, (16, 16, 3))]).astype(np.float32)
    return target + err, target


def test_psnr_loss_is_minus_the_mean_psnr_over_samples():
    out, target = _pair()
    total, per_scale = multiscale_loss([tf.constant(out)], tf.constant(target), "psnr")
    metric = [psnr(o, t, data_range=1.0) for o, t in zip(out.astype(np.float64), target)]
    mse = ((out.astype(np.float64) - target) ** 2).mean(axis=(1, 2, 3))
    assert float(total) == pytest.approx(np.mean(10 * np.log10(mse + PSNR_LOSS_EPS)), rel=1e-5)
    # the validation metric's PSNR but for the floor, which lowers the 48 dB sample by 0.35 dB
    assert 0 < float(total) + np.mean(metric) < 0.2
    assert len(per_scale) == 1 and float(per_scale[0]) == pytest.approx(float(total))


def test_psnr_loss_of_an_exact_output_is_the_8bit_rounding_floor():
    _, target = _pair()
    total, _ = multiscale_loss([tf.constant(target)], tf.constant(target), "psnr")
    assert float(total) == pytest.approx(10 * math.log10(PSNR_LOSS_EPS), abs=1e-3)
    assert -float(total) == pytest.approx(10 * math.log10(12 * 255 ** 2), abs=1e-3)  # 58.9 dB


def test_mse_loss_is_the_papers():
    out, target = _pair()
    total, _ = multiscale_loss([tf.constant(out)], tf.constant(target))
    assert float(total) == pytest.approx(float(np.mean((out - target) ** 2)), rel=1e-5)


def _grad_norms(kind):
    out, target = _pair()
    x = tf.Variable(out)
    with tf.GradientTape() as tape:
        loss, _ = multiscale_loss([x], tf.constant(target), kind)
    g = tape.gradient(loss, x).numpy()
    mse = ((out - target) ** 2).mean(axis=(1, 2, 3))
    return np.sqrt((g ** 2).sum(axis=(1, 2, 3))), mse


def test_psnr_loss_weights_each_sample_by_one_over_its_mse():
    g_mse, mse = _grad_norms("mse")
    g_psnr, _ = _grad_norms("psnr")
    # Under MSE the blurred sample's gradient is 20x the near-sharp one's (its error is 20x);
    # under the PSNR loss each sample's is divided by its MSE (+ floor): the near-sharp one wins.
    assert g_mse[1] / g_mse[0] == pytest.approx(20, rel=0.1)
    ratio = (g_psnr / g_mse) / (g_psnr / g_mse)[1]
    assert ratio[0] == pytest.approx((mse[1] + PSNR_LOSS_EPS) / (mse[0] + PSNR_LOSS_EPS), rel=1e-3)
    assert g_psnr[0] > g_psnr[1]


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="loss kind"):
        multiscale_loss([tf.zeros((1, 4, 4, 3))], tf.zeros((1, 4, 4, 3)), "l1")
    with pytest.raises(InputError, match="--loss"):
        check_settings(TrainConfig(loss="l1", patch_size=32))
    with pytest.raises(SystemExit):
        run_model.parse_args(["--phase", "train", "--loss", "l1"])


def test_training_with_the_psnr_loss_records_it_and_raises_the_psnr(tmp_path):
    deblur_data.build(tmp_path, n=5, h=48, w=56)
    cfg = TrainConfig.from_args(run_model.parse_args([
        "--phase", "train", "--datalist", str(tmp_path / "datalist_train.txt"),
        "--data_root", str(tmp_path / "dataset"), "--train_root", str(tmp_path / "training_set"),
        "--checkpoint_dir", str(tmp_path / "ckpt"), "--channels", "4", "--gpu", "-1",
        "--batch_size", "2", "--patch_size", "36", "--max_steps", "30", "--lr", "2e-3",
        "--face", "none", "--loss", "psnr", "--save_every", "30"]))
    res = train(cfg)
    losses = np.asarray(res["losses"])
    # minus a PSNR in dB: lower (a higher PSNR) at the end
    assert losses[-5:].mean() < losses[:5].mean() - 1.0 and losses[-1] < -5, losses
    meta = ckpt.read_native(tmp_path / "ckpt" / "deblur-30.npz")[2]
    assert meta["train_config"]["loss"] == "psnr"
