"""The help page a person can read (issue 35): commands grouped in panels, each command's help on one screen at
100 columns, usage mistakes as one `error:` line with a suggestion and exit code 1 before any model loads, and
no torch (nor gradio, open_clip, numpy) behind `import styleclip.cli` or `styleclip --help`."""
from __future__ import annotations

import enum
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "numpy", "gradio", "open_clip")
PANELS = {"Edit": ["edit", "sweep"], "Photos": ["faces", "invert"],
          "Models and weights": ["generate", "convert", "weights", "prepare", "relevance"],
          "Training": ["train-mapper", "toy"], "App": ["serve"]}
MAX_LINES = 60  # one screen at 100 columns

def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "100"}
    return subprocess.run([sys.executable, *args, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


def _imported(importtime_stderr: str) -> set[str]:
    """Module names listed by `python -X importtime`."""
    return {line.split("|")[-1].strip() for line in importtime_stderr.splitlines() if line.startswith("import time:")}


def _help(args, columns=100):
    from styleclip.cli import app

    r = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)})
    assert r.exit_code == 0, r.output
    return r.output


def _command_paths():
    """Every command and sub-command path below `styleclip` (hidden ones left out)."""
    import typer.main

    from styleclip.cli import app

    def walk(cmd, path):
        yield path
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not sub.hidden:
                yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


# ---- no torch behind the help --------------------------------------------------------------------------------
def test_every_help_page_imports_nothing_heavy():
    """Every help page (edit and its engine subcommands included) renders without torch, numpy, gradio or
    open_clip (each command imports the library inside its body)."""
    code = (
        "import sys\n"
        "import typer.main\n"
        "from typer.testing import CliRunner\n"
        "import styleclip.cli as cli\n"
        "root = typer.main.get_command(cli.app)\n"
        "paths = [[]] + [[n] for n in root.commands] + [[n, s] for n in ('weights', 'toy', 'edit')\n"
        "                                             for s in root.commands[n].commands]\n"
        "for path in paths:\n"
        "    r = CliRunner().invoke(cli.app, [*path, '--help'])\n"
        "    assert r.exit_code == 0, (path, r.output)\n"
        f"print(len(paths), sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = _python(code)
    assert out.returncode == 0, out.stderr[-3000:]
    count, heavy = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) >= 20 and heavy == "[]", out.stdout


@pytest.mark.parametrize("how", ["import", "help"])
def test_import_and_help_of_the_whole_app_import_no_torch(how):
    code = "import styleclip.cli" if how == "import" else \
        "import sys; sys.argv = ['styleclip', '--help']\nfrom styleclip.cli import main\ntry:\n    main()\n" \
        "except SystemExit:\n    pass"
    out = _python(code, "-X", "importtime")
    assert out.returncode == 0, out.stderr[-3000:]
    heavy = _imported(out.stderr) & set(HEAVY)
    assert not heavy, f"{how} of styleclip.cli imports {sorted(heavy)}"


# ---- the help page ------------------------------------------------------------------------------------------
def test_top_level_commands_are_grouped_in_panels_one_line_each():
    text = _help([])
    lines = text.splitlines()
    for panel, commands in PANELS.items():
        top = next((i for i, line in enumerate(lines) if line.startswith(f"╭─ {panel} ─")), None)
        assert top is not None, f"no panel {panel!r}:\n{text}"
        bottom = next(i for i in range(top, len(lines)) if lines[i].startswith("╰"))
        rows = [line[2:] for line in lines[top + 1:bottom]]
        names = [row.split()[0] for row in rows if not row.startswith(" ")]
        assert sorted(names) == sorted(commands), f"{panel}: {names}"
        for row, after in zip(rows, rows[1:] + ["x"]):
            name = row.split()[0] if not row.startswith(" ") else None
            assert name is None or not after.startswith(" "), f"{name}: its line wraps\n{text}"
    assert len(lines) <= MAX_LINES


def test_every_help_fits_one_screen_at_100_columns():
    for path in _command_paths():
        if path == ["edit"]:  # the plain edit shows every engine's options; its subcommands must fit
            continue
        text = _help(path)
        lines = text.splitlines()
        assert len(lines) <= MAX_LINES, f"styleclip {' '.join(path)} --help: {len(lines)} lines\n{text}"
        assert max(len(line) for line in lines) <= 100, path


def test_command_help_has_panels_and_shows_each_default_once():
    text = _help(["generate"])
    for panel in ("Options", "Output", "Model and device"):
        assert f"╭─ {panel} ─" in text, text
    flat = " ".join(text.replace("│", " ").split())
    assert flat.count("[default: 0.7]") == 1 and "default" not in flat.split("--truncation")[1].split("--")[0][:-20]
    assert "[default: (ffhq, or toy-faces" in flat  # the model set chosen when none is given
    text = _help(["train-mapper"])
    assert all(f"╭─ {panel} ─" in text for panel in ("Training", "Data", "Run folder", "Model and device"))
    assert "Default:" not in text and "(default:" not in text  # defaults only in [default: ...]


# ---- usage mistakes: one line, a suggestion, exit 1 -----------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["generate", "--sed", "3"], "did you mean --seed?"),
    (["edti"], "did you mean edit?"),
    (["weights", "lst"], "did you mean list?"),
    (["toy", "trian"], "did you mean train?"),
    (["weights", "list", "--knd", "clip"], "did you mean --kind?"),
    (["generate", "--seed", "x"], "--seed"),
    (["generate", "--seed"], "--seed"),
    (["sweep", "--model", "debug"], "missing option '--prompt'"),
    (["generate", "stray"], "unexpected extra argument"),
    (["--frob"], "no such option --frob"),
    (["generate", "--device", "cdua", "--model", "debug"], "did you mean cuda?"),
    (["weights", "list", "--kind", "clp"], "did you mean clip?"),
])
def test_usage_mistakes_are_one_error_line_and_exit_1(args, expected, monkeypatch):
    import styleclip.cli.generator
    from styleclip.cli import app

    def no_model(*a, **k):
        raise AssertionError("a model was loaded for a usage mistake")

    monkeypatch.setattr(styleclip.cli.generator, "_generator", no_model)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (args, r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
    assert expected in lines[0], lines[0]
    assert "Traceback" not in r.output and "╭" not in r.output and not r.stdout


def test_unknown_option_of_edit_is_one_line_with_a_suggestion():
    from styleclip.cli import app

    r = CliRunner().invoke(app, ["edit", "--promt", "x", "--model", "debug"])
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.output
    assert r.stderr.startswith("error: no such option --promt") and "did you mean --prompt?" in r.stderr


def test_unknown_engine_is_refused_before_any_model_loads(monkeypatch):
    import styleclip.factory
    from styleclip.cli import app

    def no_model(*a, **k):
        raise AssertionError("a model was loaded for an unknown engine")

    monkeypatch.setattr(styleclip.factory, "load_generator", no_model)
    r = CliRunner().invoke(app, ["edit", "--engine", "foo", "-p", "x", "--model", "debug"])
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r.output
    assert r.stderr.startswith("error: ") and "engine" in r.stderr and "AssertionError" not in r.stderr


@pytest.mark.parametrize("entry", ["module", "main"])
def test_entry_points_give_the_same_one_line(entry):
    """`python -m styleclip` and the console script (styleclip.cli:main) behave as the test runner does."""
    argv = ["generate", "--sed", "3"]
    if entry == "module":
        out = subprocess.run([sys.executable, "-m", "styleclip", *argv], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    else:
        out = _python(f"import sys; sys.argv = ['styleclip', *{argv!r}]\nfrom styleclip.cli import main\nmain()")
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip() == "error: no such option --sed for `styleclip generate`; did you mean --seed?"
    assert not out.stdout


def test_no_arguments_still_shows_the_help():
    from styleclip.cli import app

    r = CliRunner().invoke(app, [])
    assert "Models and weights" in r.output and "error:" not in r.output


def test_a_command_that_exits_itself_prints_one_line():
    """typer >= 0.29 has its own Exit class: `friendly` passes it through instead of adding 'unexpected Exit'."""
    import typer

    from styleclip.cli.common import OneLineErrors, friendly

    app = typer.Typer(cls=OneLineErrors)

    @app.command()
    @friendly
    def verify(n: int = 0):
        typer.echo("error: 1 file is corrupt", err=True)
        raise typer.Exit(1)

    @app.command()
    @friendly
    def check(n: int = 0):
        raise typer.BadParameter("must be even", param_hint="'--n'")

    r = CliRunner().invoke(app, ["verify"])
    assert r.exit_code == 1 and r.stderr == "error: 1 file is corrupt\n", r.stderr
    r = CliRunner().invoke(app, ["check"])
    assert r.exit_code == 1 and r.stderr.startswith("error: invalid value for '--n': must be even"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


class Engine(str, enum.Enum):
    optimize = "optimize"
    mapper = "mapper"


def test_a_value_outside_a_fixed_set_suggests_the_closest():
    import typer

    from styleclip.cli.common import OneLineErrors

    app = typer.Typer(cls=OneLineErrors)

    @app.command()
    def edit(engine: Engine = Engine.optimize):
        raise AssertionError("ran with a bad value")

    @app.command()
    def other():
        pass

    r = CliRunner().invoke(app, ["edit", "--engine", "optimise"])
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r.output
    assert r.stderr.startswith("error: invalid value for '--engine': 'optimise' is not one of")
    assert r.stderr.strip().endswith("did you mean optimize?")


# ---- edit's engine subcommands ------------------------------------------------------------------------------
@pytest.mark.parametrize("engine, foreign", [("global", "--steps"), ("optimize", "--beta"), ("mapper", "--neutral"),
                                             ("universal", "--mapper")])
def test_engine_subcommand_accepts_only_its_own_options(engine, foreign):
    from styleclip.cli import app

    r = CliRunner().invoke(app, ["edit", engine, "-p", "x", "--model", "debug", foreign, "1", "--dry-run"])
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r.output
    assert r.stderr.startswith(f"error: no such option {foreign}"), r.stderr


@pytest.mark.parametrize("engine", ["optimize", "global", "mapper", "universal"])
def test_engine_subcommand_resolves_like_plain_edit(engine, tmp_path):
    """`styleclip edit ENGINE ...` is `styleclip edit --engine ENGINE ...`: the same resolved settings."""
    from styleclip.cli import app

    args = ["-p", "a face with a mohawk", "--seeds", "0-1", "--model", "toy-faces", "--out", str(tmp_path), "--dry-run"]
    sub = CliRunner().invoke(app, ["edit", engine, *args])
    plain = CliRunner().invoke(app, ["edit", "--engine", engine, *args])
    assert sub.exit_code == 0 and plain.exit_code == 0, sub.output + plain.output
    assert sub.stdout == plain.stdout and "engine" in sub.stdout
