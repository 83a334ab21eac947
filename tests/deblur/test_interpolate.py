"""Weight interpolation (deblur/interpolate.py): the end points are the two networks, a narrower
one is widened first (same function at alpha = 1), and mismatches are refused with exit status 2."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common.fileio import InputError
from deblur.checkpoint import (assign_by_name, load_generator, model_record, read_native,
                               save_native)
from deblur.config import NetworkConfig
from deblur.interpolate import interpolate_arrays, main, write_interpolated
from deblur.network import build_network
from deblur.widen import widen_arrays
from tests.deblur.test_widen import _inputs, _last, _randomised

NARROW = NetworkConfig("none", 1, "color", 5, 4, True)
WIDE = NetworkConfig("none", 1, "color", 5, 8, True)


def _save(tmp_path, name, config, arrays):
    net = build_network(config)
    assign_by_name(net, arrays, name)
    return save_native(tmp_path / f"{name}.npz", net, step=7)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A narrow network A and a 'continuation' B: A widened with seed 5, then moved a little."""
    tmp = tmp_path_factory.mktemp("interp")
    narrow_net, narrow = _randomised(NARROW, seed=0)
    rng = np.random.default_rng(9)
    moved = {k: v + rng.normal(0, 0.05 * (np.abs(v).mean() + 1e-3), v.shape).astype(np.float32)
             for k, v in widen_arrays(narrow, NARROW, WIDE, seed=5).items()}
    return (tmp, narrow_net, narrow, moved,
            _save(tmp, "a", NARROW, narrow), _save(tmp, "b", WIDE, moved))


def test_midpoint_is_the_mean_and_end_points_are_the_inputs():
    a = {"w": np.array([1.0, 2.0], np.float32)}
    b = {"w": np.array([3.0, 6.0], np.float32)}
    np.testing.assert_allclose(interpolate_arrays(a, b, 0.5)["w"], [2.0, 4.0])
    np.testing.assert_array_equal(interpolate_arrays(a, b, 1.0)["w"], a["w"])
    np.testing.assert_array_equal(interpolate_arrays(a, b, 0.0)["w"], b["w"])
    with pytest.raises(InputError, match="alpha"):
        interpolate_arrays(a, b, 1.5)
    with pytest.raises(InputError, match="shapes differ"):
        interpolate_arrays(a, {"w": np.zeros(3, np.float32)}, 0.5)


def test_alpha_one_computes_the_narrow_network_and_zero_the_wide_one(pair):
    tmp, narrow_net, _, moved, a, b = pair
    x = _inputs(NARROW)
    write_interpolated(a, b, 1.0, tmp / "one.npz", widen_seed=5)
    net_one, cfg, _ = load_generator(tmp / "one.npz", verbose=False)
    assert cfg.channels == 8
    np.testing.assert_allclose(_last(net_one(x)), _last(narrow_net(x)), atol=1e-4)
    # Another seed is another widening of the same network: same function at alpha = 1 ...
    write_interpolated(a, b, 1.0, tmp / "one_s1.npz", widen_seed=1)
    np.testing.assert_allclose(_last(load_generator(tmp / "one_s1.npz", verbose=False)[0](x)),
                               _last(narrow_net(x)), atol=1e-4)
    # ... but not the point the continuation started from: the seed decides the path.
    w5, _, _ = read_native(tmp / "one.npz")
    w1, _, _ = read_native(tmp / "one_s1.npz")
    d = lambda w: sum(float(((w[k] - moved[k]) ** 2).sum()) for k in moved)
    assert d(w5) < 0.5 * d(w1)
    write_interpolated(a, b, 0.0, tmp / "zero.npz", widen_seed=5)
    w0, _, meta = read_native(tmp / "zero.npz")
    for k in moved:
        np.testing.assert_allclose(w0[k], moved[k], atol=1e-6)
    assert meta["interpolated"] == {"a": str(a), "b": str(b), "alpha": 0.0, "widen_seed": 5,
                                    "a_step": 7, "b_step": 7}
    assert meta["step"] == 0
    # A result of it names the two sources and alpha, not "step 0" (which reads as untrained).
    rec = model_record(tmp / "zero.npz", WIDE, 0)
    assert "weight interpolation 0 x a.npz (step 7) + 1 x b.npz (step 7)" in rec["model"]
    assert "step 0" not in rec["model"] and rec["interpolated"] == meta["interpolated"]
    assert "interpolated" not in model_record(a, NARROW, 7) and "step 7" in model_record(a, NARROW, 7)["model"]


def test_cli_writes_a_loadable_half_way_network(pair, capsys):
    tmp, _, narrow, moved, a, b = pair
    out = tmp / "half.npz"
    assert main([str(a), str(b), "--alpha", "0.5", "--widen_seed", "5", "--dtype", "float16",
                 "--out", str(out)]) == 0
    w, _, meta = read_native(out)
    wide = widen_arrays(narrow, NARROW, WIDE, seed=5)
    k = "g_net/enc2_1/weights"
    assert w[k].dtype == np.float16
    np.testing.assert_allclose(w[k], 0.5 * (wide[k] + moved[k]), atol=2e-3)
    assert json.loads(json.dumps(meta))["interpolated"]["alpha"] == 0.5
    load_generator(out, verbose=False)


def test_refusals_are_one_line_with_exit_status_2(pair, tmp_path, capsys):
    _, _, _, _, a, b = pair
    # widths differ and no seed: which widening is meant cannot be guessed
    assert main([str(a), str(b), "--alpha", "0.5", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--widen_seed" in capsys.readouterr().err
    # another network (three scales)
    other_cfg = NetworkConfig("none", 3, "color", 5, 8, True)
    _, other_arrays = _randomised(other_cfg)
    other = _save(tmp_path, "other", other_cfg, other_arrays)
    assert main([str(b), str(other), "--alpha", "0.5", "--out", str(tmp_path / "y.npz")]) == 2
    err = capsys.readouterr().err
    assert "different networks" in err and "levels 1 vs 3" in err and "Traceback" not in err
    missing = tmp_path / "nope.npz"
    assert main([str(missing), str(b), "--alpha", "0.5", "--out", str(tmp_path / "z.npz")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not list(tmp_path.glob("[xyz]*.npz"))
