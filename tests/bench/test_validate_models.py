"""bench/validate_models.py, the script behind the validation and ablation tables of
checkpoints/MODEL_CARD.md: per-clip rows, the blank-prior probe, flag errors."""
from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from bench import validate_models
from common.fileio import read_coeff, read_image
from deblur import checkpoint as ckpt
from deblur.config import NetworkConfig
from deblur.network import build_network
from deblur.testing import datasets as deblur_data


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A recipe-shaped folder: one validation segment with (stand-in) priors, and a random
    `--face both` checkpoint."""
    root = tmp_path_factory.mktemp("recipe")
    deblur_data.build(root, video="person__s00", n=4, h=48, w=48)
    shutil.copy(root / "datalist_train.txt", root / "datalist_val.txt")
    (root / "dataset" / "person__s00" / "recipe.json").write_text(json.dumps(
        dict(speed=4.35, exposure=0.69, still=False, noise_sigma=1.53, jpeg_quality=77)))
    keras.utils.set_random_seed(0)  # a fixed random network: the controls' checks below are exact
    net = build_network(NetworkConfig(face="both", levels=1, channels=4))
    path = root / "both.npz"
    ckpt.save_native(path, net, step=3)
    return root, path


def _changed_share(tmp_path, a: str, b: str) -> float:
    """Share of the pixels where models a and b restored the segment differently."""
    diffs = [read_image(tmp_path / "work" / a / "person__s00" / f.name) != read_image(f)
             for f in sorted((tmp_path / "work" / b / "person__s00").glob("*.png"))]
    return float(np.mean(diffs))


def _score_with_control(recipe, tmp_path, control: str) -> tuple[dict, dict]:
    """validate_models on the recipe: the checkpoint as `real` and again as `other` under
    --<control> (blank_prior / centre_only); returns the two models' JSON entries."""
    root, path = recipe
    out = tmp_path / "v.json"
    rc = validate_models.main(["--recipe", str(root), "--model", f"real={path}",
                               "--model", f"other={path}", f"--{control}", "other",
                               "--no_identity", "--precision", "fp32", "--out", str(out),
                               "--work", str(tmp_path / "work")])
    assert rc == 0
    models = json.loads(out.read_text())["models"]
    return models["real"], models["other"]


def test_blank_prior_scores_the_same_network_without_its_prior(recipe, tmp_path):
    root, path = recipe
    real, blank = _score_with_control(recipe, tmp_path, "blank_prior")
    assert (real["blank_prior"], blank["blank_prior"]) == (False, True)
    assert real["summary"]["per_clip"]["person"]["frames"] == 4
    # The blank input: the same frames, zero coefficients, black renders of the frame size.
    seg = tmp_path / "work" / "input_blank_prior" / "person__s00"
    frame = read_image(seg / "blur_0" / "00002.png")
    assert (seg / "blur_0").resolve() == (root / "training_set" / "person__s00" / "blur_0").resolve()
    render = read_image(seg / "render" / "00002.png")
    assert render.shape == frame.shape and not render.any()
    assert not read_coeff(seg / "face" / "00002.txt").any()
    # A random network with the prior answers differently without it (compared pixel by pixel:
    # its PSNR against the sharp frames is near 5 dB either way).
    assert _changed_share(tmp_path, "real", "other") > 0.05
    assert real["summary"]["overall"]["blurry_psnr"] == blank["summary"]["overall"]["blurry_psnr"]
    assert "| person | 4 |" in json.loads((tmp_path / "v.json").read_text())["table"]


def test_blank_prior_must_name_a_model(recipe, tmp_path, capsys):
    root, path = recipe
    with pytest.raises(SystemExit) as e:
        validate_models.main(["--recipe", str(root), "--model", f"real={path}",
                              "--blank_prior", "both", "--out", str(tmp_path / "v.json")])
    assert e.value.code == 2 and "--blank_prior both: no --model of that name" in capsys.readouterr().err


def test_centre_only_scores_the_network_without_its_neighbours(recipe, tmp_path):
    root, path = recipe
    real, alone = _score_with_control(recipe, tmp_path, "centre_only")
    assert (real["centre_only"], alone["centre_only"]) == (False, True)
    # Every neighbour folder of the control's input is the segment's centre frames; the prior
    # folders are the segment's own.
    seg = tmp_path / "work" / "input_centre_only" / "person__s00"
    src = root / "training_set" / "person__s00"
    for k in (-2, -1, 0, 1, 2):
        assert (seg / f"blur_{k}").resolve() == (src / "blur_0").resolve()
    assert (seg / "render").resolve() == (src / "render").resolve()
    # The neighbours of the test data differ from the centre, so a random network answers
    # differently without them; the blurry reference row is the same.
    assert _changed_share(tmp_path, "real", "other") > 0.05
    assert real["summary"]["overall"]["blurry_psnr"] == alone["summary"]["overall"]["blurry_psnr"]


def test_self_ensemble_scores_the_mirror_average(recipe, tmp_path):
    """--self_ensemble NAME: that model's frames are the mirror self-ensemble of the network,
    the other model's are plain, and the JSON says which is which."""
    root, path = recipe
    real, ens = _score_with_control(recipe, tmp_path, "self_ensemble")
    assert (real["self_ensemble"], ens["self_ensemble"]) == (False, True)
    assert _changed_share(tmp_path, "real", "other") > 0.05
    from deblur.checkpoint import load_generator
    from deblur.inference import Deblurrer, read_inputs

    net, cfg, _ = load_generator(path, verbose=False)
    vid = root / "training_set" / "person__s00"
    expect = Deblurrer(net, cfg, self_ensemble=True).deblur(*read_inputs(vid, "00002.png", cfg))
    got = read_image(tmp_path / "work" / "other" / "person__s00" / "00002.png")
    assert np.abs(got.astype(int) - expect).max() <= 1


def test_one_control_per_name(recipe, tmp_path, capsys):
    root, path = recipe
    with pytest.raises(SystemExit) as e:
        validate_models.main(["--recipe", str(root), "--model", f"real={path}", "--blank_prior", "real",
                              "--centre_only", "real", "--out", str(tmp_path / "v.json")])
    assert e.value.code == 2 and "both name real" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        validate_models.main(["--recipe", str(root), "--model", f"real={path}",
                              "--centre_only", "x", "--out", str(tmp_path / "v.json")])
    assert e.value.code == 2 and "--centre_only x: no --model of that name" in capsys.readouterr().err


def test_segment_rows_name_the_blur_and_the_gain(recipe, tmp_path):
    root, path = recipe
    real, other = _score_with_control(recipe, tmp_path, "centre_only")
    seg = real["summary"]["per_segment"]["person__s00"]
    assert seg["frames"] == 4 and seg["psnr"] == pytest.approx(real["summary"]["per_clip"]["person"]["psnr"])
    md = json.loads((tmp_path / "v.json").read_text())["segment_table"]
    gain = seg["psnr"] - seg["blurry_psnr"]
    row = next(ln for ln in md.splitlines() if ln.startswith("| person__s00 |"))
    assert "| shake 4.3 px/frame, exposure 0.69 + noise 1.5, JPEG 77 | 4 |" in row
    assert f"| {seg['psnr']:.2f} | {gain:+.2f} |" in row


@pytest.mark.parametrize("params, text", [
    (dict(speed=0.0, exposure=3.1, still=True, noise_sigma=0.0, jpeg_quality=0), "still camera, exposure 3.1"),
    (dict(speed=0.0, exposure=0.0, still=True, noise_sigma=0.8, jpeg_quality=90), "no blur + noise 0.8, JPEG 90"),
    (dict(speed=21.6, exposure=0.62, still=False, noise_sigma=0.0, jpeg_quality=0), "shake 21.6 px/frame, exposure 0.62"),
])
def test_segment_blur_in_words(tmp_path, params, text):
    (tmp_path / "dataset" / "seg__s00").mkdir(parents=True)
    (tmp_path / "dataset" / "seg__s00" / "recipe.json").write_text(json.dumps(params))
    assert validate_models.segment_blur(tmp_path, "seg__s00") == text
    assert validate_models.segment_blur(tmp_path, "other__s00") == "?"


def test_a_segment_left_unchanged_by_the_recipe_does_not_break_the_tables(tmp_path):
    # An unblurred segment without noise or JPEG has blurry == sharp: PSNR +inf on every frame,
    # a mean of None (common/metrics.py). The tables say so instead of crashing after the scoring.
    seg = {"psnr": 47.1, "ssim": 0.99, "blurry_psnr": None, "blurry_ssim": 1.0, "frames": 20,
           "id_dist": 0.03, "blurry_id_dist": 0.0}
    summary = {"per_segment": {"p__s00": seg}, "per_clip": {"p": seg}, "overall": seg}
    results = {"m": {"summary": summary}}
    seg_md = validate_models.segment_table(results, tmp_path)
    assert "| p__s00 | ? | 20 | identical | 47.10 | n/a |" in seg_md
    assert "| p | 20 | identical | 1.0000 | 0.0000 | 47.10 | 0.9900 | 0.0300 |" in validate_models.table(results)


def test_default_precision_is_fp32_as_the_model_card(recipe, tmp_path):
    """Every figure of the model card is fp32, and bf16 is emulated (minutes per frame) on CPUs
    without AVX512-BF16/AMX: a command copied without --precision must reproduce them."""
    root, path = recipe
    out = tmp_path / "v.json"
    assert validate_models.main(["--recipe", str(root), "--model", f"real={path}",
                                 "--no_identity", "--out", str(out),
                                 "--work", str(tmp_path / "work")]) == 0
    res = json.loads(out.read_text())
    assert res["meta"]["precision"] == "fp32"
    # the per-segment table ends with the two groups, also stored per model
    assert "| blurred: mean gain | | 1 segments |" in res["segment_table"]
    assert res["models"]["real"]["summary"]["segment_groups"]["blurred"]["segments"] == 1


def test_segment_groups_split_nearly_sharp_from_blurred():
    """The model card's per-segment arithmetic: the nearly sharp segments' gains summed (what they
    cost the mean), the blurred ones' averaged; identical segments (PSNR +inf) in neither."""
    per_segment = {"a": dict(psnr=38.0, blurry_psnr=39.0), "b": dict(psnr=47.5, blurry_psnr=48.0),
                   "c": dict(psnr=30.0, blurry_psnr=28.0), "d": dict(psnr=25.0, blurry_psnr=24.0),
                   "e": dict(psnr=None, blurry_psnr=None)}
    g = validate_models.segment_groups(per_segment)
    assert g["near_sharp"] == {"segments": 2, "gain_sum": -1.5}
    assert g["blurred"] == {"segments": 2, "gain_mean": 1.5}
    assert validate_models.segment_groups({})["blurred"]["gain_mean"] is None


def test_sharp_guard_flag_and_the_tau_chooser(recipe, tmp_path):
    """--sharp_guard NAME=TAU scores that model with the guard (recorded in the JSON), and
    bench.sharp_guard scores each tau on the same frames: tau 0 is the plain network's PSNR."""
    from bench import sharp_guard
    from common import metrics
    from deblur.inference import Deblurrer, frame_names, read_inputs

    root, path = recipe
    out = tmp_path / "v.json"
    assert validate_models.main(["--recipe", str(root), "--model", f"plain={path}", "--model",
                                 f"guarded={path}", "--sharp_guard", "guarded=100", "--no_identity",
                                 "--precision", "fp32", "--out", str(out), "--work", str(tmp_path / "work")]) == 0
    models = json.loads(out.read_text())["models"]
    assert (models["plain"]["sharp_guard"], models["guarded"]["sharp_guard"]) == (0.0, 100.0)
    # the random network changes the frame by ~100 levels rms: tau 100 halves that
    assert _changed_share(tmp_path, "guarded", "plain") > 0.5
    with pytest.raises(SystemExit):
        validate_models.main(["--recipe", str(root), "--model", f"a={path}", "--sharp_guard", "b=1"])

    js = tmp_path / "g.json"
    assert sharp_guard.main(["--recipe", str(root), "--checkpoint", str(path), "--taus", "0,100",
                             "--precision", "fp32", "--out", str(js)]) == 0
    res = json.loads(js.read_text())
    net, cfg, _ = ckpt.load_generator(path, verbose=False)
    d = Deblurrer(net, cfg)
    video = root / "training_set" / "person__s00"
    psnrs = [metrics.psnr(d.deblur(*read_inputs(video, n, cfg)),
                          read_image(root / "dataset" / "person__s00" / "sharp" / n))
             for n in frame_names(video)]
    assert res["scores"]["0.0"]["frames"] == len(psnrs) == 4
    assert res["scores"]["0.0"]["psnr"] == pytest.approx(float(np.mean(psnrs)), abs=1e-6)
    assert res["best"] == 100.0 and res["scores"]["100.0"]["psnr"] > res["scores"]["0.0"]["psnr"] + 3
