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


@pytest.mark.parametrize("argv", [["--face", "sideways"], ["--precision", "fp8"], ["--no_such_flag"]])
def test_a_bad_flag_is_one_error_line_and_exit_2(argv, capsys):
    # README: bad input gives one `error:` line; argparse's default prints the usage block first.
    import run_model

    with pytest.raises(SystemExit) as e:
        run_model.parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_model.py: error: ") and "usage:" not in err, err


def test_subcommands_and_every_command_use_the_shared_parser(capsys):
    from common.cli import ArgumentParser
    from preprocess.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["align", "--flow", "farneback"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "error: argument --flow" in lines[0]
    import deblur_video
    from faceReconstruction.pipeline import demo_parser, render_parser

    for parser in (deblur_video.build_parser(), demo_parser(), render_parser(), build_parser()):
        assert isinstance(parser, ArgumentParser)


def test_help_states_each_default_once(capsys):
    import run_model

    with pytest.raises(SystemExit):
        run_model.parse_args(["--help"])
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    assert "(default both) (default: both)" not in flat and "(default: " in flat


def test_given_flags_are_those_the_command_line_sets():
    # run_model.py --phase test compares only these with the checkpoint's settings
    from run_model import build_parser

    p = build_parser()
    assert {"face", "channels"} <= p.given(["--face", "none", "--chan=8"])  # abbreviation, --flag=value
    assert "levels" not in p.given(["--face", "none"]) and "face" not in p.given([])
    assert p.parse_args([]).face == "both"  # the defaults are back afterwards
