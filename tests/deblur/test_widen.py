"""Net2WiderNet widening (deblur/widen.py): the wider network computes the narrow one's outputs,
its copied channels can diverge, and mismatched settings are refused."""
from __future__ import annotations

import numpy as np
import pytest

from common.fileio import InputError
from deblur.checkpoint import assign_by_name, network_arrays
from deblur.config import NetworkConfig
from deblur.network import build_network, image_channels, uses_coeff, uses_render
from deblur.widen import channel_map, widen_arrays


def _randomised(config, seed=0):
    """A network whose every weight (dec1_0 included, which --residual starts at zero) is random."""
    net = build_network(config)
    rng = np.random.default_rng(seed)
    arrays = {k: rng.normal(0, 0.3 / np.sqrt(np.prod(v.shape[:-1]) if v.ndim > 1 else 1),
                            v.shape).astype(np.float32) for k, v in network_arrays(net).items()}
    assign_by_name(net, arrays, "random")
    return net, arrays


def _inputs(config, size=48, seed=1):
    rng = np.random.default_rng(seed)
    c = image_channels(config.model)
    x = {"blur": rng.random((2, size, size, c * config.n_frames), dtype=np.float32)}
    if uses_render(config.face):
        x["render"] = rng.random((2, size, size, c), dtype=np.float32)
    if uses_coeff(config.face):
        x["coeff"] = rng.normal(size=(2, 9, 9)).astype(np.float32)
    return x


def _last(out):
    return np.asarray(out[-1] if isinstance(out, (list, tuple)) else out)


@pytest.mark.parametrize("face,levels,old,new", [("none", 1, 4, 8), ("none", 2, 4, 6),
                                                 ("both", 1, 4, 8), ("render", 1, 3, 5)])
def test_wider_network_computes_the_same_outputs(face, levels, old, new):
    src = NetworkConfig(face, levels, "color", 5, old, True)
    dst = NetworkConfig(face, levels, "color", 5, new, True)
    net, arrays = _randomised(src)
    x = _inputs(src)
    before = _last(net(x))
    wide = build_network(dst)
    assign_by_name(wide, widen_arrays(arrays, src, dst, seed=3), "widened")
    after = _last(wide(x))
    assert wide.count_params() > net.count_params()
    assert np.abs(before).max() > 0.1  # a real signal, not a network that outputs ~0
    np.testing.assert_allclose(after, before, atol=1e-4)


def test_copies_get_different_weights_so_they_can_diverge():
    src = NetworkConfig("none", 1, "color", 5, 4, True)
    dst = NetworkConfig("none", 1, "color", 5, 8, True)
    _, arrays = _randomised(src)
    wide = widen_arrays(arrays, src, dst)
    w = wide["g_net/enc1_2/conv1/weights"]  # [5, 5, 8, 8]; input channel j and j + 4 are copies
    assert w.shape == (5, 5, 8, 8)
    # The copies' shares sum to the original weight ...
    np.testing.assert_allclose(w[:, :, :4] + w[:, :, 4:], arrays["g_net/enc1_2/conv1/weights"][..., [0, 1, 2, 3] * 2],
                               rtol=1e-5, atol=1e-7)
    # ... but are not an even split (an even split would keep the copies identical forever).
    assert np.abs(w[:, :, :4] - w[:, :, 4:]).max() > 1e-3
    # Output copies start from the same incoming weights of the first conv (the image inputs are
    # not copied), and from the same bias.
    e = wide["g_net/enc1_1/weights"]
    np.testing.assert_array_equal(e[..., :4], e[..., 4:])
    np.testing.assert_array_equal(wide["g_net/enc1_1/biases"][:4], wide["g_net/enc1_1/biases"][4:])


def test_channel_map_keeps_the_prior_channels_last():
    np.testing.assert_array_equal(channel_map(4, 6, extra=3), [0, 1, 2, 3, 0, 1, 4, 5, 6])
    with pytest.raises(ValueError):
        channel_map(4, 3)


@pytest.mark.parametrize("change", [{"face": "both"}, {"channels": 2}, {"n_frames": 3}])
def test_other_changes_are_refused(change):
    src = NetworkConfig("none", 1, "color", 5, 4, True)
    _, arrays = _randomised(src)
    dst = NetworkConfig.from_dict({**src.to_dict(), "channels": 8, **change})
    with pytest.raises(InputError):
        widen_arrays(arrays, src, dst)
