"""The architecture, checked: imports flow downward, no edits of the import path, the shared
concepts exist once. (Issue 11, "Done when" / structure.)"""
from __future__ import annotations

import ast
import re
import subprocess
import sys

from tests.helpers import ROOT

# Paper order: a package may import the shared layer and the stages before it, never after.
LAYERS = ["common", "preprocess", "facePointDetection", "faceReconstruction", "deblur", "pipeline"]
TOP_LEVEL_SCRIPTS = {"run_model.py", "demo.py", "demo_render.py", "deblur_video.py", "evaluate.py"}


def _python_files():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0].startswith(".") or rel.parts[0] in ("docs", "build"):
            continue
        yield rel, path


def _imports(path) -> set[str]:
    """Top-level package names imported anywhere in a file (lazy imports included)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_packages_import_only_downward():
    for rel, path in _python_files():
        if rel.parts[0] not in LAYERS:
            continue
        own = LAYERS.index(rel.parts[0])
        above = {p for p in LAYERS[own + 1:]}
        # the three later stages use only the shared layer from below them, never preprocess/
        if rel.parts[0] in ("facePointDetection", "faceReconstruction", "deblur"):
            above.add("preprocess")
        bad = _imports(path) & above
        assert not bad, f"{rel} imports {sorted(bad)} (imports flow down: {' <- '.join(LAYERS)})"


def test_only_scripts_and_demo_import_the_pipeline():
    for rel, path in _python_files():
        allowed = (rel.parts[0] in ("pipeline", "demo", "tests")
                   or (len(rel.parts) == 1 and rel.name in TOP_LEVEL_SCRIPTS))
        if not allowed:
            assert "pipeline" not in _imports(path), f"{rel} imports pipeline/"


def test_no_import_path_edits():
    needle = "sys" + ".path"  # spelled apart so this file does not match itself
    hits = [f"{rel}:{n}" for rel, path in _python_files()
            for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert hits == [], f"import path edits (install the project with `pip install -e .`): {hits}"


def test_shared_concepts_are_defined_once():
    """Gap filling, frame listing, the temporal window, PSNR and the dlib model path: one
    definition each (in common/)."""
    concepts = {"fill_gaps|fill_missing|_interp_missing|smooth_track": "common/tracks.py",
                "list_videos": "common/frames.py", "list_frames": "common/frames.py",
                "frame_offsets": "common/frames.py", "psnr": "common/metrics.py",
                "inner_face_box": "common/metrics.py",
                "dlib_model_path|_face_models_dir": "common/paths.py", "atomic_path": "common/fileio.py",
                "run_tasks": "common/parallel.py", "write_video|probe": "common/videoio.py"}
    for pattern, home in concepts.items():
        where = sorted(str(rel) for rel, path in _python_files()
                       if rel.parts[0] not in ("tests", "bench")
                       and re.search(rf"^def ({pattern})\(", path.read_text(), re.M))
        assert where == [home], f"{pattern}: defined in {where}, expected only {home}"


def test_stage_modules_import_without_tensorflow_where_promised():
    """Command lines take --face/--flow/--gpu choices (and answer --help) without loading Keras
    or TensorFlow."""
    code = ("import sys, common.flags, deblur.config, deblur.checkpoint, deblur.interpolate, "
            "pipeline.video; "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_docstring_commands_keep_their_line_continuations():
    """A shell command spread over lines with `\\` in a docstring must be a raw string: in a plain
    one the backslash joins the lines, and --help prints the command with a run of spaces."""
    bad = []
    for rel, path in _python_files():
        if rel.parts[0].endswith(".egg-info"):
            continue
        src = path.read_text()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                        and isinstance(first.value.value, str):
                    seg = ast.get_source_segment(src, first.value) or ""
                    if "\\\n" in seg and not seg.lower().startswith("r"):
                        bad.append(f"{rel}:{first.lineno}")
    assert not bad, bad


def test_run_model_flag_table_lists_every_flag():
    """docs/network.md's "All flags of run_model.py" table names every flag `--help` has."""
    import run_model

    doc = (ROOT / "docs" / "network.md").read_text().split("## All flags of `run_model.py`")[1]
    table = doc.split("\n## ")[0]
    flags = {o for a in run_model.build_parser()._actions for o in a.option_strings
             if o.startswith("--") and o != "--help"}
    missing = sorted(f for f in flags if f"`{f}`" not in table and f"(`{f}`)" not in table)
    assert not missing, missing
