"""`styleclip serve`: the web app."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import DEVICE_HELP, MODEL_DEFAULT, MODEL_PANEL, _check, _check_device, _model, friendly


FILES_PANEL = "Global directions and mappers"


@friendly
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the app to the network."),
    port: int = typer.Option(7860, help="Port."),
    share: bool = typer.Option(False, "--share", help="Also open a temporary public gradio.live link."),
    model: Optional[str] = typer.Option(None, help="Model set (ffhq, toy-faces, debug) or a generator checkpoint.",
                                        show_default=MODEL_DEFAULT, rich_help_panel=MODEL_PANEL),
    device: str = typer.Option("auto", help=DEVICE_HELP, rich_help_panel=MODEL_PANEL),
    relevance: Optional[Path] = typer.Option(None, help="Channel relevance file (fs3.npy).",
                                             rich_help_panel=FILES_PANEL),
    stats: Optional[Path] = typer.Option(None, help="Style statistics file.", rich_help_panel=FILES_PANEL),
    mappers: Optional[list[Path]] = typer.Option(None, help="Folder of trained mappers (repeatable).",
                                                 metavar="<folder>", rich_help_panel=FILES_PANEL),
):
    """Start the web app (Gradio) in the browser.

    Random faces or photos, edited with global directions, mappers or optimization."""
    import importlib.util

    from styleclip.errors import StyleClipError

    _check(port=port)
    _check_device(device)
    if importlib.util.find_spec("gradio") is None:
        raise StyleClipError("the web app needs gradio: pip install 'styleclip[app]'")
    try:
        from styleclip.app.demo import serve as run
    except ModuleNotFoundError as e:
        if e.name not in ("apps", "styleclip.app.demo"):
            raise
        raise StyleClipError("the web app module (styleclip/app/demo.py) is not installed: reinstall styleclip "
                             "from its source tree (pip install '.[app]')") from None
    run(_model(model, None), host=host, port=port, share=share, device=device,
        relevance=str(relevance) if relevance else None, stats=str(stats) if stats else None,
        mappers=[str(m) for m in mappers] if mappers else None)
