"""Training and testing through run_model.py: loss decreases, exact resume, NaN stop, data
validation errors, test phase at any frame size."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from deblur.testing import datasets as deblur_data
import run_model
from deblur import checkpoint as ckpt
from deblur.config import TrainConfig
from deblur.train import TrainingDiverged, train
from common.fileio import InputError, read_image, write_image

TINY = ["--channels", "4", "--gpu", "-1", "--batch_size", "2"]


def _args(tmp_path, *extra):
    """The TrainConfig of run_model.py's training flags on the tiny data set."""
    return TrainConfig.from_args(run_model.parse_args([
        "--phase", "train", "--datalist", str(tmp_path / "datalist_train.txt"),
        "--data_root", str(tmp_path / "dataset"), "--train_root", str(tmp_path / "training_set"),
        "--checkpoint_dir", str(tmp_path / "ckpt"), *TINY, *extra]))


def test_short_training_on_vd001_decreases_the_loss(tmp_path, vd001):
    deblur_data.build(tmp_path, video="vd001", source=vd001, n=8)
    res = train(_args(tmp_path, "--patch_size", "72", "--max_steps", "40", "--lr", "1e-3",
                      "--channels", "8", "--levels", "2", "--save_every", "40"))
    losses = np.asarray(res["losses"])
    assert len(losses) == 40 and np.all(np.isfinite(losses))
    assert losses[-8:].mean() < 0.5 * losses[:8].mean(), losses
    assert (tmp_path / "ckpt" / "deblur-40.npz").is_file()
    assert list((tmp_path / "ckpt").glob("events.out.tfevents*")), "no TensorBoard events"


def test_resume_is_exact(tmp_path):
    deblur_data.build(tmp_path, n=5, h=48, w=56)
    common = ["--patch_size", "36", "--max_steps", "6", "--face", "both", "--lr", "1e-3"]
    full = train(_args(tmp_path, *common, "--checkpoint_dir", str(tmp_path / "a")))
    first = train(_args(tmp_path, *common, "--checkpoint_dir", str(tmp_path / "b"),
                        "--stop_after", "3"))
    assert first["step"] == 3
    second = train(_args(tmp_path, *common, "--checkpoint_dir", str(tmp_path / "b")))
    assert second["step"] == 6 and len(second["losses"]) == 3
    np.testing.assert_allclose(full["losses"][3:], second["losses"], rtol=1e-4)
    wa, oa, ma = ckpt.read_native(tmp_path / "a" / "deblur-6.npz")
    wb, ob, mb = ckpt.read_native(tmp_path / "b" / "deblur-6.npz")
    assert ma["step"] == mb["step"] == 6
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], atol=1e-5, err_msg=k)
    # The optimizer's iteration count, hence the decayed learning rate, continued.
    iters = [k for k in ob if k.endswith("iteration") or k.endswith("iterations")]
    assert iters and int(ob[iters[0]]) == 6
    # Finished runs do nothing when started again.
    again = train(_args(tmp_path, *common, "--checkpoint_dir", str(tmp_path / "b")))
    assert again["losses"] == []


def _blur_batches(tmp_path, dropout, step=3, batch=6):
    from deblur.data import make_dataset, parse_datalist
    samples = parse_datalist(tmp_path / "datalist_train.txt", tmp_path / "dataset",
                             tmp_path / "training_set", face="none")
    ds = make_dataset(samples, np.zeros((len(samples), 9, 9, 1), np.float32), face="none",
                      model="color", batch_size=batch, patch_size=24, seed=5, start_step=step,
                      end_step=step + 1, neighbour_dropout=dropout)
    x, y = next(iter(ds))
    return x["blur"].numpy(), y.numpy()


def _replaced(blur):
    """Per sample and neighbour (t-2, t-1, t+1, t+2): is it a copy of the centre frame?"""
    return np.array([[np.array_equal(b[..., 3 * k:3 * k + 3], b[..., 6:9]) for k in (0, 1, 3, 4)]
                     for b in blur])


def test_neighbour_dropout_replaces_neighbours_by_the_centre_frame(tmp_path):
    # Interior frames only (the list's first and last two rows repeat an end frame by design).
    deblur_data.build(tmp_path, n=12, h=40, w=40)
    rows = (tmp_path / "datalist_train.txt").read_text().splitlines()[2:-2]
    (tmp_path / "datalist_train.txt").write_text("\n".join(rows) + "\n")
    off, y0 = _blur_batches(tmp_path, 0.0)
    assert not _replaced(off).any()
    full, y1 = _blur_batches(tmp_path, 1.0)
    assert _replaced(full).all()
    # Same samples and crops: only the neighbours change, never the centre or the target.
    np.testing.assert_array_equal(full[..., 6:9], off[..., 6:9])
    np.testing.assert_array_equal(y1, y0)
    half, _ = _blur_batches(tmp_path, 0.5, batch=8)
    share = _replaced(half).mean()
    assert 0.1 < share < 0.9, share
    # A batch is a function of (seed, step): a resumed run draws the same replacements.
    again, _ = _blur_batches(tmp_path, 0.5, batch=8)
    np.testing.assert_array_equal(again, half)


def _render_batches(tmp_path, mirror, batch=8):
    from deblur.data import make_dataset, parse_datalist
    samples = parse_datalist(tmp_path / "datalist_train.txt", tmp_path / "dataset",
                             tmp_path / "training_set", face="render")
    ds = make_dataset(samples, np.zeros((len(samples), 9, 9, 1), np.float32), face="render",
                      model="color", batch_size=batch, patch_size=24, seed=5, start_step=3,
                      end_step=4, mirror=mirror)
    x, y = next(iter(ds))
    return x["blur"].numpy(), x["render"].numpy(), y.numpy()


def test_mirror_flips_frames_target_and_render_together(tmp_path):
    """--mirror P: a sample's crop (every frame, the target, the render) is mirrored left-right
    with probability P, from (seed, step, slot) like the crop: the same samples and windows."""
    deblur_data.build(tmp_path, n=6, h=40, w=40)
    off = _render_batches(tmp_path, 0.0)
    on = _render_batches(tmp_path, 1.0)
    for a, b in zip(off, on):
        np.testing.assert_array_equal(b, a[:, :, ::-1])
    half = _render_batches(tmp_path, 0.5)
    flipped = [np.array_equal(half[2][i], on[2][i]) and not np.array_equal(half[2][i], off[2][i])
               for i in range(len(off[2]))]
    kept = [np.array_equal(half[2][i], off[2][i]) for i in range(len(off[2]))]
    assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < len(flipped)
    for i, f in enumerate(flipped):  # inputs and render follow their target
        ref = on if f else off
        np.testing.assert_array_equal(half[0][i], ref[0][i])
        np.testing.assert_array_equal(half[1][i], ref[1][i])
    again = _render_batches(tmp_path, 0.5)
    for a, b in zip(again, half):
        np.testing.assert_array_equal(a, b)
    # the training command takes it and stores it with the run's settings
    res = train(_args(tmp_path, "--patch_size", "36", "--max_steps", "2", "--mirror", "0.5",
                      "--checkpoint_dir", str(tmp_path / "m")))
    assert res["step"] == 2
    assert ckpt.read_native(tmp_path / "m" / "deblur-2.npz")[2]["train_config"]["mirror"] == 0.5


@pytest.mark.parametrize("flag", ["--neighbour_dropout", "--mirror"])
@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_dropout_and_mirror_are_probabilities(tmp_path, flag, value):
    deblur_data.build(tmp_path, n=3, h=40, w=40)
    with pytest.raises(InputError, match=f"{flag} must be a probability"):
        train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1", flag, value))


def test_learning_rate_schedule_is_the_originals():
    from deblur.train import make_optimizer

    _, schedule = make_optimizer(1e-4, 1000, "fp32")
    for step in (0, 1, 500, 999, 1000, 1500):
        expected = 1e-4 * (1 - min(step, 1000) / 1000) ** 0.3
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_lr_power_reaches_the_schedule():
    # --lr_power 1 (a fine-tuning run) decays linearly: half the rate at half the steps.
    from deblur.config import TrainConfig
    from deblur.train import make_optimizer
    from run_model import parse_args

    cfg = TrainConfig.from_args(parse_args(["--lr_power", "1", "--lr", "2e-4"]))
    assert cfg.lr_power == 1.0
    _, schedule = make_optimizer(cfg.lr, 1000, "fp32", cfg.lr_power)
    assert float(schedule(500)) == pytest.approx(1e-4, rel=1e-5)
    assert float(schedule(900)) == pytest.approx(2e-5, rel=1e-5)


def test_nan_stops_without_saving_a_ruined_checkpoint(tmp_path):
    # lr 1e12: the first update already ruins the weights (their loss is NaN), so the
    # checkpoint of step 1 must not be written. (The full situation, with good checkpoints
    # before the divergence and the recovery, is in test_research_cases.py.)
    deblur_data.build(tmp_path, n=4, h=40, w=40)
    with pytest.raises(TrainingDiverged, match="not saved. No checkpoint was saved"):
        train(_args(tmp_path, "--patch_size", "36", "--max_steps", "200", "--lr", "1e12",
                    "--save_every", "1"))
    assert not ckpt.native_checkpoints(tmp_path / "ckpt")


def test_missing_files_are_listed_before_training(tmp_path, capsys):
    deblur_data.build(tmp_path, n=4, h=40, w=40)
    (tmp_path / "training_set" / "clip" / "blur_1" / "00002.png").unlink()
    (tmp_path / "dataset" / "clip" / "sharp" / "00003.png").write_bytes(b"not a png")
    (tmp_path / "training_set" / "clip" / "face" / "00004.txt").write_text("1 2 3\n")
    args = ["--phase", "train", "--datalist", str(tmp_path / "datalist_train.txt"),
            "--data_root", str(tmp_path / "dataset"), "--train_root",
            str(tmp_path / "training_set"), "--checkpoint_dir", str(tmp_path / "ckpt"),
            "--patch_size", "36", *TINY]
    assert run_model.main(args) == 2
    err = capsys.readouterr().err
    assert "3 problem(s)" in err and "00002.png (missing)" in err
    assert "00003.png (unreadable" in err and "expected 239 or 257 coefficients" in err
    assert "Traceback" not in err
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").glob("*.npz"))


def test_malformed_datalist_line(tmp_path):
    (tmp_path / "list.txt").write_text("a/sharp/1.png a/blur_-2/1.png\n")
    with pytest.raises(InputError, match="line 1: 2 columns, expected 8"):
        train(TrainConfig.from_args(run_model.parse_args(["--datalist", str(tmp_path / "list.txt")])))


def test_test_phase_keeps_any_frame_size(tmp_path):
    # A checkpoint trained for two steps; then frames of 341x321 and a portrait 200x260.
    deblur_data.build(tmp_path, n=3, h=72, w=72)
    train(_args(tmp_path, "--patch_size", "72", "--max_steps", "2", "--levels", "2"))
    root = tmp_path / "testing_set"
    for video, (h, w) in (("land", (321, 341)), ("portrait", (260, 200))):
        deblur_data.build(tmp_path / "t", video=video, n=2, h=h, w=w)
        src = tmp_path / "t" / "training_set" / video
        for sub in src.iterdir():
            for f in sub.iterdir():
                dst = root / video / sub.name / f.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(f.read_bytes())
    out = tmp_path / "res"
    rc = run_model.main(["--phase", "test", "--input_path", str(root), "--output_path", str(out),
                         "--checkpoint", str(tmp_path / "ckpt"), "--levels", "2", "--gpu", "-1",
                         "--gt_path", str(tmp_path / "t" / "dataset")])
    assert rc == 0
    assert read_image(out / "land" / "00001.png").shape == (321, 341, 3)
    assert read_image(out / "portrait" / "00002.png").shape == (260, 200, 3)
    assert (out / "metrics.json").is_file()


def test_test_phase_reports_a_corrupt_frame(tmp_path, capsys):
    deblur_data.build(tmp_path, n=3, h=40, w=40)
    train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1"))
    (tmp_path / "training_set" / "clip" / "blur_0" / "00002.png").write_bytes(b"\x89PNG broken")
    rc = run_model.main(["--phase", "test", "--input_path", str(tmp_path / "training_set"),
                         "--output_path", str(tmp_path / "res"),
                         "--checkpoint", str(tmp_path / "ckpt"), "--gpu", "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and "blur_0/00002.png: cannot read image" in err
    assert not (tmp_path / "res" / "clip" / "00002.png").exists()


def test_checkpoint_flag_mismatch_is_reported(tmp_path):
    deblur_data.build(tmp_path, n=3, h=40, w=40)
    train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1"))
    net, cfg, step = ckpt.load_generator(tmp_path / "ckpt", {"face": "none", "levels": 1})
    assert cfg.face == "both" and step == 1  # the stored configuration wins
    weights, _, _ = ckpt.read_native(tmp_path / "ckpt" / "deblur-1.npz")
    weights.pop("g_net/enc1_1/biases")
    weights["g_net/extra/weights"] = np.zeros(3)
    from deblur.network import build_generator

    with pytest.raises(ckpt.CheckpointMismatch, match=r"missing \(1\).*enc1_1/biases"):
        ckpt.assign_by_name(build_generator("both", 1, channels=4), weights, "x")
    with pytest.raises(ckpt.CheckpointMismatch, match="shape mismatch"):
        ckpt.assign_by_name(build_generator("none", 1, channels=4),
                            ckpt.read_native(tmp_path / "ckpt" / "deblur-1.npz")[0], "x")


def test_residual_setting_travels_with_the_checkpoint(tmp_path, capsys):
    """--residual is stored in the checkpoint and wins at test time; checkpoints written before
    the setting existed load as the paper's network; resuming with the other setting is refused."""
    import json

    deblur_data.build(tmp_path, n=3, h=40, w=40)
    train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1", "--face", "none",
                "--residual"))
    net, cfg, _ = ckpt.load_generator(tmp_path / "ckpt", {"face": "none", "levels": 1})
    assert cfg.residual is True and net.deblur_config == cfg
    with pytest.raises(InputError, match="residual"):
        train(_args(tmp_path, "--patch_size", "36", "--max_steps", "2", "--face", "none"))
    # A checkpoint without the key (written before it existed) is the paper's network.
    src = tmp_path / "ckpt" / "deblur-1.npz"
    old = tmp_path / "old" / "deblur-1.npz"
    old.parent.mkdir()
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["config"]["residual"]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(old, **arrays)
    net, cfg, _ = ckpt.load_generator(old, {"face": "none", "levels": 1, "residual": True},
                                      verbose=False)
    assert cfg.residual is False and net.deblur_config == cfg


def _outputs(net, x, render=None, coeff=None):
    feed = {"blur": x}
    if render is not None:
        feed["render"], feed["coeff"] = render, coeff
    out = net(feed)
    return np.asarray(out[-1] if isinstance(out, (list, tuple)) else out)


def test_a_model_without_the_prior_widens_into_one_with_it():
    """assign_by_name(widen=...): at 0 the --face both network computes exactly what the
    --face none network did (the prior is ignored); at the default its new channels are small
    and non-zero (trainable) and the output stays close; anything but the prior's channels
    differing is refused."""
    from deblur.network import build_generator

    src = build_generator("none", 1, channels=4)
    rng = np.random.default_rng(0)
    x = rng.random((1, 40, 40, 15), dtype=np.float32)
    render = rng.random((1, 40, 40, 3), dtype=np.float32)
    coeff = rng.normal(size=(1, 9, 9)).astype(np.float32)
    # Random non-zero weights everywhere (a fresh network's zero biases would hide a bad copy).
    arrays = {k: rng.normal(scale=0.03, size=v.shape).astype(np.float32)
              for k, v in ckpt.network_arrays(src).items()}
    ckpt.assign_by_name(src, arrays, "src")
    ref = _outputs(src, x)

    exact = build_generator("both", 1, channels=4)
    widened = ckpt.assign_by_name(exact, arrays, "src", widen=0.0)
    assert "g_net/enc1_2/conv1/weights" in widened and "g_net/dec3_1/conv1/weights" in widened
    assert "g_net/enc1_1/weights" not in widened  # the first conv sees only the frames
    np.testing.assert_allclose(_outputs(exact, x, render, coeff), ref, rtol=1e-4, atol=1e-4)

    def deviation(new_scale):
        keras.utils.set_random_seed(1)  # the same fresh initialisation for each scale
        net = build_generator("both", 1, channels=4)
        ckpt.assign_by_name(net, arrays, "src", widen=new_scale)
        w = ckpt.network_arrays(net)["g_net/enc1_2/conv1/weights"]  # [5, 5, 4+3, 4+3]
        np.testing.assert_array_equal(w[:, :, :4, :4], arrays["g_net/enc1_2/conv1/weights"])
        assert np.all(np.abs(w[:, :, 4:, :]).max(axis=(0, 1, 3)) > 0)  # the render's inputs learn
        return np.abs(_outputs(net, x, render, coeff) - ref).mean()

    # The default keeps the widened network near the source: its deviation is about a tenth of
    # that of fully fresh new channels (the deviation is close to linear in the scale).
    near, fresh = deviation(ckpt.WIDEN_SCALE), deviation(1.0)
    assert 0 < near < 0.3 * fresh, (near, fresh)

    with pytest.raises(ckpt.CheckpointMismatch, match="larger than the network"):
        ckpt.assign_by_name(build_generator("none", 1, channels=4),
                            ckpt.network_arrays(exact), "both ckpt", widen=ckpt.WIDEN_SCALE)
    with pytest.raises(ckpt.CheckpointMismatch, match="larger than the network"):
        ckpt.assign_by_name(build_generator("both", 1, channels=3), arrays, "wider ckpt",
                            widen=ckpt.WIDEN_SCALE)


def test_init_checkpoint_without_the_prior_starts_a_run_with_it(tmp_path, capsys):
    """--init_checkpoint of a --face none run starts --face both training (the ablation's
    continuation): the shared weights are the source's, and the run trains."""
    deblur_data.build(tmp_path, n=3, h=40, w=40)
    train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1", "--face", "none",
                "--checkpoint_dir", str(tmp_path / "none")))
    src = tmp_path / "none" / "deblur-1.npz"
    res = train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1", "--face", "both",
                      "--lr", "0", "--init_checkpoint", str(src),
                      "--checkpoint_dir", str(tmp_path / "both")))
    assert res["step"] == 1 and np.isfinite(res["losses"]).all()
    assert "arrays widened for --face both" in capsys.readouterr().out
    a = ckpt.read_native(src)[0]
    b = ckpt.read_native(tmp_path / "both" / "deblur-1.npz")[0]
    np.testing.assert_allclose(b["g_net/enc1_1/weights"], a["g_net/enc1_1/weights"], atol=1e-6)
    np.testing.assert_allclose(b["g_net/enc1_2/conv1/weights"][:, :, :4, :4],
                               a["g_net/enc1_2/conv1/weights"], atol=1e-6)
    # Other settings must agree (the prior's channels are the only ones added by name).
    with pytest.raises(InputError, match="model=color"):
        train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1", "--face", "both",
                    "--model", "gray", "--init_checkpoint", str(src),
                    "--checkpoint_dir", str(tmp_path / "gray")))


def test_init_checkpoint_of_a_narrower_network_is_widened_to_the_same_function(tmp_path, capsys):
    """--init_checkpoint of a --channels 4 run starts a --channels 8 run (Net2WiderNet): at lr 0
    the wider network computes the narrow one's outputs; with --face both as well, the prior's
    channels are added after the widening."""
    deblur_data.build(tmp_path, n=3, h=40, w=40)
    train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1", "--face", "none",
                "--checkpoint_dir", str(tmp_path / "narrow")))
    src = tmp_path / "narrow" / "deblur-1.npz"
    res = train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1", "--face", "none",
                      "--channels", "8", "--lr", "0", "--init_checkpoint", str(src),
                      "--checkpoint_dir", str(tmp_path / "wide")))
    assert res["step"] == 1
    assert "widened to 8" in capsys.readouterr().out
    narrow = ckpt.load_generator(src, verbose=False)[0]
    wide, wide_cfg, _ = ckpt.load_generator(tmp_path / "wide" / "deblur-1.npz", verbose=False)
    assert wide_cfg.channels == 8 and wide.count_params() > 3 * narrow.count_params()
    x = np.random.default_rng(0).random((1, 40, 40, 15), dtype=np.float32)
    a, b = np.asarray(narrow({"blur": x})[-1]), np.asarray(wide({"blur": x})[-1])
    assert np.abs(a - x[..., 6:9]).mean() > 0.01  # the source is not the identity
    np.testing.assert_allclose(b, a, atol=1e-4)
    train(_args(tmp_path, "--patch_size", "36", "--max_steps", "1", "--face", "both",
                "--channels", "8", "--init_checkpoint", str(src),
                "--checkpoint_dir", str(tmp_path / "wide_both")))
    out = capsys.readouterr().out
    assert "widened to 8" in out and "arrays widened for --face both" in out
