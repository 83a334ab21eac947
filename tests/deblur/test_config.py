"""deblur/config.py: the one network configuration, through network, checkpoint and back."""
import json
import subprocess
import sys

import numpy as np
import pytest

from deblur.config import FACE_MODES, NetworkConfig
from tests.helpers import ROOT


def test_dict_round_trip_and_older_dicts():
    cfg = NetworkConfig(face="render", levels=2, model="lstm", n_frames=9, channels=8, residual=True)
    assert NetworkConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "residual"}  # written before --residual
    assert NetworkConfig.from_dict({**old, "seed": 3}).residual is False  # unknown keys ignored
    with pytest.raises(ValueError, match="lacks face"):
        NetworkConfig.from_dict({k: v for k, v in old.items() if k != "face"})
    assert cfg.replace(levels=1).differences(cfg) == ["levels"]


@pytest.mark.parametrize("bad", [dict(face="eyes"), dict(model="rgb"), dict(n_frames=4), dict(levels=0),
                                 dict(channels=0)])
def test_impossible_settings_are_refused(bad):
    with pytest.raises(ValueError):
        NetworkConfig(**bad)


def test_face_choices_do_not_import_keras():
    code = "import sys, deblur.config as c; assert 'keras' not in sys.modules; print(','.join(c.FACE_MODES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    assert out.strip().split(",") == list(FACE_MODES)


def test_config_travels_with_network_and_checkpoint(tmp_path):
    from deblur import checkpoint as ckpt
    from deblur.network import build_network

    cfg = NetworkConfig(face="both", levels=2, model="color", n_frames=5, channels=4, residual=True)
    net = build_network(cfg)
    assert net.deblur_config == cfg
    path = ckpt.save_native(tmp_path / "deblur-7.npz", net, 7)
    meta = ckpt.read_meta(path)
    assert meta["config"] == cfg.to_dict() and ckpt.stored_config(path, meta) == cfg
    # the stored settings win over other flags (reported), whether given as a config or a dict
    notes = []
    loaded, got, step = ckpt.load_generator(tmp_path, cfg.replace(face="none", levels=1), log=notes.append)
    assert (got, step, loaded.deblur_config) == (cfg, 7, cfg)
    assert any("face=both" in n for n in notes) and any("levels=2" in n for n in notes)
    assert ckpt.load_generator(path, {"channels": 32}, verbose=False)[1] == cfg
    for a, b in zip(ckpt.network_arrays(net).values(), ckpt.network_arrays(loaded).values()):
        np.testing.assert_array_equal(a, b)


def test_train_config_round_trip_and_from_flags(tmp_path):
    import argparse

    import run_model
    from common.errors import InputError
    from deblur.config import TrainConfig

    args = run_model.parse_args(["--phase", "train", "--face", "none", "--channels", "16", "--residual",
                                 "--datalist", str(tmp_path / "dl.txt"), "--lr", "2e-4", "--max_steps", "7",
                                 "--val_every", "5", "--xla"])
    tc = TrainConfig.from_args(args)
    assert tc.network == NetworkConfig(face="none", channels=16, residual=True)
    assert (tc.datalist, tc.lr, tc.max_steps, tc.val_every, tc.xla, tc.precision) == \
        (str(tmp_path / "dl.txt"), 2e-4, 7, 5, True, "fp32")
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc
    # a checkpoint written before TrainConfig stored the flags flat, with the command's others
    flat = {**tc.network.to_dict(), **{k: v for k, v in tc.to_dict().items() if k != "network"},
            "phase": "train", "gpu": "-1"}
    assert TrainConfig.from_dict(flat) == tc
    # run_model.py's defaults are TrainConfig's (one set of defaults)
    assert TrainConfig.from_args(run_model.parse_args(["--phase", "train"])) == TrainConfig()
    with pytest.raises(InputError, match="channels"):
        NetworkConfig.from_args(argparse.Namespace(channels=0))


def test_training_stores_its_config_in_the_checkpoint(tmp_path):
    import run_model
    from deblur import checkpoint as ckpt
    from deblur.config import TrainConfig
    from deblur.testing import datasets as deblur_data
    from deblur.train import train

    deblur_data.build(tmp_path, n=4, h=40, w=40)
    tc = TrainConfig.from_args(run_model.parse_args([
        "--phase", "train", "--datalist", str(tmp_path / "datalist_train.txt"), "--data_root",
        str(tmp_path / "dataset"), "--train_root", str(tmp_path / "training_set"), "--checkpoint_dir",
        str(tmp_path / "ck"), "--face", "none", "--channels", "4", "--batch_size", "2", "--patch_size", "36",
        "--max_steps", "1", "--gpu", "-1"]))
    res = train(tc)
    assert TrainConfig.from_dict(ckpt.read_meta(res["checkpoint"])["train_config"]) == tc
