r"""Score trained models on the recipe's validation clips: PSNR/SSIM/identity distance per clip.

Used for the validation and ablation tables of checkpoints/MODEL_CARD.md. For each
`NAME=CHECKPOINT`, every frame of every validation segment listed in `<recipe>/datalist_val.txt`
is deblurred at full size (256x256) with `run_model.py --phase test`'s code (deblur.inference),
then scored with evaluate.py's code (deblur.evaluate: PSNR/SSIM on RGB and Y, dlib identity
distance to the sharp frame). Means are over frames; a clip's row averages the frames of its
segments; the blurry input is scored the same way as the reference row.

    python -m bench.validate_models --recipe data/recipe \
        --model none=checkpoints/none_1_256/best.npz --model both=checkpoints/both_1_256/best.npz \
        --out bench/results/validation.json [--precision bf16|auto] [--no_identity]

`--blank_prior NAME` scores model NAME with zero coefficients and black renders in place of the
3D prior (the same checkpoint may be given twice under two names): what the network loses
without the prior's information. `--centre_only NAME` scores model NAME with every neighbour
frame replaced by the centre one (the input a frame gets when its neighbours are copies of it):
how much of its gain comes from the other frames rather than from deblurring the frame itself.
`--self_ensemble NAME` scores model NAME with the mirror self-ensemble of `run_model.py --phase
test --self_ensemble` (combinable with either control). Each model is otherwise run as its
checkpoint says (`deblur.checkpoint.stored_inference`: self-ensemble, sharp-frame guard), as
`run_model.py --phase test` does; `--no_self_ensemble NAME` and `--sharp_guard NAME=TAU` (0 =
off; `bench.sharp_guard` chooses TAU) override that.

Prints a markdown table per clip and one per segment (with the segment's blur from its
`dataset/<segment>/recipe.json`: a mean over a clip hides a segment the model makes worse);
writes JSON with per-segment, per-clip and overall figures and both tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from common.cli import ArgumentParser, nonnegative_float


def _val_segments(recipe: Path) -> list[str]:
    lines = (recipe / "datalist_val.txt").read_text().split("\n")
    return sorted({ln.split()[0].split("/")[0] for ln in lines if ln.strip()})


def _clip_of(segment: str) -> str:
    return segment.rsplit("__s", 1)[0]


def centre_only_testing_input(segment_dir: Path, dst: Path) -> None:
    """`dst` = the testing-set folder `segment_dir` with each `blur_<k>` linked to its `blur_0`
    (the face/ and render/ priors linked as they are)."""
    src = segment_dir.resolve()
    dst.mkdir(parents=True, exist_ok=True)
    for d in src.iterdir():
        link = dst / d.name
        if d.is_dir() and not link.exists():
            link.symlink_to(src / "blur_0" if d.name.startswith("blur_") else d)


def score_model(name, checkpoint, recipe: Path, segments, work: Path, precision: str, identity: bool,
                control: str | None = None, self_ensemble: bool | None = None,
                sharp_guard: float | None = None):
    """Score one checkpoint on the validation segments; `control`: None, "blank_prior" or
    "centre_only" (the input the network gets, see the module docstring); `self_ensemble`: the
    mirror self-ensemble (deblur.inference.Deblurrer); `sharp_guard`: tau in grey levels. None
    for either: what the checkpoint stores, as `run_model.py --phase test` does."""
    from bench.blank_prior import blank_testing_input
    from deblur.checkpoint import inference_settings, load_generator
    from deblur.evaluate import evaluate
    from deblur.inference import Deblurrer, run_test
    from deblur.precision import set_precision

    set_precision(precision)
    net, config, step = load_generator(checkpoint, verbose=False)
    make_input = {None: None, "blank_prior": blank_testing_input,
                  "centre_only": centre_only_testing_input}[control]
    inp = work / (f"input_{control}" if control else "input")
    inp.mkdir(parents=True, exist_ok=True)
    for s in segments:
        link = inp / s
        if make_input:
            make_input(recipe / "training_set" / s, link)
        elif not link.exists():
            link.symlink_to((recipe / "training_set" / s).resolve())
    out = work / name
    t0 = time.time()
    ens, tau = inference_settings(checkpoint, self_ensemble, sharp_guard)
    run_test(Deblurrer(net, config, self_ensemble=ens, sharp_guard=tau), inp, out,
             log=lambda *a: None)
    seconds = time.time() - t0
    rep = evaluate(out, recipe / "dataset", recipe / "dataset", identity=identity)
    return dict(checkpoint=str(checkpoint), step=step, config=config.to_dict(), seconds=round(seconds, 1),
                blank_prior=control == "blank_prior", centre_only=control == "centre_only",
                self_ensemble=ens, sharp_guard=tau, rows=rep.rows)


def _mean(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None and r[key] != float("inf")]
    return sum(vals) / len(vals) if vals else None


def _group_means(rows, key_of, keys) -> dict:
    groups = {}
    for r in rows:
        groups.setdefault(key_of(r), []).append(r)
    return {g: {**{k: _mean(rs, k) for k in keys}, "frames": len(rs)} for g, rs in sorted(groups.items())}


def summarise(result: dict) -> dict:
    """Per segment, per clip and overall means (over frames) of result and blurry metrics, and
    the per-segment means split into nearly sharp and blurred (segment_groups)."""
    rows = result["rows"]
    keys = [k for k in rows[0] if k not in ("video", "frame", "id_fallback")]
    overall = {k: _mean(rows, k) for k in keys}
    overall["frames"] = len(rows)
    per_segment = _group_means(rows, lambda r: r["video"], keys)
    return dict(per_segment=per_segment, segment_groups=segment_groups(per_segment),
                per_clip=_group_means(rows, lambda r: _clip_of(r["video"]), keys), overall=overall)


def segment_blur(recipe: Path, segment: str) -> str:
    """The blur `preprocess recipe` gave a segment, in words, from its recipe.json: "shake S
    px/frame, exposure E" (E in frame intervals), "still camera, exposure E", or "no blur"; then
    "+ noise N, JPEG Q" when degraded. "?" when the file is missing (not a recipe folder)."""
    f = recipe / "dataset" / segment / "recipe.json"
    if not f.is_file():
        return "?"
    p = json.loads(f.read_text())
    if p.get("exposure", 0.0) == 0.0:
        text = "no blur"
    elif p.get("still"):
        text = f"still camera, exposure {p['exposure']:.1f}"
    else:
        text = f"shake {p['speed']:.1f} px/frame, exposure {p['exposure']:.2f}"
    if p.get("noise_sigma", 0.0) > 0 or p.get("jpeg_quality", 0) > 0:
        text += f" + noise {p['noise_sigma']:.1f}, JPEG {p['jpeg_quality']}"
    return text


def _db(v, signed: bool = False) -> str:
    """A PSNR (or gain) in dB for the tables; None is a mean with no finite frame (every frame
    identical to the sharp one, PSNR +inf, left out of means: common/metrics.py)."""
    if v is None:
        return "identical"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _gain(m: dict):
    return None if m["psnr"] is None or m["blurry_psnr"] is None else m["psnr"] - m["blurry_psnr"]


# A segment whose blurry frames are this close to the sharp ones (mean PSNR, dB) counts as nearly
# sharp: on the recipe's validation set the four KEEP segments (38-48 dB) against the blurred
# ones (23-32 dB). Their losses decide much of the mean (MODEL_CARD.md, "Per segment").
NEAR_SHARP_DB = 35.0


def segment_groups(per_segment: dict) -> dict:
    """Split one model's per-segment means at NEAR_SHARP_DB of blurry PSNR.

    Returns {"near_sharp": {"segments", "gain_sum"}, "blurred": {"segments", "gain_mean"}} in dB:
    the sum for the nearly sharp segments (what they cost the mean), the mean for the blurred
    ones (what deblurring gains). Segments identical to their sharp frames (no finite gain) are
    left out of both."""
    near, blurred = [], []
    for m in per_segment.values():
        gain = _gain(m)
        if gain is not None:
            (near if m["blurry_psnr"] >= NEAR_SHARP_DB else blurred).append(gain)
    return {"near_sharp": {"segments": len(near), "gain_sum": float(sum(near))},
            "blurred": {"segments": len(blurred),
                        "gain_mean": float(sum(blurred) / len(blurred)) if blurred else None}}


def segment_table(results: dict, recipe: Path) -> str:
    """Markdown: one row per validation segment, its blur, blurry PSNR and each model's PSNR
    and gain over the blurry input (dB)."""
    names = list(results)
    first = results[names[0]]["summary"]["per_segment"]
    head = "| segment | blur | frames | blurry PSNR |" + "".join(f" {n} PSNR | {n} gain |" for n in names)
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for seg, b in first.items():
        row = f"| {seg} | {segment_blur(recipe, seg)} | {b['frames']} | {_db(b['blurry_psnr'])} |"
        for n in names:
            m = results[n]["summary"]["per_segment"][seg]
            gain = _gain(m)
            row += f" {_db(m['psnr'])} | {'n/a' if gain is None else _db(gain, True)} |"
        lines.append(row)
    groups = {n: segment_groups(results[n]["summary"]["per_segment"]) for n in names}
    g0 = groups[names[0]]
    lines.append(f"| nearly sharp (blurry >= {NEAR_SHARP_DB:g} dB): sum of gains | | "
                 f"{g0['near_sharp']['segments']} segments | |"
                 + "".join(f" | {_db(groups[n]['near_sharp']['gain_sum'], True)} |" for n in names))
    lines.append(f"| blurred: mean gain | | {g0['blurred']['segments']} segments | |"
                 + "".join(f" | {_db(groups[n]['blurred']['gain_mean'], True)} |" for n in names))
    return "\n".join(lines)


def table(results: dict) -> str:
    names = list(results)
    first = results[names[0]]["summary"]
    have_id = first["overall"].get("id_dist") is not None
    head = "| clip | frames | blurry PSNR | blurry SSIM |" + ("blurry ID |" if have_id else "")
    for n in names:
        head += f" {n} PSNR | {n} SSIM |" + (f" {n} ID |" if have_id else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    clips = list(first["per_clip"]) + ["ALL (mean over frames)"]
    for c in clips:
        pick = (lambda s: s["overall"]) if c.startswith("ALL") else (lambda s, c=c: s["per_clip"][c])
        b = pick(first)
        row = f"| {c} | {b['frames']} | {_db(b['blurry_psnr'])} | {b['blurry_ssim']:.4f} |"
        if have_id:
            row += f" {b['blurry_id_dist']:.4f} |"
        for n in names:
            m = pick(results[n]["summary"])
            row += f" {_db(m['psnr'])} | {m['ssim']:.4f} |" + (f" {m['id_dist']:.4f} |" if have_id else "")
        lines.append(row)
    return "\n".join(lines)


def main(argv=None) -> int:
    from common.flags import add_precision_flag

    ap = ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", required=True, type=Path, help="output folder of `preprocess recipe`")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT")
    ap.add_argument("--out", type=Path, default=Path("bench/out/validation.json"))
    # fp32 by default: every figure of the model card is fp32, and bf16 is emulated (minutes
    # per frame) on CPUs without AVX512-BF16/AMX.
    add_precision_flag(ap, default="fp32")
    ap.add_argument("--no_identity", action="store_true")
    ap.add_argument("--blank_prior", action="append", default=[], metavar="NAME",
                    help="score model NAME with a blank 3D prior (zero coefficients, black renders): "
                         "how much does the network rely on the prior?")
    ap.add_argument("--centre_only", action="append", default=[], metavar="NAME",
                    help="score model NAME with every neighbour frame replaced by the centre one: "
                         "how much of its gain comes from the other frames?")
    ap.add_argument("--self_ensemble", action="append", default=[], metavar="NAME",
                    help="score model NAME with the mirror self-ensemble (each frame also deblurred "
                         "mirrored, the two averaged)")
    ap.add_argument("--no_self_ensemble", action="append", default=[], metavar="NAME",
                    help="score model NAME without the self-ensemble even if its checkpoint stores it")
    ap.add_argument("--sharp_guard", action="append", default=[], metavar="NAME=TAU",
                    help="score model NAME with the sharp-frame guard TAU (grey levels, 0 = off) "
                         "instead of the one its checkpoint stores")
    ap.add_argument("--work", type=Path, default=None, help="folder for the restored frames (default: temp)")
    a = ap.parse_args(argv)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    segments = _val_segments(a.recipe)
    names = {m.partition("=")[0] for m in a.model}
    for flag in ("blank_prior", "centre_only", "self_ensemble", "no_self_ensemble"):
        unknown = set(getattr(a, flag)) - names
        if unknown:
            ap.error(f"--{flag} {sorted(unknown)[0]}: no --model of that name")
    guards = {}
    for spec in a.sharp_guard:
        name, _, tau = spec.partition("=")
        if name not in names:
            ap.error(f"--sharp_guard {spec}: no --model of that name")
        try:
            guards[name] = nonnegative_float(tau)
        except argparse.ArgumentTypeError as e:
            ap.error(f"--sharp_guard {spec}: {e}")
    clash = set(a.self_ensemble) & set(a.no_self_ensemble)
    if clash:
        ap.error(f"--self_ensemble and --no_self_ensemble both name {sorted(clash)[0]}")
    both = set(a.blank_prior) & set(a.centre_only)
    if both:
        ap.error(f"--blank_prior and --centre_only both name {sorted(both)[0]}: give the checkpoint "
                 f"twice under two names, one control each")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        for spec in a.model:
            name, _, path = spec.partition("=")
            control = ("blank_prior" if name in a.blank_prior
                       else "centre_only" if name in a.centre_only else None)
            res = score_model(name, path, a.recipe, segments, work, a.precision, not a.no_identity,
                              control=control,
                              self_ensemble=(True if name in a.self_ensemble else
                                             False if name in a.no_self_ensemble else None),
                              sharp_guard=guards.get(name))
            res["summary"] = summarise(res)
            results[name] = res
            o = res["summary"]["overall"]
            print(f"{name}: {o['frames']} frames, PSNR {_db(o['psnr'])} (blurry {_db(o['blurry_psnr'])}), "
                  f"SSIM {o['ssim']:.4f} (blurry {o['blurry_ssim']:.4f}), {res['seconds']} s", flush=True)
    md = table(results)
    seg_md = segment_table(results, a.recipe)
    print(md + "\n\n" + seg_md)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(command=" ".join(sys.argv), machine=platform.processor() or platform.machine(),
                precision=a.precision, segments=segments)
    a.out.write_text(json.dumps(dict(meta=meta, table=md, segment_table=seg_md, models={
        n: {k: v for k, v in r.items() if k != "rows"} for n, r in results.items()}), indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
