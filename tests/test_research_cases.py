"""The research-side situations of ../shared/cases/README.md (issue 13), each rebuilt in a few
seconds from ../shared/data/vd001 (frames resized to 128x112, --channels 8, a handful of steps,
CPU) and checked against what a researcher expects:

1. a clip named `my clip.mp4` through preprocess, then training on its datalist;
2. --levels 3 --patch_size 64 --face both (identity patch cut by the bottleneck);
3. a truncated newest checkpoint, then resume / test;
4. --lr 1 until NaN, the advised recovery, testing with the "last good" checkpoint;
5. a --levels 3 checkpoint tested without --levels;
6. run_model.py --gt_path vs evaluate.py on clips of 6 and 2 frames;
7. outputs written under umask 002 in a shared group folder;
and the optional validation during training, which reports the test phase's numbers.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys

import numpy as np
import pytest

from deblur.testing import datasets as deblur_data
import run_model
from common import metrics
from deblur import checkpoint as ckpt
from common.fileio import InputError, read_image

SIZE = (112, 128)  # (h, w) of the vd001 frames used here
NET = ["--channels", "8", "--batch_size", "2", "--gpu", "-1"]


def _train_argv(root, ck, *extra):
    return ["--phase", "train", "--datalist", str(root / "datalist_train.txt"),
            "--data_root", str(root / "dataset"), "--train_root", str(root / "training_set"),
            "--checkpoint_dir", str(ck), *NET, *extra]


def _train_config(argv):
    """run_model.py's training flags -> the TrainConfig train() takes."""
    from deblur.config import TrainConfig

    return TrainConfig.from_args(run_model.parse_args(argv))


def _test_argv(input_path, out, checkpoint, *extra):
    return ["--phase", "test", "--input_path", str(input_path), "--output_path", str(out),
            "--checkpoint", str(checkpoint), "--gpu", "-1", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """4 vd001 frames, face both; two training steps saved as deblur-1.npz and deblur-2.npz."""
    from tests.helpers import shared_path

    vd001 = shared_path("vd001")
    root = tmp_path_factory.mktemp("trained")
    deblur_data.build(root, video="vd001", source=vd001, n=4, resize=SIZE)
    from deblur.train import train

    res = train(_train_config(_train_argv(root, root / "ck", "--patch_size", "64",
                                                 "--max_steps", "2", "--save_every", "1",
                                                 "--lr", "1e-4")))
    assert [p.name for p in ckpt.native_checkpoints(root / "ck")] == ["deblur-1.npz", "deblur-2.npz"]
    return root, res["losses"]


def _copy_checkpoints(trained_root, dst):
    shutil.copytree(trained_root / "ck", dst, ignore=shutil.ignore_patterns("events.*"))
    return dst


# ----------------------------------------------------------------------------- 1. clip names
def _write_mp4(path, frames, fps=25):
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264",
                                         quality=9, macro_block_size=16)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()


def test_clip_name_with_a_space_gives_a_datalist_training_reads(tmp_path, vd001, capsys):
    from PIL import Image

    from preprocess import cli as pre

    frames = [np.asarray(Image.fromarray(read_image(vd001 / "sharp" / f"{i:05d}.png"))
                         .resize(SIZE[::-1], Image.BICUBIC)) for i in range(1, 7)]
    video = tmp_path / "my clip.mp4"
    _write_mp4(video, frames)
    ds, ts, dl = tmp_path / "ds", tmp_path / "ts", tmp_path / "dl.txt"
    rc = pre.main(["all", "--video", str(video), "--dataset", str(ds), "--out", str(ts),
                   "--datalist", str(dl), "--align", "none", "--n_avg", "3"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "'my clip'" in err and "'my_clip'" in err  # made safe, and said so
    lines = dl.read_text().splitlines()
    assert len(lines) == 6 and all(len(line.split()) == 8 for line in lines)
    assert lines[0].split()[0] == "my_clip/sharp/00001.png"
    rc = run_model.main(["--phase", "train", "--datalist", str(dl), "--data_root", str(ds),
                         "--train_root", str(ts), "--face", "none", "--patch_size", "64",
                         "--max_steps", "2", "--checkpoint_dir", str(tmp_path / "ck"), *NET])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "ck" / "deblur-2.npz").is_file()

    # An explicit name that the datalist cannot carry is refused, naming the flag.
    rc = pre.main(["frames", "--video", str(video), "--dataset", str(tmp_path / "ds2"),
                   "--name", "my clip"])
    err = capsys.readouterr().err
    assert rc == 2 and "--name 'my clip'" in err and "whitespace" in err
    assert not (tmp_path / "ds2" / "my clip").exists()

    # Two sources that would share one clip name are refused before anything is written.
    shutil.copy(video, tmp_path / "my_clip.mp4")
    rc = pre.main(["frames", "--video", str(video), str(tmp_path / "my_clip.mp4"),
                   "--dataset", str(tmp_path / "ds3")])
    err = capsys.readouterr().err
    assert rc == 2 and "would both become clip 'my_clip'" in err
    assert not (tmp_path / "ds3").exists()

    # A clip folder made by hand with such a name: refused before anything is aligned.
    shutil.copytree(ds / "my_clip", ds / "your clip")
    rc = pre.main(["align", "--dataset", str(ds), "--out", str(ts), "--datalist",
                   str(tmp_path / "dl2.txt"), "--align", "none"])
    err = capsys.readouterr().err
    assert rc == 2 and "your clip" in err and "rename" in err and "Traceback" not in err
    assert not (ts / "your clip").exists() and not (tmp_path / "dl2.txt").exists()


def test_datalist_reader_names_line_and_column(tmp_path):
    from deblur.data import parse_datalist

    cols = [f"my clip/{c}/00001.png" for c in ("sharp", "blur_-2", "blur_-1", "blur_0",
                                                "blur_1", "blur_2")]
    good = " ".join(c.replace("my clip", "clip") for c in cols) + " clip/face/00001.txt clip/render/00001.png"
    bad = " ".join(cols) + " my clip/face/00001.txt my clip/render/00001.png"
    (tmp_path / "dl.txt").write_text(good + "\n" + bad + "\n")
    with pytest.raises(InputError) as e:
        parse_datalist(tmp_path / "dl.txt")
    msg = str(e.value)
    assert "line 2: 16 columns, expected 8" in msg
    assert "column 1 (sharp) is 'my'" in msg and "space" in msg
    # n_frames vs the datalist's columns: refused naming the flag, either way round.
    (tmp_path / "dl.txt").write_text(good + "\n" + good + "\n")
    with pytest.raises(InputError, match=r"--n_frames 5 datalist .*--n_frames is 9.*Pass --n_frames 5"):
        parse_datalist(tmp_path / "dl.txt", n_frames=9)
    nine = " ".join([good.split()[0]] + [f"clip/blur_{o}/00001.png" for o in range(-4, 5)]
                    + good.split()[-2:])
    (tmp_path / "dl9.txt").write_text(nine + "\n")
    with pytest.raises(InputError, match=r"every line has 12 columns.*Pass --n_frames 9"):
        parse_datalist(tmp_path / "dl9.txt", n_frames=5, face="none")
    assert len(parse_datalist(tmp_path / "dl9.txt", n_frames=9)[0].blur) == 9


# ----------------------------------------------------------------------------- 2. settings
@pytest.mark.parametrize("flags,needle", [
    (["--levels", "3", "--patch_size", "64", "--face", "both"],
     "--patch_size 64 is below the minimum 144 for --levels 3 with --face both"),
    (["--levels", "1", "--patch_size", "32", "--face", "coeff"], "below the minimum 36"),
    (["--levels", "2", "--patch_size", "70", "--face", "none"],
     "--patch_size 70 is not a multiple of 8"),
])
def test_impossible_patch_size_is_refused_before_any_work(tmp_path, capsys, flags, needle):
    # The datalist does not even exist: the settings are checked before any file is read.
    rc = run_model.main(["--phase", "train", "--datalist", str(tmp_path / "absent.txt"),
                         "--checkpoint_dir", str(tmp_path / "ck"), "--gpu", "-1", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "absent.txt" not in err
    assert not (tmp_path / "ck").exists()


def test_workable_settings_pass_the_check():
    from deblur.train import check_settings

    for flags in (["--levels", "3", "--patch_size", "144", "--face", "both"],
                  ["--levels", "3", "--patch_size", "64", "--face", "none"],
                  ["--levels", "3", "--patch_size", "64", "--face", "render"],
                  []):  # the defaults
        check_settings(_train_config(["--phase", "train", *flags]))


# ----------------------------------------------------------------------------- 3. damaged files
def test_truncated_newest_checkpoint(tmp_path, trained, capsys):
    root, losses = trained
    ck = _copy_checkpoints(root, tmp_path / "ck")
    newest = ck / "deblur-2.npz"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a copy killed half-way / a full disk

    for target in (ck, newest):
        rc = run_model.main(_test_argv(root / "training_set", tmp_path / "res", target))
        err = capsys.readouterr().err
        assert rc == 2 and "deblur-2.npz: damaged checkpoint" in err and "Traceback" not in err
    rc = run_model.main(_test_argv(root / "training_set", tmp_path / "res", ck))
    assert f"the newest sound checkpoint there is {ck / 'deblur-1.npz'} (pass it as --checkpoint)" \
        in capsys.readouterr().err
    assert not (tmp_path / "res").exists()

    from deblur.train import train

    res = train(_train_config(_train_argv(root, ck, "--patch_size", "64", "--max_steps", "3",
                                                 "--save_every", "1", "--lr", "1e-4")))
    out = capsys.readouterr().out
    assert "deblur-2.npz: damaged checkpoint" in out and "moved aside to deblur-2.npz.damaged" in out
    assert "falling back to deblur-1.npz" in out and f"Resuming from {ck / 'deblur-1.npz'} at step 1" in out
    assert res["step"] == 3 and (ck / "deblur-2.npz.damaged").is_file()  # nothing lost
    # The resumed run repeats step 2 exactly (same data, same weights and Adam state).
    np.testing.assert_allclose(res["losses"][0], losses[1], rtol=1e-4)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbled"])
def test_damaged_checkpoint_is_named(tmp_path, trained, damage):
    root, _ = trained
    path = tmp_path / "deblur-2.npz"
    data = bytearray((root / "ck" / "deblur-2.npz").read_bytes())
    if damage == "empty":
        data = b""
    elif damage == "truncated":
        data = data[:-100]
    else:
        data[len(data) // 2: len(data) // 2 + 64] = b"\0" * 64  # CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointDamaged, match=r"deblur-2\.npz: damaged checkpoint"):
        ckpt.read_native(path)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, trained, monkeypatch):
    root, _ = trained
    ck = _copy_checkpoints(root, tmp_path / "ck")
    before = (ck / "deblur-2.npz").read_bytes()
    w, _, meta = ckpt.read_native(ck / "deblur-2.npz")
    from deblur.config import NetworkConfig
    from deblur.network import build_network

    net = build_network(NetworkConfig.from_dict(meta["config"]))
    ckpt.assign_by_name(net, w, "x")

    def dying_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", dying_savez)
    with pytest.raises(OSError):
        ckpt.save_native(ck / "deblur-2.npz", net, 2)
    assert (ck / "deblur-2.npz").read_bytes() == before
    assert sorted(p.name for p in ck.iterdir()) == ["deblur-1.npz", "deblur-2.npz"]


# ----------------------------------------------------------------------------- 4. divergence
def _all_finite(path) -> bool:
    w, o, meta = ckpt.read_native(path)
    return (not ckpt.nonfinite_arrays(w) and not ckpt.nonfinite_arrays(o)
            and all(np.isfinite(meta.get(k, 0.0)) for k in ("loss", "checked_loss")))


def test_divergence_then_the_advised_recovery(tmp_path, trained, capsys):
    root, _ = trained
    ck = _copy_checkpoints(root, tmp_path / "ck")
    rc = run_model.main(_train_argv(root, ck, "--patch_size", "64", "--max_steps", "40",
                                    "--save_every", "1", "--lr", "1"))
    err = capsys.readouterr().err
    assert rc == 2 and "diverged" in err and "Traceback" not in err
    named = re.search(r"Last good checkpoint: (\S+\.npz)", err)
    assert named, err
    named = named.group(1)
    assert all(_all_finite(p) for p in ckpt.native_checkpoints(ck))
    assert str(ckpt.native_checkpoints(ck)[-1]) == named

    # The advised recovery: a lower --lr, the same folder. It resumes from the named
    # checkpoint without skipping it and trains on with finite losses.
    step = int(re.search(r"deblur-(\d+)\.npz", named).group(1))
    from deblur.train import train

    res = train(_train_config(_train_argv(root, ck, "--patch_size", "64", "--max_steps",
                                                 str(step + 2), "--lr", "1e-4")))
    out = capsys.readouterr().out
    assert f"Resuming from {named} at step {step}" in out and "warning" not in out
    assert len(res["losses"]) == 2 and np.all(np.isfinite(res["losses"]))

    # Testing with it gives real (if barely trained) frames, not black ones.
    rc = run_model.main(_test_argv(root / "training_set", tmp_path / "res", named))
    assert rc == 0, capsys.readouterr().err
    img = read_image(tmp_path / "res" / "vd001" / "00001.png")
    assert img.max() > 50 and img.std() > 5


def _write_like(src, dst, step, scale=1.0, nan=False):
    """A checkpoint as the code before issue 13 wrote them (same .npz layout, meta without
    loss/checked_loss) and could save them after a bad step: `src`'s arrays with the weights
    scaled (finite, but overflowing to inf in the forward pass) or a NaN in one weight."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["step"] = step
    meta.pop("loss", None)
    meta.pop("checked_loss", None)
    for k in arrays:
        if k.startswith("weights/"):
            arrays[k] = (arrays[k] * scale).astype(np.float32)
    if nan:
        k = "weights/g_net/enc1_1/weights"
        arrays[k] = arrays[k].copy()
        arrays[k].flat[0] = np.nan
    arrays["meta"] = np.array(json.dumps(meta))
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


def test_ruined_checkpoints_stop_testing_and_are_skipped_on_resume(tmp_path, trained, capsys):
    root, _ = trained
    ck = _copy_checkpoints(root, tmp_path / "ck")
    _write_like(ck / "deblur-2.npz", ck / "deblur-2.npz", 2)  # as written before issue 13
    _write_like(ck / "deblur-2.npz", ck / "deblur-3.npz", 3, scale=1e4)
    res = tmp_path / "res"
    rc = run_model.main(_test_argv(root / "training_set", res, ck / "deblur-3.npz"))
    err = capsys.readouterr().err
    assert rc == 2 and "deblur-3.npz: network output has" in err and "NaN/infinite" in err
    assert "vd001/00001.png" in err and "Traceback" not in err
    assert not list(res.rglob("*.png"))  # no black frame written

    nan_dir = tmp_path / "nan"
    nan_dir.mkdir()
    _write_like(ck / "deblur-2.npz", nan_dir / "deblur-4.npz", 4, nan=True)
    rc = run_model.main(_test_argv(root / "training_set", res, nan_dir))
    err = capsys.readouterr().err
    assert rc == 2 and "deblur-4.npz: 1 variable(s) hold NaN or infinite values" in err
    assert "g_net/enc1_1/weights" in err

    from deblur.train import train

    out = train(_train_config(_train_argv(root, ck, "--patch_size", "64",
                                                 "--max_steps", "3", "--lr", "1e-4")))
    log = capsys.readouterr().out
    assert "deblur-3.npz: its weights give loss" in log and "deblur-3.npz.nonfinite" in log
    # ...and resumes from the older-format deblur-2 (checkpoints of runs started before
    # issue 13 resume as they are).
    assert "falling back to deblur-2.npz" in log and out["step"] == 3
    assert _all_finite(ck / "deblur-3.npz")  # the new step 3, saved because it is good


# ----------------------------------------------------------------------------- 5. stored settings
def test_levels_come_from_the_checkpoint(tmp_path, vd001, capsys):
    deblur_data.build(tmp_path, video="vd001", source=vd001, n=3, resize=SIZE)
    ck = tmp_path / "ck"
    assert run_model.main(_train_argv(tmp_path, ck, "--face", "none", "--levels", "3",
                                      "--patch_size", "64", "--max_steps", "1")) == 0
    capsys.readouterr()
    results = {}
    for name, extra in (("default", []), ("levels1", ["--levels", "1", "--face", "both"])):
        rc = run_model.main(_test_argv(tmp_path / "training_set", tmp_path / name, ck, *extra))
        out = capsys.readouterr().out
        assert rc == 0 and "'levels': 3" in out and "'face': 'none'" in out
        results[name] = read_image(tmp_path / name / "vd001" / "00002.png")
        if name == "levels1":  # each differing flag reported the same way
            assert "stores levels=3; using it instead of --levels 1" in out
            assert "stores face=none; using it instead of --face both" in out
        else:  # flags left at their defaults are no request: nothing to report
            assert "using it instead" not in out
    np.testing.assert_array_equal(results["default"], results["levels1"])

    # The same weights at one level give another picture: the stored levels matter.
    from deblur.inference import Deblurrer
    from deblur.network import build_network

    w, _, meta = ckpt.read_native(ck / "deblur-1.npz")
    net = build_network(ckpt.stored_config(ck / "deblur-1.npz", meta).replace(levels=1))
    ckpt.assign_by_name(net, w, "x")
    frames = [read_image(tmp_path / "training_set" / "vd001" / f"blur_{o}" / "00002.png")
              for o in range(-2, 3)]
    one = Deblurrer(net, net.deblur_config).deblur(frames)
    assert np.abs(one.astype(int) - results["default"]).mean() > 0.5

    # Resuming with a different stored setting is refused before any work, naming the flag.
    rc = run_model.main(_train_argv(tmp_path, ck, "--face", "none", "--levels", "2",
                                    "--patch_size", "64", "--max_steps", "2",
                                    "--datalist", str(tmp_path / "absent.txt")))
    err = capsys.readouterr().err
    assert rc == 2 and "was trained with --levels 3, the flags give --levels 2" in err


# ----------------------------------------------------------------------------- 6. metrics
def test_run_model_and_evaluate_report_the_same_labelled_means(tmp_path, trained, vd001, capsys):
    root, _ = trained
    t = tmp_path / "t"
    deblur_data.build(t, video="six", source=vd001, n=6, resize=SIZE)
    deblur_data.build(t, video="two", source=vd001, n=2, resize=SIZE, seed=3)
    res = tmp_path / "res"
    rc = run_model.main(_test_argv(t / "training_set", res, root / "ck", "--gt_path", str(t / "dataset")))
    out = capsys.readouterr().out
    assert rc == 0
    assert "ALL (all frames)" in out and "frame-weighted" in out
    doc = json.loads((res / "metrics.json").read_text())
    assert doc["averaging"] == metrics.AVERAGING and doc["all_frames"]["frames"] == 8

    import evaluate

    assert evaluate.main(["--pred", str(res), "--gt", str(t / "dataset"), "--no_identity",
                          "--out", str(tmp_path / "rep")]) == 0
    table = capsys.readouterr().out
    assert "averaging: " + metrics.AVERAGING in table
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["averaging"] == metrics.AVERAGING
    frames = [r["psnr"] for r in doc["frames"]]
    for k in metrics.METRICS:
        assert doc["all_frames"][k] == pytest.approx(rep["overall"][k], abs=1e-9)
        for v in ("six", "two"):
            assert doc["videos"][v][k] == pytest.approx(rep["videos"][v][k], abs=1e-9)
    assert doc["all_frames"]["psnr"] == pytest.approx(np.mean(frames), abs=1e-9)
    # ...which is not the mean of the per-video means (the two differ for 6 + 2 frames).
    video_mean = np.mean([doc["videos"][v]["psnr"] for v in ("six", "two")])
    assert abs(video_mean - doc["all_frames"]["psnr"]) > 1e-3


def test_validation_metrics_match_the_written_frames():
    rng = np.random.default_rng(0)
    pred = rng.random((2, 24, 20, 3)).astype(np.float32)
    target = np.clip(pred + rng.normal(0, 0.05, pred.shape), 0, 1).astype(np.float32)
    got = metrics.frame_batch_metrics(pred, target)
    rows = [metrics.frame_metrics(metrics.to_uint8(p), metrics.to_uint8(t)) for p, t in zip(pred, target)]
    for k in metrics.METRICS:
        assert got[k] == pytest.approx(np.mean([r[k] for r in rows]))
    assert got["frames"] == 2
    gray = metrics.frame_batch_metrics(pred[..., :1], target[..., :1])
    assert gray["psnr"] == pytest.approx(np.mean([metrics.psnr(metrics.to_uint8(p[..., :1]),
                                                               metrics.to_uint8(t[..., :1]))
                                                  for p, t in zip(pred, target)]))
    pred[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.frame_batch_metrics(pred, target)


# ----------------------------------------------------------------------------- 7. permissions
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o002, 0o027])
def test_outputs_get_the_umask_permissions(tmp_path, trained, umask, capsys):
    from common.fileio import write_coeff, write_image, write_points, write_text

    root, _ = trained
    expected = 0o666 & ~umask
    old = os.umask(umask)
    try:
        write_image(tmp_path / "frame.png", np.zeros((8, 8, 3), np.uint8))
        write_coeff(tmp_path / "coeff.txt", np.zeros(239))
        write_points(tmp_path / "lm.txt", np.zeros((5, 2)))
        w, _, meta = ckpt.read_native(root / "ck" / "deblur-2.npz")
        from deblur.config import NetworkConfig
        from deblur.network import build_network

        net = build_network(NetworkConfig.from_dict(meta["config"]))
        ckpt.assign_by_name(net, w, "x")
        ckpt.save_native(tmp_path / "ck" / "deblur-2.npz", net, 2)
        res = tmp_path / "res"
        if umask == 0o002:  # the situation: test-phase frames and metrics in a group folder
            assert run_model.main(_test_argv(root / "training_set", res, root / "ck",
                                             "--gt_path", str(root / "dataset"))) == 0
        # Replacing a file keeps its mode, as open(path, "w") does.
        write_text(tmp_path / "kept.txt", "a")
        os.chmod(tmp_path / "kept.txt", 0o600)
        write_text(tmp_path / "kept.txt", "b")
    finally:
        os.umask(old)
    capsys.readouterr()
    written = [tmp_path / "frame.png", tmp_path / "coeff.txt", tmp_path / "lm.txt",
               tmp_path / "ck" / "deblur-2.npz"]
    if umask == 0o002:
        written += [res / "metrics.json", *sorted(res.rglob("*.png"))]
        assert len(written) == 4 + 1 + 4
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == expected, (p, oct(p.stat().st_mode))
    assert stat.S_IMODE((tmp_path / "kept.txt").stat().st_mode) == 0o600
    assert not list(tmp_path.rglob(".*.tmp*"))  # no temporary file left behind


# ----------------------------------------------------------------------------- validation
def test_optional_validation_during_training_uses_the_test_metrics(tmp_path, trained, capsys):
    root, _ = trained
    ck = _copy_checkpoints(root, tmp_path / "ck")
    from deblur.train import train

    val = ["--val_input_path", str(root / "training_set"), "--val_gt_path", str(root / "dataset")]
    assert run_model.main(_train_argv(root, tmp_path / "x", "--patch_size", "64", "--val_every",
                                      "1", val[0], val[1])) == 2
    assert "--val_every 1 needs --val_gt_path" in capsys.readouterr().err
    res = train(_train_config(_train_argv(root, ck, "--patch_size", "64", "--max_steps", "3",
                                                 "--lr", "1e-4", "--val_every", "5", *val)))
    out = capsys.readouterr()
    assert [v["step"] for v in res["validation_log"]] == [3]  # every 5 steps and at the end
    assert "validation at step 3: ALL (all frames)" in out.err + out.out
    # The same numbers as testing the saved checkpoint with --gt_path, in fp32 as the training
    # run validated (auto is bf16 on CPUs with bf16 units).
    assert run_model.main(_test_argv(root / "training_set", tmp_path / "res", ck / "deblur-3.npz",
                                     "--gt_path", str(root / "dataset"), "--precision", "fp32")) == 0
    doc = json.loads((tmp_path / "res" / "metrics.json").read_text())
    for k in metrics.METRICS:
        assert res["validation"][k] == pytest.approx(doc["all_frames"][k], abs=1e-9)


def test_validation_from_a_datalist_logs_csv_and_keeps_the_best(tmp_path, trained, capsys):
    """--val_datalist (the recipe's validation list): same scores as the testing-set layout,
    one validation.csv row per validation with the blurry input's scores, best.npz = the best."""
    import csv

    root, _ = trained
    from deblur.inference import Validator
    from deblur.train import train

    from deblur.config import NetworkConfig

    config = NetworkConfig(face="both", levels=1, model="color", n_frames=5, channels=8)
    by_list = Validator.from_datalist(root / "datalist_train.txt", root / "dataset",
                                      root / "training_set", config)
    by_dirs = Validator(root / "training_set", root / "dataset", config)
    assert [(v, n) for v, n, *_ in by_list.items] == [(v, n) for v, n, *_ in by_dirs.items]
    centre = [read_image(root / "training_set" / "vd001" / "blur_0" / f"{k:05d}.png") for k in range(1, 5)]
    sharp = [read_image(root / "dataset" / "vd001" / "sharp" / f"{k:05d}.png") for k in range(1, 5)]
    assert by_list.blurry()["all_frames"]["psnr"] == pytest.approx(
        np.mean([metrics.psnr(c, s) for c, s in zip(centre, sharp)]), abs=1e-9)
    assert len(Validator.from_datalist(root / "datalist_train.txt", root / "dataset",
                                       root / "training_set", config, max_frames=2).items) == 2

    ck = _copy_checkpoints(root, tmp_path / "ck")
    res = train(_train_config(_train_argv(
        root, ck, "--patch_size", "64", "--max_steps", "4", "--lr", "1e-4", "--val_every", "1",
        "--save_every", "100", "--val_datalist", str(root / "datalist_train.txt"))))
    rows = list(csv.DictReader((ck / "validation.csv").open()))
    assert [int(r["step"]) for r in rows] == [3, 4]
    assert [float(r["psnr"]) for r in rows] == pytest.approx(
        [v["psnr"] for v in res["validation_log"]], abs=1e-3)
    for r in rows:
        assert float(r["psnr_blurry"]) == pytest.approx(by_list.blurry()["all_frames"]["psnr"], abs=1e-3)
    best = max(rows, key=lambda r: float(r["psnr"]))
    assert (ck / "best.npz").read_bytes() == (ck / f"deblur-{best['step']}.npz").read_bytes()
