"""common/flags.py and common/cli.py: one definition and default of the shared flags."""
import argparse

import pytest

from common.flags import DEFAULT_FLOW, add_flow_flag, add_gpu_flag, add_precision_flag


def test_shared_defaults_and_gpu_ids():
    p = argparse.ArgumentParser()
    add_gpu_flag(p, several=True)
    add_flow_flag(p)
    add_precision_flag(p)
    a = p.parse_args([])
    assert (a.gpu, a.flow, a.precision) == ("-1", DEFAULT_FLOW, "fp32") and DEFAULT_FLOW == "dis"
    assert p.parse_args(["--gpu", "0,1"]).gpu == "0,1"
    for bad in ("gpu0", "-2", "0;1", ""):
        with pytest.raises(SystemExit):
            p.parse_args(["--gpu", bad])


def test_commands_share_the_defaults():
    """run_model.py, deblur_video.py and preprocess parse --gpu/--flow/--face the same way."""
    import deblur_video
    import run_model
    from preprocess.cli import build_parser

    rm = run_model.parse_args([])
    assert rm.gpu == "-1" and rm.face == "both"
    assert build_parser().parse_args(["align"]).flow == DEFAULT_FLOW
    with pytest.raises(SystemExit):
        run_model.parse_args(["--face", "eyes"])
    assert deblur_video.build_parser().parse_args(["in.mp4", "out.mp4"]).gpu == "-1"
