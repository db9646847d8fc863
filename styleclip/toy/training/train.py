"""Resumable training recipes for the toy-face models (CLIP, evaluation classifier, identity net) and their
evaluation functions.

One generic loop (`run_training`) drives a `Task` (build, loss at a step, evaluate, export). Batches are a
pure function of (seed, step) (styleclip.toy.data), the learning rate a pure function of the step, and the
checkpoint holds model + optimizer state + step, so `resume=True` continues to exactly the weights an
uninterrupted run reaches. Outputs in `out_dir`: checkpoint.pt (resume state), log.jsonl, and on finishing
<task>.safetensors (fp16) + <task>.json (config) + eval.json.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from styleclip.encoders.clip import OPENAI_MEAN, OPENAI_STD, ClipEncoder
from styleclip.errors import CheckpointError
from styleclip.toy import data as D
from styleclip.toy.models import CLIP_CONFIG, TINY_CLIP_CONFIG, AttributeClassifier, ToyIdentityNet, build_clip
from styleclip.toy.render import ATTRIBUTE_VALUES, caption_names, partial_caption
from styleclip.toy.assets import ASSETS, load_toy_classifier, load_toy_clip, load_toy_identity, read_safetensors

TASKS = ("clip", "classifier", "identity", "generator")
CHECKPOINT = "checkpoint.pt"


# ---- checkpoints ---------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    meta: dict | None = None) -> None:
    """Atomically write model + optimizer state + step (+ JSON-able meta) for `--resume`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": int(step),
                "meta": json.dumps(meta or {})}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint to resume from at {path}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a checkpoint error
        raise CheckpointError(f"cannot read checkpoint {path}: {' '.join(str(e).split())[:200]}") from None
    try:
        ck["meta"] = json.loads(ck.get("meta") or "{}")
    except Exception as e:  # noqa: BLE001 - a checkpoint of another layout
        raise CheckpointError(f"cannot read checkpoint {path}: not a toy training checkpoint ({e})") from None
    return ck


def export_fp16(model: nn.Module, path: str | Path, config: dict, keep_fp32: tuple[str, ...] = ()) -> None:
    """Weights as fp16 safetensors (integer buffers kept; names containing one of `keep_fp32` stay fp32) and
    the constructor config as JSON beside them."""
    from safetensors.torch import save_file

    from styleclip.util.checks import finite_tensors
    from styleclip.util.outputs import Outputs

    path = Path(path)
    sd = {k: (v.half() if v.is_floating_point() and not any(s in k for s in keep_fp32) else v).contiguous()
          for k, v in model.state_dict().items()}
    finite_tensors(sd, f"the weights exported to {path} (training diverged?)")
    with Outputs() as out:
        out.write(path, lambda tmp: save_file(sd, str(tmp)))
        out.write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(config, indent=1) + "\n"))


# ---- evaluation ----------------------------------------------------------------------------------------
def accuracy_from_scores(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of scores [N, V] against labels [N]."""
    return float((scores.argmax(1) == labels).float().mean()) if len(labels) else float("nan")


def _mask(attribute: str, batch: D.Batch) -> torch.Tensor:
    """Which images show the attribute: hair colour is invisible on bald heads."""
    if attribute == "hair_colour":
        return batch.labels["hair_style"] != ATTRIBUTE_VALUES["hair_style"].index("bald")
    return torch.ones(len(batch.captions), dtype=torch.bool)


_STYLE = {"bald": "bald", "short": "with short hair", "long": "with long hair", "bob cut": "with a bob cut",
          "mohawk": "with a mohawk", "afro": "with an afro"}
_FACES = ("a face", "a neutral face", "a smiling face", "a surprised face")


def zero_shot_prompts(contexts: bool = True) -> dict[str, list[list[str]]]:
    """Per attribute, per value (ATTRIBUTE_VALUES order): the prompts whose embeddings are averaged.

    Values are named as the captions name them; an absent attribute (no glasses, no beard) is the prompt
    without it, since captions never negate. Every value of an attribute is phrased in the same contexts
    (face heads, and with `contexts` also each hair style, or glasses/beard for hair style), so the value
    prompts of an attribute differ only in the value: the comparison StyleCLIP's target-minus-neutral
    directions rely on. `contexts=False`: face heads only."""
    hair = [_STYLE[v] for v in ATTRIBUTE_VALUES["hair_style"]] if contexts else [""]
    extras = ["", "wearing glasses", "with a beard"] if contexts else [""]

    def ens(phrase: str, ctx=hair) -> list[str]:
        return [" ".join(f"{f} {c} {phrase}".split()) for f in _FACES for c in ctx]

    return {
        "hair_style": [ens(_STYLE[v], extras) for v in ATTRIBUTE_VALUES["hair_style"]],
        "hair_colour": [ens(f"with {c} hair", extras) for c in ATTRIBUTE_VALUES["hair_colour"]],
        "expression": [[" ".join(f"{h} {e} face {c}".split()) for h in ("a", "a cartoon of a", "a drawing of a")
                        for c in hair] for e in ATTRIBUTE_VALUES["expression"]],
        "glasses": [ens("" if g == "none" else f"wearing {g}") for g in ATTRIBUTE_VALUES["glasses"]],
        "beard": [ens("with a beard" if b else "") for b in ATTRIBUTE_VALUES["beard"]],
        "background": [ens(f"on a {b} background") for b in ATTRIBUTE_VALUES["background"]],
    }


@torch.no_grad()
def class_embeddings(clip: ClipEncoder, prompts: list[list[str]]) -> torch.Tensor:
    """[V, D] unit embeddings: the normalised mean of each value's prompt embeddings."""
    return torch.stack([F.normalize(clip.encode_text(p).mean(0), dim=-1) for p in prompts])


@torch.no_grad()
def _embed_images(fn: Callable, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    return torch.cat([fn(images[i:i + chunk]) for i in range(0, len(images), chunk)])


@torch.no_grad()
def zero_shot_accuracy(clip: ClipEncoder, batch: D.Batch, contexts: bool = True) -> dict[str, float]:
    """Zero-shot accuracy per attribute (argmax over the attribute's value prompts) on `batch`."""
    img = _embed_images(clip.encode_image, batch.images)
    out = {}
    for attr, prompts in zero_shot_prompts(contexts).items():
        m = _mask(attr, batch)
        out[attr] = accuracy_from_scores(img[m] @ class_embeddings(clip, prompts).t(), batch.labels[attr][m])
    return out


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """Probability that a positive scores above a negative (ties count half): the Mann-Whitney AUC."""
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())


@torch.no_grad()
def direction_auc(clip: ClipEncoder, batch: D.Batch, neutral: str = "a face") -> dict[str, float]:
    """Per attribute value that a prompt can name (not 'no glasses', 'no beard'): the AUC with which the
    engines' text direction unit(t_value - t_neutral) ranks the images that show the value above the rest.
    t_value is the mean embedding of the value's face-head prompts ('a face with blond hair', ...)."""
    img = _embed_images(clip.encode_image, batch.images)
    t_n = clip.encode_text([neutral])[0]
    out = {}
    for attr, prompts in zero_shot_prompts(contexts=False).items():
        m = _mask(attr, batch)
        score = img[m] @ F.normalize(class_embeddings(clip, prompts) - t_n, dim=-1).t()
        labels = batch.labels[attr][m]
        for v, value in enumerate(ATTRIBUTE_VALUES[attr]):
            if (attr, value) in (("glasses", "none"), ("beard", False)):
                continue
            name = f"{attr}={value}" if attr != "beard" else "beard"
            out[name] = auc(score[labels == v, v], score[labels != v, v])
    return out


def clip_evaluation(clip: ClipEncoder, batch: D.Batch) -> dict:
    """The toy CLIP's figures: zero-shot accuracy per attribute (omission as the absent value) and the text
    directions' AUC against the neutral 'a face' (what the engines follow)."""
    acc = zero_shot_accuracy(clip, batch)
    d = direction_auc(clip, batch)
    return {"zero_shot": acc, "zero_shot_mean": sum(acc.values()) / len(acc), "direction_auc": d,
            "direction_auc_min": min(d.values())}


@torch.no_grad()
def classifier_accuracy(classifier: nn.Module, batch: D.Batch) -> dict[str, float]:
    classifier.eval()
    logits = {a: [] for a in D.ATTRIBUTES}
    for i in range(0, len(batch.images), 256):
        for a, v in classifier(batch.images[i:i + 256]).items():
            logits[a].append(v)
    return {a: accuracy_from_scores(torch.cat(logits[a])[_mask(a, batch)], batch.labels[a][_mask(a, batch)])
            for a in D.ATTRIBUTES}


def verification_accuracy_from_scores(scores: torch.Tensor, same: torch.Tensor) -> dict[str, float]:
    """Verification accuracy: the threshold maximising accuracy on the first half of the pairs, applied to the
    second half (held out from the threshold choice). Also the mean similarity of each kind of pair."""
    def best_threshold(s, y):
        cands = torch.cat([s.sort().values, s.max().view(1) + 1e-6])
        accs = torch.stack([((s >= t) == y).float().mean() for t in cands])
        return cands[accs.argmax()]

    same = same.bool()
    h = len(scores) // 2
    t = best_threshold(scores[:h], same[:h])
    acc = float(((scores[h:] >= t) == same[h:]).float().mean())
    return {"verification_accuracy": acc, "threshold": float(t),
            "similarity_same": float(scores[same].mean()), "similarity_different": float(scores[~same].mean())}


@torch.no_grad()
def identity_verification(net: nn.Module, pairs=None) -> dict[str, float]:
    net.eval()
    a, b, same = pairs if pairs is not None else D.verification_pairs()
    ea, eb = _embed_images(net.embed, a), _embed_images(net.embed, b)
    return verification_accuracy_from_scores((ea * eb).sum(-1), same)


# ---- tasks ---------------------------------------------------------------------------------------------
@dataclass
class Task:
    """What the generic loop needs. `lr` is the peak learning rate (linear warm-up, then constant)."""

    name: str
    batch_size: int
    lr: float
    seed: int = 0
    warmup: int = 200
    tiny: bool = False
    eval_size: int = 512
    config: dict = field(default_factory=dict)
    keep_fp32: tuple[str, ...] = ()  # parameter names (substrings) exported in fp32

    def build(self) -> nn.Module:
        raise NotImplementedError

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.05)

    def loss(self, model: nn.Module, step: int) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict:
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        pass

    def extra_meta(self) -> dict:
        """Recipe settings beyond the common ones, kept in the checkpoint for --resume."""
        return {}

    def lr_factor(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warmup)


def _preprocess_clip(x: torch.Tensor) -> torch.Tensor:
    """ClipEncoder.preprocess for images already at the model's size ([-1,1] -> CLIP normalisation)."""
    mean = torch.tensor(OPENAI_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


class ClipTask(Task):
    """Contrastive (InfoNCE, both directions) on augmented renders and their captions. With `partial` > 0 that
    fraction of captions names only some attributes, and every image showing what a caption names is its positive
    (soft targets, `partial_caption_targets`)."""

    def __init__(self, *, batch_size=128, lr=5e-4, seed=0, tiny=False, warmup=200, eval_size=512,
                 logit_scale_lr_mult=10.0, partial=0.0):
        config = TINY_CLIP_CONFIG if tiny else CLIP_CONFIG
        super().__init__("clip", batch_size, lr, seed, warmup, tiny, eval_size, dict(config))
        self.size = config["vision_cfg"]["image_size"]
        self.logit_scale_lr_mult = logit_scale_lr_mult
        self.partial = float(partial)  # fraction of captions that name only some attributes (render.partial_caption)
        from open_clip.tokenizer import SimpleTokenizer

        self.tokenizer = SimpleTokenizer(context_length=config["text_cfg"]["context_length"])

    def extra_meta(self):
        return {"partial": self.partial}

    def build(self):
        return build_clip(self.config, seed=self.seed)

    def optimizer(self, model):
        decay, no_decay, scale = [], [], []
        for n, p in model.named_parameters():
            if n == "logit_scale":
                scale.append(p)
            elif p.ndim < 2 or "embedding" in n or n.endswith(".bias"):
                no_decay.append(p)
            else:
                decay.append(p)
        return torch.optim.AdamW([
            {"params": decay, "weight_decay": 0.1, "lr_mult": 1.0},
            {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
            {"params": scale, "weight_decay": 0.0, "lr_mult": self.logit_scale_lr_mult},
        ], lr=self.lr, betas=(0.9, 0.98), eps=1e-6)

    def loss(self, model, step):
        b = D.sample_batch(self.seed, step, self.batch_size, size=self.size, augment=True)
        captions, target = b.captions, None
        if self.partial > 0:
            captions, target = partial_caption_targets(b, np.random.default_rng([self.seed, step, 11]), self.partial)
        img, txt, scale = model(_preprocess_clip(b.images), self.tokenizer(captions))
        logits = scale * img @ txt.t()
        if target is None:
            target = torch.arange(len(logits))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        else:  # every image that shows what a caption names is a positive of it, in both directions
            loss = (F.cross_entropy(logits, target / target.sum(1, keepdim=True))
                    + F.cross_entropy(logits.t(), target.t() / target.t().sum(1, keepdim=True))) / 2
        return loss, {"logit_scale": float(scale.detach())}

    def after_step(self, model):
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

    def evaluate(self, model):
        clip = ClipEncoder.from_config(self.config, state_dict=model.state_dict(), name="toy_faces")
        return clip_evaluation(clip, D.eval_set(self.eval_size, size=self.size))


def partial_caption_targets(batch: D.Batch, rng: np.random.Generator, partial: float) -> tuple[list[str], torch.Tensor]:
    """Captions with a fraction `partial` replaced by ones naming a subset of the attributes, and the [N, N]
    0/1 matrix of (image i, caption k): image i shows everything caption k names (the diagonal is 1)."""
    captions, named = [], []
    for att, text in zip(batch.attributes, batch.captions):
        if rng.random() < partial:
            text, names = partial_caption(att, rng)
        else:
            names = caption_names(att, text)
        captions.append(text)
        named.append(names)
    match = torch.ones(len(captions), len(captions))
    bald = batch.labels["hair_style"] == ATTRIBUTE_VALUES["hair_style"].index("bald")
    for k, names in enumerate(named):
        for a, v in names.items():
            match[:, k] *= (batch.labels[a] == ATTRIBUTE_VALUES[a].index(v)).float()
        if "hair_colour" in names:  # a hair colour is seen only on hair
            match[:, k] *= (~bald).float()
    return captions, match


class ClassifierTask(Task):
    """Cross-entropy per attribute head (hair colour ignored on bald heads), augmented renders."""

    def __init__(self, *, batch_size=64, lr=2e-3, seed=0, tiny=False, warmup=100, eval_size=512):
        super().__init__("classifier", batch_size, lr, seed, warmup, tiny, eval_size, {"width": 8 if tiny else 32})

    def build(self):
        torch.manual_seed(self.seed)
        return AttributeClassifier(**self.config)

    def loss(self, model, step):
        b = D.sample_batch(self.seed, step, self.batch_size, augment=True)
        logits = model(b.images)
        losses = {}
        for a in D.ATTRIBUTES:
            m = _mask(a, b)
            losses[a] = F.cross_entropy(logits[a][m], b.labels[a][m])
        return sum(losses.values()), {f"loss_{a}": float(v.detach()) for a, v in losses.items()}

    def evaluate(self, model):
        acc = classifier_accuracy(model, D.eval_set(self.eval_size))
        return {"accuracy": acc, "accuracy_min": min(acc.values())}


class IdentityTask(Task):
    """Supervised-contrastive: two renders of each identity with independent attributes (and augmentation)
    are positives, every other image in the batch a negative; temperature `tau`."""

    def __init__(self, *, batch_size=32, lr=2e-3, seed=0, tiny=False, warmup=100, eval_size=512, tau=0.1):
        super().__init__("identity", batch_size, lr, seed, warmup, tiny, eval_size,
                         {"width": 8 if tiny else 32, "embed_dim": 16 if tiny else 128})
        self.tau = tau

    def build(self):
        torch.manual_seed(self.seed)
        return ToyIdentityNet(**self.config)

    def loss(self, model, step):
        b = D.identity_batch(self.seed, step, self.batch_size, views=2, augment=True)
        z = model.embed(b.images)
        logits = z @ z.t() / self.tau
        n = len(z)
        eye = torch.eye(n, dtype=torch.bool)
        logits = logits.masked_fill(eye, float("-inf"))
        pos = (b.identity_ids[:, None] == b.identity_ids[None]) & ~eye
        logp = logits.log_softmax(1)
        loss = -(logp.masked_fill(~pos, 0).sum(1) / pos.sum(1)).mean()
        return loss, {}

    def evaluate(self, model):
        return identity_verification(model, D.verification_pairs(self.eval_size))


def make_task(name: str, **kwargs) -> Task:
    from styleclip.toy.training.generator import GeneratorTask  # imports this module

    kinds = {"clip": ClipTask, "classifier": ClassifierTask, "identity": IdentityTask, "generator": GeneratorTask}
    if name not in kinds:
        raise ValueError(f"unknown toy task {name!r}; expected one of {', '.join(TASKS)}")
    return kinds[name](**{k: v for k, v in kwargs.items() if v is not None})


# ---- the loop ------------------------------------------------------------------------------------------
def run_training(task: Task, out_dir: str | Path, *, steps: int | None = None, minutes: float | None = None,
                 resume: bool = False, ckpt_every: int = 200, log_every: int = 20, eval_every: int = 0,
                 export: bool = True, evaluate: bool = True, init_from: str | Path | None = None,
                 start_step: int = 0, anneal: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train until `steps` total steps or `minutes` of this run, whichever first (at least one must be set).
    Checkpoints every `ckpt_every` steps and at the end; returns {"step", "eval", "out"}.
    `anneal` (needs `steps`) decays the learning rate to zero along a half cosine from the run's start (or
    warm start) to `steps`: a final phase; resume it with the same `steps`.

    `init_from` (a folder with exported `<task>.safetensors`, e.g. the shipped assets) starts a new run from
    those weights with a fresh optimizer at `start_step` (use the step the weights were exported at, so the
    batch stream does not repeat); the warm-up then restarts there. Later `resume`s of that run are exact."""
    if steps is None and minutes is None:
        raise ValueError("give --steps or --minutes (or both)")
    if anneal and steps is None:
        raise ValueError("--anneal needs --steps (the step the learning rate reaches zero)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = task.build()
    opt = task.optimizer(model)
    for g in opt.param_groups:
        g.setdefault("lr_mult", 1.0)
    step = warm_start = 0
    if init_from is not None and not resume:
        model.load_state_dict(read_safetensors(Path(init_from) / f"{task.name}.safetensors"))
        step = warm_start = int(start_step)
        log(f"initialised {task.name} from {init_from} at step {step}")
    if resume:
        ck = load_checkpoint(out / CHECKPOINT)
        if ck["meta"].get("task") != task.name:
            raise CheckpointError(f"{out / CHECKPOINT} is a {ck['meta'].get('task')!r} checkpoint, not {task.name!r}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step = ck["step"]
        warm_start = int(ck["meta"].get("warm_start", 0))
        log(f"resumed {task.name} at step {step}")
    meta = {"task": task.name, "config": task.config, "seed": task.seed, "batch_size": task.batch_size,
            "lr": task.lr, "warm_start": warm_start, "anneal_to": steps if anneal else None, **task.extra_meta()}
    t0 = time.monotonic()
    logf = (out / "log.jsonl").open("a")
    model.train()
    try:
        while (steps is None or step < steps) and (minutes is None or time.monotonic() - t0 < minutes * 60):
            f = task.lr_factor(step - warm_start)
            if anneal:
                f *= 0.5 * (1 + math.cos(math.pi * (step - warm_start) / max(1, steps - warm_start)))
            for g in opt.param_groups:
                g["lr"] = task.lr * f * g["lr_mult"]
            loss, logs = task.loss(model, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            task.after_step(model)
            step += 1
            if step % log_every == 0:
                rec = {"step": step, "loss": round(float(loss.detach()), 5), "min": round((time.monotonic() - t0) / 60, 2),
                       **{k: round(v, 4) for k, v in logs.items()}}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log(json.dumps(rec))
            if step % ckpt_every == 0:
                save_checkpoint(out / CHECKPOINT, model=model, optimizer=opt, step=step, meta=meta)
            if eval_every and step % eval_every == 0:
                ev = task.evaluate(model)
                model.train()
                logf.write(json.dumps({"step": step, "eval": ev}) + "\n")
                logf.flush()
                log(json.dumps({"step": step, "eval": ev}))
    finally:
        logf.close()
    save_checkpoint(out / CHECKPOINT, model=model, optimizer=opt, step=step, meta=meta)
    ev = task.evaluate(model) if evaluate else {}
    result = {"task": task.name, "step": step, "eval": ev, "seed": task.seed, "batch_size": task.batch_size}
    if export:
        export_fp16(model, out / f"{task.name}.safetensors", task.config, task.keep_fp32)
        (out / "eval.json").write_text(json.dumps(result, indent=1) + "\n")
    log(json.dumps(result))
    return {**result, "out": str(out)}


def evaluate_exported(name: str, directory: str | Path = ASSETS, n: int = 512) -> dict:
    """Evaluation figures of exported weights (the same functions the training loop reports)."""
    if name == "clip":
        clip = load_toy_clip(directory)
        return clip_evaluation(clip, D.eval_set(n, size=clip.input_size))
    if name == "classifier":
        acc = classifier_accuracy(load_toy_classifier(directory), D.eval_set(n))
        return {"accuracy": acc, "accuracy_min": min(acc.values())}
    if name == "identity":
        return identity_verification(load_toy_identity(directory), D.verification_pairs(n))
    if name == "generator":
        from styleclip.toy.assets import load_toy_generator
        from styleclip.toy.generator import TINY_GENERATOR_CONFIG

        g = load_toy_generator(directory)  # a --tiny run's is 16 px: evaluated against 16 px renders
        return make_task("generator", eval_size=n, tiny=g.config.size == TINY_GENERATOR_CONFIG["size"]).evaluate(g)
    raise ValueError(f"unknown toy model {name!r}; expected one of {', '.join(TASKS)}")
