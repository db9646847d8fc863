"""Edit quality and speed of the three engines on one prompt list (issue #10), as the paper compares
methods: the target attribute reached against the person kept.

    python -m benchmarks.edit_quality [--model toy-faces] [--seeds 16] [--engines optimize,global,mapper]
                                      [--out docs/benchmarks.md]

Sources: seeds 0..N-1 -> z -> mapping -> truncation 0.7 -> W+ (as `styleclip edit --seeds`). Per engine and
prompt (styleclip.toy.evaluate.EDIT_PROMPTS): success rate among the sources that did not already show the
target (evaluation classifier, never in a loss), unrelated attributes kept, identity cosine and the rate at or
above the identity net's verification threshold, CLIP gain (cos(edit, text) - cos(source, text)) and wall
seconds per edit (batches of --batch-size, as the CLI edits; engines built as the CLI builds them). The mapper
uses a mapper trained for this generator when one is found (its recorded training time is reported), else
trains one per prompt for --mapper-steps and times it. Global directions are also measured on a beta x alpha
grid (the disentanglement trade-off), and `--opt-grid` measures optimization settings.

Writes a Markdown report (tables with sample sizes, machine, the exact command), PNG plots into
`<out folder>/benchmarks/` and the raw figures as JSON beside them. Fixed seeds give the same figures (timings
aside). Needs matplotlib (`pip install styleclip[bench]`).
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from styleclip import factory
from styleclip.errors import StyleClipError
from styleclip.sources import latents_from_seeds
from styleclip.toy import evaluate as E
from styleclip.types import Latent, Prompt

ROOT = Path(__file__).resolve().parent.parent

ENGINES = ("optimize", "global", "global-paper", "global-auto", "global-keep-identity", "mapper", "universal",
           "universal-auto", "universal-wplus")
# the universal mapper is trained without any text, so every benchmark prompt is held out of its training
HELD_OUT_ALL = ("universal", "universal-auto", "universal-wplus")
NEUTRAL = "a face"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def eta(t0: float, done: int, total: int) -> str:
    left = (time.perf_counter() - t0) / done * (total - done)
    return f"about {left:.0f} s left"


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_grid(text: str) -> list[dict]:
    """'steps=50,100;l2_lambda=0.008,0.05' -> the cartesian product as a list of option dicts."""
    if not text:
        return []
    axes = {}
    for part in text.split(";"):
        key, _, vals = part.partition("=")
        key = key.strip().replace("-", "_")
        if key not in ("steps", "lr", "l2_lambda", "id_lambda", "clip_views") or not vals:
            raise SystemExit(f"--opt-grid: cannot read {part!r} (keys: steps, lr, l2_lambda, id_lambda, clip_views)")
        axes[key] = [int(v) if key in ("steps", "clip_views") else float(v) for v in vals.split(",") if v.strip()]
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def select_prompts(spec: str) -> dict[str, dict]:
    """'all', group names and/or prompt texts separated by ';'."""
    every = E.all_prompts()
    if spec.strip() == "all":
        return every
    out = {}
    for item in (s.strip() for s in spec.split(";") if s.strip()):
        if item in E.EDIT_PROMPTS:
            out.update(E.EDIT_PROMPTS[item])
        elif item in every:
            out[item] = every[item]
        else:
            raise SystemExit(f"--prompts: {item!r} is neither a group ({', '.join(E.EDIT_PROMPTS)}) "
                             "nor a prompt of styleclip.toy.evaluate.EDIT_PROMPTS")
    return out


def first_of_groups() -> str:
    return ";".join(next(iter(ps)) for ps in E.EDIT_PROMPTS.values())


# ---- measuring ----------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args):
        self.args = args
        self.model = args.model
        self.g = factory.load_generator(args.model, device=args.device)
        self.clip = factory.load_clip(args.model, device=args.device)
        try:
            self.identity = factory.load_identity(args.model, device=args.device)
        except StyleClipError as e:
            log(f"no identity net ({e}); identity figures left out")
            self.identity = None
        self.classifier = None
        if args.model == "toy-faces":
            from styleclip.toy.assets import load_toy_classifier

            self.classifier = load_toy_classifier()
        self.threshold = E.identity_threshold() if args.model == "toy-faces" else args.id_threshold
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        self.source = latents_from_seeds(self.g, seeds, args.truncation)
        with torch.no_grad():
            self.source_img = self._render(self.source.w_plus)
        self._text: dict[str, torch.Tensor] = {}

    def _render(self, w_plus):
        bs = self.args.batch_size
        return torch.cat([self.g.synthesis(w_plus[i:i + bs]) for i in range(0, len(w_plus), bs)])

    def text(self, prompt: str) -> torch.Tensor:
        if prompt not in self._text:
            self._text[prompt] = self.clip.encode_text([prompt])
        return self._text[prompt]

    @torch.no_grad()
    def score(self, prompt: str, target: dict, src: torch.Tensor, edit: torch.Tensor) -> dict:
        """Per-sample scores (classifier + identity when available) and CLIP similarities."""
        t = self.text(prompt)
        out: dict = {}
        if self.classifier is not None:
            out = E.score_edits(self.classifier, self.identity, src, edit, target, threshold=self.threshold)
        else:
            out = {"success": [], "already": [], "unrelated_kept": []}
            if self.identity is not None:
                cos = (self.identity.embed(src) * self.identity.embed(edit)).sum(-1).tolist()
                out["identity_cosine"] = cos
                if self.threshold is not None:
                    out["identity_kept"] = [c >= self.threshold for c in cos]
        out["clip_before"] = self.clip.similarity(src, t)[:, 0].tolist()
        out["clip_after"] = self.clip.similarity(edit, t)[:, 0].tolist()
        return out

    def run_editor(self, editor, prompt: Prompt, w_plus=None) -> tuple[torch.Tensor, float]:
        """Edited images of all sources in batches of --batch-size, and wall seconds per edit."""
        w_plus = self.source.w_plus if w_plus is None else w_plus
        bs, imgs, t0 = self.args.batch_size, [], time.perf_counter()
        for i in range(0, len(w_plus), bs):
            imgs.append(editor.edit(Latent(w_plus[i:i + bs]), prompt).image.detach())
        return torch.cat(imgs), (time.perf_counter() - t0) / len(w_plus)


def summary(scores: dict) -> dict:
    out = E.summarize(scores) if scores.get("success") else {"n": len(scores["clip_after"])}
    if not scores.get("success") and "identity_cosine" in scores:
        out["identity_cosine"] = E._mean(scores["identity_cosine"])
        if "identity_kept" in scores:
            out["identity_kept_rate"] = E._mean(scores["identity_kept"])
    out["clip_gain"] = E._mean(a - b for a, b in zip(scores["clip_after"], scores["clip_before"]))
    return out


def bench_optimize(b: Bench, prompts: dict, opts: dict, seeds_w=None) -> list[dict]:
    editor = factory.create_editor("optimize", b.g, b.clip, b.identity if opts["id_lambda"] > 0 else None,
                                   **opts)
    w = b.source.w_plus if seeds_w is None else seeds_w
    src = b.source_img[:len(w)]
    rows, t0 = [], time.perf_counter()
    for k, (prompt, target) in enumerate(prompts.items(), 1):
        img, sec = b.run_editor(editor, Prompt(prompt, neutral=NEUTRAL), w)
        rows.append({"prompt": prompt, "target": target, "sec_per_edit": sec,
                     "scores": b.score(prompt, target, src, img)})
        log(f"  optimize {opts}: {prompt!r} {sec:.2f} s/edit ({k}/{len(prompts)}, {eta(t0, k, len(prompts))})")
    return rows


def refinements(args, paper: bool = False) -> dict:
    """The global direction's refinements (--ridge, --identity-damping); paper: none, the paper's delta_s."""
    return {} if paper else {k: v for k, v in (("ridge", args.ridge), ("identity_damping", args.identity_damping))
                             if v is not None}


def describe_refinements(args, paper: bool = False) -> str:
    r = refinements(args, paper)
    return ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in r.items()) or "the paper's delta_s"


def global_editor(b: Bench, beta: float, paper: bool = False):
    """Shipped / cached relevance when present; else (per --relevance) the fast estimate, computed once."""
    how = b.args.relevance
    common = dict(beta=beta, alpha=None, identity=b.identity, **refinements(b.args, paper))
    if how not in ("auto", "exact", "fast"):
        return factory.create_editor("global", b.g, b.clip, relevance=how, **common), f"file {how}"
    if how in ("auto", "exact"):
        try:
            return factory.create_editor("global", b.g, b.clip, relevance_method="exact",
                                         compute_missing=how == "exact", **common), "exact"
        except StyleClipError as e:
            if how == "exact":
                raise
            log(f"no exact relevance ({' '.join(str(e).split())[:80]}...); using the fast estimate")
    return factory.create_editor("global", b.g, b.clip, relevance_method="fast", compute_missing=True,
                                 **common), "fast estimate"


def bench_global(b: Bench, prompts: dict) -> tuple[list[dict], list[dict], dict]:
    from styleclip import stylespace as ss

    a = b.args
    t0 = time.perf_counter()
    editor, rel_kind = global_editor(b, a.beta)
    setup = time.perf_counter() - t0
    log(f"  global: relevance ({rel_kind}) ready in {setup:.1f} s")
    rows, grid = [], []
    with torch.no_grad():
        styles = b.g.styles(b.source.w_plus)
    for prompt, target in prompts.items():
        p = Prompt(prompt, neutral=NEUTRAL, strength=a.alpha)
        try:
            img, sec = b.run_editor(editor, p)
            rows.append({"prompt": prompt, "target": target, "sec_per_edit": sec,
                         "channels_kept": editor.direction(p)[1], "scores": b.score(prompt, target, b.source_img, img)})
        except StyleClipError as e:
            rows.append({"prompt": prompt, "target": target, "error": str(e)})
        for beta in a.betas:
            try:
                ds, kept, _ = editor.direction(p, beta)
            except StyleClipError:
                for alpha in a.alphas:
                    grid.append({"prompt": prompt, "beta": beta, "alpha": alpha, "channels_kept": 0})
                continue
            for alpha in a.alphas:
                with torch.no_grad():
                    edited = ss.apply_direction(styles, ds, alpha)
                    bs = a.batch_size
                    img = torch.cat([b.g.synthesis_from_styles([s[i:i + bs] for s in edited])
                                     for i in range(0, len(b.source_img), bs)])
                grid.append({"prompt": prompt, "target": target, "beta": beta, "alpha": alpha,
                             "channels_kept": kept, "scores": b.score(prompt, target, b.source_img, img)})
        log(f"  global: {prompt!r} done ({len(a.betas)} betas x {len(a.alphas)} alphas)")
    return rows, grid, {"relevance": rel_kind, "setup_seconds": setup}


def bench_mapper(b: Bench, prompts: dict) -> tuple[list[dict], dict]:
    from styleclip.editors.mapper import MapperConfig, MapperEditor
    from styleclip.store.mappers import load_mapper, trained_mappers
    from styleclip.util.names import normalize_name
    from styleclip.training.mapper import MapperTrainConfig, train_mapper

    a = b.args
    found = trained_mappers(generator=b.g) if not a.train_mappers else {}
    rows, t_all = [], time.perf_counter()
    for k, (prompt, target) in enumerate(prompts.items(), 1):
        path = found.get(normalize_name(prompt))
        if path is not None:
            mf = load_mapper(path)
            train_s = mf.info.get("train_seconds")
            steps = mf.info.get("step")
            origin = f"found {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
            mapper, scale = mf, float(mf.info.get("residual_scale", 0.1))
        else:
            cfg = MapperTrainConfig(steps=a.mapper_steps, seed=a.mapper_seed, num_latents=a.mapper_latents,
                                    val_interval=a.mapper_steps, save_interval=a.mapper_steps,
                                    image_interval=a.mapper_steps, log_interval=a.mapper_steps)
            t0 = time.perf_counter()
            teacher, start = factory.distill_teacher(a.mapper_init, b.g, b.clip, prompt, model=b.model,
                                                     neutral=NEUTRAL)
            res = train_mapper(b.g, b.clip, prompt, identity=b.identity, config=cfg, teacher=teacher)
            train_s, steps = time.perf_counter() - t0, res.step
            origin = "trained here" + (f" from the universal mapper (fitted in {cfg.distill_steps} steps)"
                                       if teacher is not None else " from a random start")
            mapper, scale = res.mapper, cfg.residual_scale
            log(f"  mapper: trained {prompt!r} for {steps} steps in {train_s:.1f} s ({k}/{len(prompts)}, "
                f"{eta(t_all, k, len(prompts))}; start: {start})")
        editor = MapperEditor(b.g, b.clip, None, config=MapperConfig(mapper=mapper, residual_scale=scale,
                                                                     batch_size=a.batch_size))
        img, sec = b.run_editor(editor, Prompt(prompt, neutral=NEUTRAL))
        rows.append({"prompt": prompt, "target": target, "sec_per_edit": sec, "train_seconds": train_s,
                     "train_steps": steps, "mapper": origin, "scores": b.score(prompt, target, b.source_img, img)})
    return rows, {}


def bench_with_editor(b: Bench, prompts: dict, editor, strength: float = 1.0) -> list[dict]:
    """Rows of an engine built once for every prompt (global auto alpha, the universal mapper)."""
    rows, t0 = [], time.perf_counter()
    for k, (prompt, target) in enumerate(prompts.items(), 1):
        bs, imgs, extra = b.args.batch_size, [], []
        t1 = time.perf_counter()
        for i in range(0, len(b.source.w_plus), bs):
            res = editor.edit(Latent(b.source.w_plus[i:i + bs]), Prompt(prompt, neutral=NEUTRAL, strength=strength))
            imgs.append(res.image.detach())
            chosen = res.metrics.get("alpha", res.metrics.get("strength"))
            extra += chosen if isinstance(chosen, list) else [chosen] * res.image.shape[0]
        sec = (time.perf_counter() - t1) / len(b.source.w_plus)
        rows.append({"prompt": prompt, "target": target, "sec_per_edit": sec, "strengths": extra,
                     "scores": b.score(prompt, target, b.source_img, torch.cat(imgs))})
        log(f"  {editor.name}: {prompt!r} {sec:.3f} s/edit ({k}/{len(prompts)}, {eta(t0, k, len(prompts))})")
    return rows


def auto_config(b: Bench, **overrides):
    return factory.auto_strength_config(b.model, b.identity, **overrides, **(
        {} if b.model == "toy-faces" or b.threshold is None else {"identity_threshold": b.threshold}))


# ---- report -------------------------------------------------------------------------------------------
def fmt(x, digits=2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def rate(s: dict, key: str, n_key: str) -> str:
    return f"{fmt(s.get(key))} (n={s.get(n_key, 0)})" if key in s else "n/a"


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {"cpu": cpu, "cores": os.cpu_count(), "load": load, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}


def engine_summary(rows: list[dict]) -> dict:
    ok = [r for r in rows if "scores" in r]
    if not ok:
        return {}
    s = summary(E.concat_scores([r["scores"] for r in ok]))
    s["sec_per_edit"] = sum(r["sec_per_edit"] for r in ok) / len(ok)
    return s


def best_setting(points: list[tuple[dict, dict]]) -> tuple[dict, dict] | None:
    """The setting with the highest good-edit rate (success and identity kept); ties: higher success, then
    the earlier (weaker) setting."""
    cand = [(k, s) for k, s in points if not math.isnan(s.get("good_rate", float("nan")))]
    if not cand:
        return None
    return max(enumerate(cand), key=lambda t: (t[1][1]["good_rate"], t[1][1]["success_rate"], -t[0]))[1]


def write_report(results: dict, out: Path, plots: Path) -> None:
    a = results["args"]
    m = results["machine"]
    L = ["# Edit quality and speed of the three engines", "",
         f"Model set `{a['model']}`, {a['seeds']} sources (seeds {a['first_seed']}..{a['first_seed'] + a['seeds'] - 1}, "
         f"truncation {a['truncation']}), {len(results['prompts'])} prompts, batches of {a['batch_size']}. "
         "Regenerate with:", "", "```", results["command"], "```", "",
         f"Machine: {m['cpu']}, {m['cores']} cores (load average at the start {m.get('load', 'n/a')}: the "
         f"machine may be shared), torch {m['torch']} ({m['torch_threads']} threads), "
         f"Python {m['python']}, {m['date']}; generator {results['generator']}; total {results['total_seconds']:.0f} s.",
         "", "Success: the evaluation classifier (never used in a loss) reads every target value on the edit, "
         "counted over the sources that did not already show it (n). Identity kept: identity cosine at or above "
         f"the identity net's verification threshold ({fmt(results['threshold'], 3)}), over all edits (n). "
         "Unrelated kept: fraction of the other attributes read unchanged. CLIP gain: cos(edit, prompt) - "
         "cos(source, prompt). Good: success and identity kept. Seconds: wall time per edit.", "",
         f"Engines as the CLI builds them, neutral text '{NEUTRAL}'. Mapper: a mapper trained for this generator "
         "is used when one is found (its recorded training time is shown); otherwise one is trained here per "
         f"prompt for {a['mapper_steps']} steps on {a['mapper_latents']} latents sampled from seed "
         f"{a['mapper_seed']} (not the sources' seeds), started as `train-mapper --init {a['mapper_init']}` "
         "does (auto: first fitted to the universal mapper's edit for the prompt when one is found). "
         "Global: the CLI's `--engine global` uses the model set's default strength mode (toy-faces: "
         "global-keep-identity, an identity budget per face; the global row is `--fixed-strength`, and its "
         "beta x alpha grid below uses the same delta_s); global-paper is the paper's delta_s at the global row's "
         "alpha and beta.", ""]
    L += ["## Summary", "", "| engine | settings | success | identity kept | identity cos | unrelated kept | "
          "good | CLIP gain | s / edit | setup |", "|---|---|---|---|---|---|---|---|---|---|"]
    for eng in a["engines"]:
        r = results["engines"].get(eng, {})
        s = r.get("summary") or {}
        if not s:
            L.append(f"| {eng} | {r.get('settings', '')} | failed: {r.get('error', 'no result')} | | | | | | | |")
            continue
        L.append(f"| {eng} | {r['settings']} | {rate(s, 'success_rate', 'n_success')} | "
                 f"{rate(s, 'identity_kept_rate', 'n')} | {fmt(s.get('identity_cosine'))} | "
                 f"{fmt(s.get('unrelated_kept'))} | {fmt(s.get('good_rate'))} | {fmt(s['clip_gain'], 3)} | "
                 f"{fmt(s['sec_per_edit'], 3)} | {r.get('setup', '')} |")
    L += ["", f"![success vs identity kept]({plots.name}/success_vs_identity.png)", ""]
    for eng in a["engines"]:
        r = results["engines"].get(eng, {})
        if not r.get("rows"):
            continue
        extra = {"mapper": "training", "global": "channels"}.get(eng)
        L += [f"## {eng}: per prompt", "", "| group | prompt | success | identity kept | identity cos | "
              f"unrelated kept | CLIP gain | s / edit |{' ' + extra + ' |' if extra else ''}",
              "|---|---|---|---|---|---|---|---|" + ("---|" if extra else "")]
        for row in r["rows"]:
            if "error" in row:
                L.append(f"| {E.prompt_group(row['prompt'])} | {row['prompt']} | failed: {row['error']} |")
                continue
            s = row["summary"]
            cell = ""
            if eng == "mapper":
                t = row.get("train_seconds")
                cell = f" {fmt(t, 0) + ' s' if t is not None else 'not recorded'}, {row.get('train_steps')} steps, {row['mapper']} |"
            elif eng == "global":
                cell = f" {row['channels_kept']} |"
            L.append(f"| {E.prompt_group(row['prompt'])} | {row['prompt']} | {rate(s, 'success_rate', 'n_success')} | "
                     f"{rate(s, 'identity_kept_rate', 'n')} | {fmt(s.get('identity_cosine'))} | "
                     f"{fmt(s.get('unrelated_kept'))} | {fmt(s['clip_gain'], 3)} | {fmt(row['sec_per_edit'], 3)} |{cell}")
        L.append("")
    g = results["engines"].get("global", {})
    if g.get("grid"):
        L += ["## Global directions: beta x alpha", "",
              f"All prompts pooled ({a['seeds']} sources each); channels: mean kept per prompt.", "",
              "| beta | alpha | channels | success | identity kept | identity cos | unrelated kept | good | CLIP gain |",
              "|---|---|---|---|---|---|---|---|---|"]
        for p in g["grid"]:
            s = p["summary"]
            L.append(f"| {p['beta']:g} | {p['alpha']:g} | {p['channels_kept']:.0f} | {rate(s, 'success_rate', 'n_success')} | "
                     f"{rate(s, 'identity_kept_rate', 'n')} | {fmt(s.get('identity_cosine'))} | "
                     f"{fmt(s.get('unrelated_kept'))} | {fmt(s.get('good_rate'))} | {fmt(s.get('clip_gain'), 3)} |")
        L += ["", f"![global alpha/beta]({plots.name}/global_alpha_beta.png)", ""]
    og = results.get("opt_grid") or []
    if og:
        L += ["## Optimization settings", "", f"Prompts: {'; '.join(results['grid_prompts'])}; "
              f"{a['grid_seeds']} sources each.", "",
              "| steps | lr | l2_lambda | id_lambda | success | identity kept | identity cos | unrelated kept | good | s / edit |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for p in og:
            s, o = p["summary"], p["options"]
            L.append(f"| {o['steps']} | {o['lr']:g} | {o['l2_lambda']:g} | {o['id_lambda']:g} | "
                     f"{rate(s, 'success_rate', 'n_success')} | {rate(s, 'identity_kept_rate', 'n')} | "
                     f"{fmt(s.get('identity_cosine'))} | {fmt(s.get('unrelated_kept'))} | {fmt(s.get('good_rate'))} | "
                     f"{fmt(s['sec_per_edit'], 3)} |")
        L += ["", f"![optimization settings]({plots.name}/optimize_grid.png)", ""]
    L += ["## What the measurements suggest", ""] + [f"- {x}" for x in results["suggestions"]] + [""]
    out.write_text("\n".join(L))


def suggestions(results: dict) -> list[str]:
    out = []
    g = results["engines"].get("global", {})
    best = best_setting([({"alpha": p["alpha"], "beta": p["beta"]}, p["summary"]) for p in g.get("grid", [])])
    if best and best[1]["good_rate"] == 0:
        out.append("global directions: no alpha/beta of the grid gives a single good edit (success and identity "
                   "kept); nothing to choose from.")
    elif best:
        k, s = best
        out.append(f"global directions: alpha {k['alpha']:g}, beta {k['beta']:g} has the highest good-edit rate "
                   f"({fmt(s['good_rate'])}; success {fmt(s['success_rate'])}, identity kept "
                   f"{fmt(s['identity_kept_rate'])}) on this grid (current defaults: {results.get('global_defaults')}).")
    best = best_setting([(p["options"], p["summary"]) for p in results.get("opt_grid") or []])
    if best and best[1]["good_rate"] == 0:
        out.append("optimization: no setting tried gives a single good edit (success and identity kept).")
    elif best:
        k, s = best
        out.append(f"optimization: steps {k['steps']}, lr {k['lr']:g}, l2_lambda {k['l2_lambda']:g}, id_lambda "
                   f"{k['id_lambda']:g} has the highest good-edit rate ({fmt(s['good_rate'])}; success "
                   f"{fmt(s['success_rate'])}, identity kept {fmt(s['identity_kept_rate'])}) among the settings tried.")
    for eng in ENGINES:
        s = results["engines"].get(eng, {}).get("summary") or {}
        if s:
            out.append(f"{eng}: {fmt(s['sec_per_edit'], 3)} s per edit at the settings of the summary table.")
    return out or ["nothing measured"]


def plot(results: dict, plots: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots.mkdir(parents=True, exist_ok=True)
    colours = {"optimize": "tab:blue", "global": "tab:orange", "mapper": "tab:green"}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for eng, r in results["engines"].items():
        pts = [row["summary"] for row in r.get("rows", []) if "summary" in row]
        pts = [s for s in pts if not math.isnan(s.get("success_rate", float("nan")))
               and "identity_kept_rate" in s]
        if pts:
            ax.scatter([s["identity_kept_rate"] for s in pts], [s["success_rate"] for s in pts], alpha=0.45,
                       color=colours.get(eng), s=25)
        s = r.get("summary") or {}
        if "identity_kept_rate" in s and "success_rate" in s:
            ax.scatter([s["identity_kept_rate"]], [s["success_rate"]], color=colours.get(eng), s=140,
                       edgecolor="black", label=f"{eng} (all prompts)")
    ax.set_xlabel("identity kept (rate)")
    ax.set_ylabel("target reached (success rate)")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Success vs identity kept (small dots: single prompts)")
    fig.tight_layout()
    fig.savefig(plots / "success_vs_identity.png", dpi=110)
    plt.close(fig)

    grid = results["engines"].get("global", {}).get("grid") or []
    if grid:
        betas = sorted({p["beta"] for p in grid})
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        for beta in betas:
            pts = sorted((p for p in grid if p["beta"] == beta), key=lambda p: p["alpha"])
            al = [p["alpha"] for p in pts]
            sr = [p["summary"].get("success_rate", float("nan")) for p in pts]
            ik = [p["summary"].get("identity_kept_rate", float("nan")) for p in pts]
            axes[0].plot(al, sr, marker="o", label=f"beta {beta:g}")
            axes[1].plot(al, ik, marker="o", label=f"beta {beta:g}")
            axes[2].plot(ik, sr, marker="o", label=f"beta {beta:g}")
        lim = (-0.03, 1.03)
        axes[0].set(xlabel="alpha", ylabel="success rate", title="Target reached", ylim=lim)
        axes[1].set(xlabel="alpha", ylabel="identity kept rate", title="Identity kept", ylim=lim)
        axes[2].set(xlabel="identity kept rate", ylabel="success rate", title="Trade-off (along alpha)",
                    xlim=lim, ylim=lim)
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plots / "global_alpha_beta.png", dpi=110)
        plt.close(fig)

    og = results.get("opt_grid") or []
    if og:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for p in og:
            s, o = p["summary"], p["options"]
            if "identity_kept_rate" in s:
                ax.scatter([s["identity_kept_rate"]], [s["success_rate"]], s=40)
                ax.annotate(f"{o['steps']} st, l2 {o['l2_lambda']:g}, id {o['id_lambda']:g}, lr {o['lr']:g}",
                            (s["identity_kept_rate"], s["success_rate"]), fontsize=6)
        ax.set(xlabel="identity kept (rate)", ylabel="success rate", title="Optimization settings",
               xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(plots / "optimize_grid.png", dpi=110)
        plt.close(fig)


# ---- main ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="toy-faces")
    p.add_argument("--seeds", type=int, default=16, help="Number of sources (seeds first-seed .. +N-1).")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--truncation", type=float, default=0.7)
    p.add_argument("--prompts", default="all", help="'all', group names and/or prompts, separated by ';'.")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--batch-size", type=int, default=4, help="Sources edited together (the CLI's default).")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    p.add_argument("--id-threshold", type=float, default=None, help="Identity-kept threshold for non-toy "
                   "models (toy-faces: the identity net's verification threshold).")
    g = p.add_argument_group("optimize")
    g.add_argument("--steps", type=int, default=None, help="[default: the model's tuned setting, else 50]")
    g.add_argument("--lr", type=float, default=None, help="[default: tuned, else 0.1]")
    g.add_argument("--l2-lambda", type=float, default=None, help="[default: tuned, else 0.008]")
    g.add_argument("--id-lambda", type=float, default=None, help="[default: tuned, else 0.005]")
    g.add_argument("--opt-init", choices=("source", "universal"), default=None, help="Where optimization starts "
                   "(default: the model set's; toy-faces: universal, the universal mapper's edit).")
    g.add_argument("--clip-views", type=int, default=None, help="Shifted copies CLIP scores (0: the image as it "
                   "is) [default: tuned, else 0].")
    g.add_argument("--opt-grid", default="", help="e.g. 'steps=25,50;l2_lambda=0.008,0.05;id_lambda=0.005,0.5' "
                   "(cartesian product; on --grid-prompts x --grid-seeds).")
    g.add_argument("--grid-prompts", default=None, help="Prompts of --opt-grid (default: first of each group).")
    g.add_argument("--grid-seeds", type=int, default=4)
    g = p.add_argument_group("global")
    g.add_argument("--alpha", type=float, default=None, help="Strength of the summary row [default: tuned, else 4.1].")
    g.add_argument("--beta", type=float, default=None, help="Threshold of the summary row [default: tuned, else 0.15].")
    g.add_argument("--ridge", type=float, default=None, help="Decorrelated channel scores (stylespace.delta_s) "
                   "[default: tuned, else off; 0: off].")
    g.add_argument("--identity-damping", type=float, default=None, help="q0 of the identity damping "
                   "(styleclip.stylespace.identity_cost) [default: tuned, else off; 0: off].")
    g.add_argument("--alphas", type=floats, default="0.5,1,2,3,4.1,6")
    g.add_argument("--betas", type=floats, default="0.1,0.15,0.2,0.3,0.4")
    g.add_argument("--relevance", default="auto", help="auto (shipped/cached exact, else fast), exact, fast, "
                   "or an fs3 .npy file.")
    g = p.add_argument_group("mapper")
    g.add_argument("--mapper-steps", type=int, default=100, help="Steps per prompt when no trained mapper is found.")
    g.add_argument("--mapper-seed", type=int, default=2021, help="Seed of the training latents (not the "
                   "benchmark's source seeds).")
    g.add_argument("--mapper-latents", type=int, default=1000)
    g.add_argument("--train-mappers", action="store_true", help="Train even where a trained mapper is found.")
    g.add_argument("--mapper-init", default="auto", help="Start of the mappers trained here, as `train-mapper "
                   "--init`: auto (the universal mapper when one is found), universal, none or a file.")
    p.add_argument("--universal", default="universal", help="The universal mapper file (default: the one found "
                   "for this generator).")
    return p


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from styleclip.factory import edit_defaults

    tuned_opt, tuned_glob = edit_defaults(args.model, "optimize"), edit_defaults(args.model, "global")
    for name, key, tuned, fallback in (("steps", "steps", tuned_opt, 50), ("lr", "lr", tuned_opt, 0.1),
                                       ("l2_lambda", "l2_lambda", tuned_opt, 0.008),
                                       ("id_lambda", "id_lambda", tuned_opt, 0.005),
                                       ("alpha", "strength", tuned_glob, 4.1), ("beta", "beta", tuned_glob, 0.15)):
        if getattr(args, name) is None:
            setattr(args, name, tuned.get(key, fallback))
    for name in ("ridge", "identity_damping"):  # None: the model set's; 0: off
        value = getattr(args, name)
        setattr(args, name, tuned_glob.get(name) if value is None else (value or None))
    if args.threads:
        torch.set_num_threads(args.threads)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise SystemExit(f"--engines: unknown {', '.join(bad)} (choose from {', '.join(ENGINES)})")
    prompts = select_prompts(args.prompts)
    out = Path(args.out)
    plots = out.with_suffix("")  # docs/benchmarks.md -> docs/benchmarks/
    t_start = time.perf_counter()
    log(f"loading {args.model}; {args.seeds} sources, {len(prompts)} prompts, engines {', '.join(engines)}")
    b = Bench(args)
    from styleclip.util.fingerprint import generator_fingerprint

    results = {"args": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                        "engines": engines},
               "command": "python -m benchmarks.edit_quality " + " ".join(shlex.quote(x) for x in argv),
               "machine": machine(), "prompts": list(prompts), "threshold": b.threshold,
               "generator": f"{args.model} (fingerprint {generator_fingerprint(b.g)})", "engines": {}}
    opt_opts = dict(steps=args.steps, lr=args.lr, l2_lambda=args.l2_lambda, id_lambda=args.id_lambda,
                    clip_views=tuned_opt.get("clip_views", 0) if args.clip_views is None else args.clip_views,
                    init=args.opt_init or tuned_opt.get("init", "source"))
    if opt_opts["init"] == "universal":
        opt_opts["init_min_change"] = tuned_opt.get("init_min_change", 0.0)
    for eng in engines:
        log(f"{eng} ...")
        t0 = time.perf_counter()
        r: dict = {}
        try:
            if eng == "optimize":
                r["rows"] = bench_optimize(b, prompts, opt_opts)
                r["settings"] = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                                          for k, v in opt_opts.items())
            elif eng == "global":
                rows, grid, info = bench_global(b, prompts)
                r["rows"] = rows
                r["settings"] = (f"alpha {args.alpha:g}, beta {args.beta:g}, {describe_refinements(args)}, relevance: "
                                 f"{info['relevance']}")
                r["setup"] = f"relevance {info['setup_seconds']:.1f} s"
                pooled = []
                for beta, alpha in itertools.product(args.betas, args.alphas):
                    pts = [p for p in grid if p["beta"] == beta and p["alpha"] == alpha]
                    sc = [p["scores"] for p in pts if "scores" in p]
                    s = summary(E.concat_scores(sc)) if sc else {}
                    pooled.append({"beta": beta, "alpha": alpha, "summary": s,
                                   "channels_kept": sum(p["channels_kept"] for p in pts) / max(len(pts), 1)})
                r["grid"] = pooled
            elif eng == "global-paper":  # the same alpha / beta, the paper's delta_s (no refinement)
                editor, rel_kind = global_editor(b, args.beta, paper=True)
                r["rows"] = bench_with_editor(b, prompts, editor, args.alpha)
                r["settings"] = f"alpha {args.alpha:g}, beta {args.beta:g}, {describe_refinements(args, True)}"
            elif eng in ("global-auto", "global-keep-identity"):
                alpha, beta, budget = args.alpha, args.beta, eng == "global-keep-identity"
                if budget:  # the CLI's alpha / beta with --keep-identity
                    tuned_ki = edit_defaults(args.model, "global", keep_identity=True)
                    alpha, beta = tuned_ki.get("strength", alpha), tuned_ki.get("beta", beta)
                editor, rel_kind = global_editor(b, beta)
                editor = factory.create_editor("global", b.g, b.clip, b.identity, beta=beta, stats=editor.stats,
                                               relevance=editor.relevance, identity_cost=editor.identity_cost,
                                               **refinements(args), auto=True,
                                               auto_strength=auto_config(b, target="identity" if budget else "gain"))
                r["rows"] = bench_with_editor(b, prompts, editor, alpha)
                r["settings"] = (f"alpha {alpha:g} x {', '.join(f'{c:g}' for c in editor.config.auto_strength.candidates)}"
                                 f" per face ({'the strongest keeping identity' if budget else 'reaching the CLIP gain'})"
                                 f", beta {beta:g}, {describe_refinements(args)}")
            elif eng in ("universal", "universal-auto", "universal-wplus"):
                auto = eng == "universal-auto"
                # the CLI's disentanglement (the model set's beta); universal-wplus: the mapper's whole W+ edit
                tuned_u = factory.edit_defaults(args.model, "universal")
                beta = None if eng == "universal-wplus" else tuned_u.get("beta")
                floor = tuned_u.get("min_change", 0.0)
                editor = factory.create_editor("mapper", b.g, b.clip, b.identity, mapper=args.universal,
                                               batch_size=args.batch_size, beta=beta, min_change=floor,
                                               **(dict(auto=True, auto_strength=auto_config(b)) if auto else {}))
                r["rows"] = bench_with_editor(b, prompts, editor)
                step = editor.info.get("step")
                secs = editor.info.get("train_seconds")
                r["settings"] = ("strength per face (auto)" if auto else "strength 1") + \
                    (f", change of W+ norm >= {floor:g}" if floor else "") + \
                    (f", style changes kept where relevance >= {beta:g}" if beta else ", whole W+ edit") + \
                    "; one network for all prompts, none seen in training"
                r["setup"] = f"training {secs:.0f} s once ({step} steps, text-free)" if secs else ""
            else:
                r["rows"], _ = bench_mapper(b, prompts)
                tr = [row.get("train_seconds") for row in r["rows"]]
                known = [t for t in tr if t is not None]
                r["settings"] = f"residual scale 0.1; mappers trained here start as --init {args.mapper_init}"
                r["setup"] = (f"training {sum(known) / len(known):.0f} s / prompt" if known else
                              "training time not recorded")
            for row in r["rows"]:
                if "scores" in row:
                    row["summary"] = summary(row["scores"])
            r["summary"] = engine_summary(r["rows"])
        except (StyleClipError, ValueError, RuntimeError) as e:
            log(f"{eng} failed: {e}")
            r["error"] = " ".join(str(e).split())[:200]
        r["seconds"] = time.perf_counter() - t0
        log(f"{eng} done in {r['seconds']:.0f} s")
        results["engines"][eng] = r
    if args.opt_grid and "optimize" in engines:
        grid_prompts = select_prompts(args.grid_prompts or first_of_groups())
        results["grid_prompts"] = list(grid_prompts)
        w = b.source.w_plus[:args.grid_seeds]
        results["opt_grid"] = []
        for opts in parse_grid(args.opt_grid):
            full = {**opt_opts, **opts}
            rows = bench_optimize(b, grid_prompts, full, w)
            s = summary(E.concat_scores([r["scores"] for r in rows]))
            s["sec_per_edit"] = sum(r["sec_per_edit"] for r in rows) / len(rows)
            results["opt_grid"].append({"options": full, "summary": s})
    results["total_seconds"] = time.perf_counter() - t_start
    results["global_defaults"] = ", ".join(f"{k} {v:g}" for k, v in factory.edit_defaults(args.model, "global").items()) \
        or "the engine's"
    results["suggestions"] = suggestions(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, plots)
    write_report(results, out, plots)
    (plots / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"wrote {out}, {plots}/ in {results['total_seconds']:.0f} s")
    for line in results["suggestions"]:
        print(line)
    return results


if __name__ == "__main__":
    main()
