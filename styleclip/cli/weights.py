"""`styleclip weights ...`: the registry of known pretrained weights."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import did_you_mean, friendly


# ---- styleclip weights ... ------------------------------------------------------------------------------------
weights_app = typer.Typer(no_args_is_help=True, help="Known pretrained weights: list, download, verify, locate.")


@weights_app.command("list")
@friendly
def weights_list(
    kind: Optional[str] = typer.Option(None, help="Only this kind (generator, clip, identity, mapper, ...)."),
):
    """Every known weight: name, size, licence, and where it is if present."""
    from styleclip.store import registry as pretrained

    rows = [(s.name, pretrained.human_size(s), s.kind,
             ("NC " if s.non_commercial else "") + s.licence.split(";")[0].split(" (")[0],
             str(pretrained.find(s.name) or ("unsupported" if s.extra.get("unsupported") else "-")))
            for s in pretrained.REGISTRY.values() if kind is None or s.kind == kind]
    if not rows:
        kinds = sorted({s.kind for s in pretrained.REGISTRY.values()})
        raise ValueError(f"no weights of kind {kind!r}; kinds: {', '.join(kinds)}{did_you_mean(kind, kinds)}")
    header = ("name", "size", "kind", "licence (NC = non-commercial)", "present")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for r in [header] + rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])


@weights_app.command("download")
@friendly
def weights_download(
    names: list[str] = typer.Argument(..., help="Weight names (see `weights list`) or a model set (ffhq)."),
    dest: Optional[Path] = typer.Option(None, help="Folder to download into.",
                                        show_default="$STYLECLIP_WEIGHTS_DIR or the user cache"),
    quiet: bool = typer.Option(False, help="No progress bar.", show_default=False),
):
    """Download weights (resumable, sha256-checked where a hash is published)."""
    from styleclip.util import outputs
    from styleclip.store import registry as pretrained
    from styleclip.errors import WeightsMissingError
    from styleclip.factory import weight_problem

    if dest is not None:
        outputs.check_dir(dest, "--dest")
    for name in pretrained.expand_names(names):
        existing = pretrained.find(name) if dest is None else dest / pretrained.get_spec(name).filename
        if existing is not None and existing.is_file():
            problem = weight_problem(name, existing)
            if problem is None:
                typer.echo(f"{name}: already present at {existing}")
                continue
            if pretrained.offline():
                raise WeightsMissingError(f"{name}: {existing} is corrupt ({problem}) and "
                                          f"{pretrained.OFFLINE_REASON}, so it is not downloaded again; delete "
                                          "it, or download it when online")
            typer.echo(f"{name}: {existing} is corrupt ({problem}); downloading it again", err=True)
            path = pretrained.download(name, existing.parent, progress=not quiet, replace=True)
        else:
            path = pretrained.download(name, dest, progress=not quiet)
        typer.echo(f"{name}: {path}")


@weights_app.command("verify")
@friendly
def weights_verify(names: Optional[list[str]] = typer.Argument(None, help="Only these weights.")):
    """Check the sha256 and size of every present weight file; exit 1 on any mismatch."""
    from styleclip.store import registry as pretrained

    from styleclip.factory import weight_problem

    rows = pretrained.verify(pretrained.expand_names(names) if names else None, validate=weight_problem)
    if not rows:
        typer.echo("no known weight files present (looked in: "
                   + ", ".join(str(d) for d in pretrained.search_dirs()) + ")")
    for name, path, status in rows:
        typer.echo(f"{name}  {status}  {path}")
    bad = [name for name, _, status in rows if "mismatch" in status.lower() or status.startswith("CORRUPT")]
    if bad:
        typer.echo(f"error: {len(bad)} file(s) are corrupt or do not match their published checksum or size: "
                   f"{', '.join(bad)}", err=True)
        raise typer.Exit(1)


@weights_app.command("path")
@friendly
def weights_path(name: str = typer.Argument(..., help="Weight name (see `weights list`) or a model set (ffhq).")):
    """Print where weight NAME is, or each weight of a model set; exit 1 if one is absent."""
    from styleclip.store import registry as pretrained

    if name in pretrained.MODEL_SETS and name not in pretrained.REGISTRY:
        ms = pretrained.MODEL_SETS[name]
        weights = [w for w in (ms.generator, ms.clip, ms.identity) if w in pretrained.REGISTRY]
        if not weights:
            typer.echo(f"{name}: built in (no weight files; {ms.description})")
            return
        missing = []
        for w in weights:
            path = pretrained.find(w)
            typer.echo(f"{w}  {path if path is not None else 'not present'}")
            if path is None:
                missing.append(w)
        if missing:
            raise pretrained.WeightsMissingError(
                f"{len(missing)} weight(s) of model set {name!r} not present: {', '.join(missing)}; run "
                f"`styleclip weights download {name}`")
        return
    typer.echo(str(pretrained.resolve(name)))
