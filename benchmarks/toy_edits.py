"""The per-engine edit table of docs/toy-faces.md, generated: each engine on the shipped toy-faces model,
on the 12 sources the per-engine tests use (`styleclip.toy.evaluate.pick_sources`: the first seeded samples
that do not already show the target), judged by the evaluation classifier and the identity net.

    python -m benchmarks.toy_edits [--doc docs/toy-faces.md] [--threads 2]

Rewrites the block between `<!-- toy-edits:begin -->` and `<!-- toy-edits:end -->` of the doc (machine,
command, table). Fixed seeds: the global and mapper figures repeat exactly; optimization's can move by a
source when the floating-point order of the synthesis changes (a new kernel), the timings always move. docs/benchmarks.md (by
benchmarks/edit_quality.py) measures the same engines on other sources (seeds 0-7, every prompt), so its
counts differ from these.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from styleclip import factory
from styleclip.toy import evaluate as E
from styleclip.toy.assets import load_toy_classifier
from styleclip.types import Latent, Prompt

ROOT = Path(__file__).resolve().parent.parent

BEGIN, END = "<!-- toy-edits:begin -->", "<!-- toy-edits:end -->"
OPT = factory.edit_defaults("toy-faces", "optimize")
GLOB = factory.edit_defaults("toy-faces", "global")
A, B = GLOB["strength"], GLOB["beta"]
KI = factory.edit_defaults("toy-faces", "global", keep_identity=True)
REF = {k: GLOB[k] for k in factory.GLOBAL_DIRECTION_OPTIONS if k in GLOB}  # the toy's refined delta_s
BUDGET = {"beta": KI["beta"], **REF, "auto": True,
          "auto_strength": factory.auto_strength_config("toy-faces", target="identity")}
KI_SHOWN = f"alpha {KI['strength']:g} x 0.25..1 per face keeping identity, beta {KI['beta']:g}"

# (engine, prompt, target, editor options, strength, settings shown)
SHIPPED = "shipped"  # the row's label is read from the shipped file
ROWS = [
    ("optimize", "a face wearing glasses", {"glasses": "glasses"}, OPT, 1.0, f"toy defaults ({OPT['steps']} steps, "
     f"lr {OPT['lr']:g}, l2 {OPT['l2_lambda']:g}, id {OPT['id_lambda']:g}, {OPT['clip_views']} CLIP views, "
     f"from the universal mapper's edit)"),
    ("optimize", "a face with blond hair", {"hair_colour": "blond"}, OPT, 1.0, "same"),
    ("optimize", "a face with a mohawk", {"hair_style": "mohawk"}, OPT, 1.0, "same"),
    ("optimize", "a face with a mohawk", {"hair_style": "mohawk"}, {**OPT, "init": "source"}, 1.0,
     "same, from the source"),
    ("optimize", "a face with a mohawk", {"hair_style": "mohawk"}, {**OPT, "init": "source", "clip_views": 0}, 1.0,
     "same, from the source, CLIP on the image as it is (the paper)"),
    ("optimize", "a face with a mohawk", {"hair_style": "mohawk"}, {**OPT, "space": "styles"}, 1.0, "same, in S"),
    ("global", "a face with a mohawk", {"hair_style": "mohawk"}, BUDGET, KI["strength"], f"toy defaults: {KI_SHOWN}"),
    ("global", "a face wearing glasses", {"glasses": "glasses"}, BUDGET, KI["strength"], "same"),
    ("global", "a face with blond hair", {"hair_colour": "blond"}, BUDGET, KI["strength"], "same"),
    ("global", "a face with blond hair", {"hair_colour": "blond"}, {"beta": B, **REF}, A,
     f"--fixed-strength: alpha {A:g}, beta {B:g}"),
    ("global", "a smiling face", {"expression": "smiling"}, BUDGET, KI["strength"], f"toy defaults: {KI_SHOWN}"),
    ("global", "a smiling face", {"expression": "smiling"}, {"beta": B, **REF}, A,
     f"--fixed-strength: alpha {A:g}, beta {B:g}"),
    ("global", "a smiling face", {"expression": "smiling"}, {"beta": B}, A,
     f"alpha {A:g}, beta {B:g}, the paper's delta_s"),
    ("global", "a smiling face with a mohawk", {"expression": "smiling", "hair_style": "mohawk"}, BUDGET,
     KI["strength"], f"toy defaults: {KI_SHOWN}"),
    ("global", "a smiling face with a mohawk", {"expression": "smiling", "hair_style": "mohawk"},
     {"beta": KI["beta"], "auto": True, "auto_strength": BUDGET["auto_strength"]}, KI["strength"],
     "same, the paper's delta_s"),
    ("mapper", "a face with a mohawk", {"hair_style": "mohawk"}, {"mapper": "a face with a mohawk"}, 1.0, SHIPPED),
    ("mapper", "a face wearing glasses", {"glasses": "glasses"}, {"mapper": "a face wearing glasses"}, 1.0, SHIPPED),
    ("mapper", "a face with blond hair", {"hair_colour": "blond"}, {"mapper": "a face with blond hair"}, 1.0, SHIPPED),
]


def shipped(g, prompt: str) -> str:
    """How the shipped mapper for `prompt` was trained, from its file."""
    from styleclip.store.mappers import find_mapper, load_mapper

    info = load_mapper(find_mapper(prompt, generator=g)).info
    start = "fitted to the universal mapper, then " if info.get("distilled") else ""
    return f"shipped: {start}{info.get('step')} steps"


def measure(n: int = 12) -> list[dict]:
    g, clip = factory.load_generator("toy-faces"), factory.load_clip("toy-faces")
    identity, classifier = factory.load_identity("toy-faces"), load_toy_classifier()
    out = []
    for engine, prompt, target, options, strength, shown in ROWS:
        w = E.pick_sources(g, classifier, target, n, with_hair="hair_colour" in target)
        editor = factory.create_editor(engine, g, clip, identity, **options)
        t0 = time.perf_counter()
        result = editor.edit(Latent(w), Prompt(prompt, neutral="a face", strength=strength))
        seconds = time.perf_counter() - t0
        if shown is SHIPPED:
            shown = shipped(g, prompt)
        with torch.no_grad():
            src = g.synthesis(w)
        s = E.summarize(E.score_edits(classifier, identity, src, result.image, target))
        channels = result.metrics.get("channels_kept")
        out.append({"engine": engine, "prompt": prompt, "settings": shown + (f", {channels} channels" if channels
                                                                            else ""),
                    "n": len(w), "success": round(s["success_rate"] * s["n_success"]), "n_success": s["n_success"],
                    "identity_kept": s["identity_kept_rate"], "unrelated_kept": s["unrelated_kept"],
                    "seconds": seconds})
        print(f"{engine} {prompt} ({shown}): {out[-1]}", file=sys.stderr, flush=True)
    return out


def table(rows: list[dict], command: str) -> str:
    from benchmarks.edit_quality import machine

    m = machine()
    lines = [BEGIN, "", f"Generated by `{command}` on {m['date']} ({m['cpu']}, {m['cores']} cores, load average "
             f"{m['load']} (shared machine), torch {m['torch']}, {m['torch_threads']} threads); do not edit by hand. Sources: the 12 per-engine test "
             "sources per target (first seeded samples not already showing it; with hair for a hair colour).", "",
             "| engine | prompt | settings | success | identity kept | unrelated kept | s (12 edits) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['prompt']} | {r['settings']} | {r['success']} / {r['n_success']} | "
                     f"{r['identity_kept']:.2f} | {r['unrelated_kept']:.2f} | {r['seconds']:.1f} |")
    return "\n".join(lines + ["", END])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "toy-faces.md")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    text = args.doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.doc} has no {BEGIN} ... {END} block")
    command = "python -m benchmarks.toy_edits" + (f" --threads {args.threads}" if args.threads != 2 else "")
    block = table(measure(), command)
    head, rest = text.split(BEGIN, 1)
    args.doc.write_text(head + block + rest.split(END, 1)[1])
    print(f"wrote {args.doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
