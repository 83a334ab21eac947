"""Render bench/bench_deblur.py's JSON as the speed table of docs/benchmarks.md (Markdown on stdout).

    python bench/speed_table.py bench/out/deblur.json

The docs/benchmarks.md table is produced by this script from one benchmark run, so the two agree.
"""
from __future__ import annotations

import json
import sys


def table(report: dict) -> str:
    m = report["machine"]
    lines = [f"Measured by `python bench/bench_deblur.py` in one run on {m['cpu']} "
             f"({m['cores']} cores, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
             f"{'GPU ' + ', '.join(m['gpus']) if m['gpus'] else 'no GPU'}); network "
             f"`--face {report['config']['face']} --levels {report['config']['levels']}` "
             f"({report['params']:,} parameters), weights: {report['weights']}; inputs: "
             f"{report['inputs']}; median of {report['repeats']} runs after "
             f"{report['warmup']} warm-up run(s).", "",
             "| setting | " + " | ".join(f"forward {k} ms (× fp32, PSNR vs fp32)"
                                        for k in report["forward"])
             + " | " + " | ".join(f"train step {k} ms (× fp32)" for k in report["train_step"])
             + " |",
             "|---" * (1 + len(report["forward"]) + len(report["train_step"])) + "|"]
    for s in report["settings"]:
        cells = []
        for k, v in report["forward"].items():
            r = v[s]
            p = r["psnr_vs_fp32_db"]
            cells.append(f"{r['ms']:.0f} ({r['ratio_to_fp32']:.2f}×"
                         + (f", {p:.1f} dB)" if p is not None and s != "fp32" else ")"))
        for k, v in report["train_step"].items():
            cells.append(f"{v[s]['ms']:.0f} ({v[s]['ratio_to_fp32']:.2f}×)")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    orig = report.get("original_tf1_graph")
    if orig:
        cells = [f"{orig[k]['ms']:.0f}" if k in orig else "—" for k in report["forward"]]
        lines.append("| original TF1 graph, fp32 | " + " | ".join(cells)
                     + " |" + " — |" * len(report["train_step"]))
    cmp_ = report.get("train_compare")
    if cmp_:
        lines += ["", f"Training {cmp_['steps']} steps ({cmp_['batch']} patches of vd001) from "
                  "the same initial weights with the project's training command: mean loss of "
                  "the last 20 steps"]
        for s, r in cmp_["runs"].items():
            lines.append(f"- {s}: {r['final_loss_mean_last20']:.5f} "
                         f"({r.get('rel_diff_to_fp32', 0) * 100:.1f}% from fp32), {r['seconds']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(json.load(open(sys.argv[1]))))
