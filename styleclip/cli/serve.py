"""`styleclip serve`: the web app."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import _check, _check_device, _model, friendly


# ---- styleclip serve: the web app -----------------------------------------------------------------------
@friendly
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the app to the network."),
    port: int = typer.Option(7860, help="Port."),
    share: bool = typer.Option(False, "--share", help="Also open a temporary public gradio.live link."),
    model: Optional[str] = typer.Option(None, help="Model set: 'ffhq' (real weights), 'toy-faces' (embedded, "
                                        "offline), 'debug' (tiny random), or a generator checkpoint path.",
                                        show_default="ffhq, or toy-faces when FFHQ cannot be had"),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
    relevance: Optional[Path] = typer.Option(None, help="Global directions: channel relevance fs3.npy."),
    stats: Optional[Path] = typer.Option(None, help="Global directions: style statistics file."),
    mappers: Optional[list[Path]] = typer.Option(None, help="Folder of trained mappers (repeatable)."),
):
    """Start the web app (Gradio): random faces or photos, global directions, mappers, optimization."""
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
