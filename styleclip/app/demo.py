"""The StyleCLIP web app (Gradio): `build_demo(app)` lays out and wires the page; the logic is
`styleclip.app.actions.StyleClipApp`. Start it with `styleclip serve`, `python -m styleclip.app.demo` or
`python styleclip/app/demo.py` (`--model toy-faces` or `debug` need no download; `--model ffhq` uses real weights)."""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Optional, Sequence

import gradio as gr

if __package__:
    from styleclip.app.actions import MAX_TEXT, StyleClipApp, SourceOutput
else:  # run as a script: python styleclip/app/demo.py
    from callbacks import MAX_TEXT, StyleClipApp, SourceOutput

CONCURRENCY = 2  # events served at once; long jobs (optimization, inversion) share one further slot
QUEUE_SIZE = 32

CSS = """
.gradio-container {max-width: 1280px !important; margin: auto;}
#title h1 {margin-bottom: 0.2em;}
.result img {image-rendering: pixelated;}
"""


@contextlib.contextmanager
def user_errors():
    """The library's one-line errors (bad input, missing weights) become a gr.Error pop-up."""
    from styleclip.errors import StyleClipError

    try:
        yield
    except (StyleClipError, ValueError, FileNotFoundError, IsADirectoryError) as e:
        raise gr.Error(" ".join(str(e).split()), print_exception=False) from None


def _reporter(progress: gr.Progress):
    return lambda done, total, message: progress((done, total), desc=message)


def build_demo(app: StyleClipApp) -> gr.Blocks:
    """The page: source (random face or photo) | edit (global directions, mapper, optimization) | result."""
    opt = app.optimize_defaults()
    steps_default = opt.steps  # every default on the page is the CLI's for this model set (the edit plan's)
    alpha_default, beta_default = app.global_defaults()
    global_examples, optimize_examples = app.examples("global"), app.examples("optimize")
    invert_default = app.invert_steps_default()

    with gr.Blocks(title="StyleCLIP · text-driven face editing", delete_cache=(3600, 3600)) as demo:
        session = gr.State(None)
        gr.Markdown("# StyleCLIP\nEdit a StyleGAN2 face with words: pick a face, describe the change, press "
                    "**Edit**. " + app.describe() + ("\n\n" + " ".join(f"_{n}_" for n in app.notices)
                                                     if app.notices else ""), elem_id="title")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                gr.Markdown("### 1 · Source")
                source_image = gr.Image(label="Source face", type="pil", format="png", interactive=False,
                                        height=280, elem_id="source", elem_classes="result")
                with gr.Tabs():
                    with gr.Tab("Random face"):
                        with gr.Row():
                            seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="seed")
                            truncation = gr.Slider(0, 1, 0.7, step=0.05, label="Truncation ψ")
                        with gr.Row():
                            new_button = gr.Button("New random face", elem_id="new-face")
                            seed_button = gr.Button("Show this seed", elem_id="show-seed")
                    with gr.Tab("Upload photo"):
                        # a File input, so that any unsupported file reaches a readable error message
                        photo = gr.File(label="Photo with a face", file_types=["image"], type="filepath",
                                        elem_id="photo")
                        with gr.Row():
                            preview = gr.Image(label="Photo", type="pil", interactive=False, height=160)
                            aligned = gr.Image(label="Aligned face", type="pil", format="png", interactive=False,
                                               height=160, elem_classes="result")
                        with gr.Row():
                            invert = gr.Radio(["auto", "e4e", "projector", "pti"], value="auto", label="Inverter",
                                              info="auto: the cheapest reaching 27 dB PSNR and 0.9 identity; pti: "
                                                   "pivotal tuning (the generator is tuned to the photo)")
                            invert_steps = gr.Slider(10, 1000, invert_default, step=10,
                                                     label="Projector steps")
                        upload_button = gr.Button("Align and invert", variant="primary", elem_id="invert")
                source_info = gr.Markdown()
            with gr.Column(scale=6, min_width=420):
                gr.Markdown("### 2 · Edit")
                with gr.Tabs():
                    with gr.Tab("Global directions", elem_id="tab-global"):
                        with gr.Row():
                            neutral = gr.Textbox("a face", label="Neutral text", elem_id="neutral",
                                                 max_length=MAX_TEXT)
                            target = gr.Textbox(global_examples[0][1], label="Target text", elem_id="target",
                                                placeholder="type the change, e.g. " + global_examples[1][1],
                                                max_length=MAX_TEXT)
                        with gr.Row():
                            alpha = gr.Slider(-10, 10, alpha_default, step=0.1, label="α strength", elem_id="alpha",
                                              info="how far to move; negative moves away from the target")
                            beta = gr.Slider(0.05, max(0.5, 2 * beta_default), beta_default, step=0.01,
                                             label="β threshold", elem_id="beta",
                                             info="higher: fewer channels, a more disentangled edit")
                        with gr.Row():
                            global_button = gr.Button("Edit", variant="primary", elem_id="global-edit")
                            stack_button = gr.Button("Stack this edit")
                            clear_button = gr.Button("Clear stack")
                            sweep_button = gr.Button("Alpha-sweep GIF")
                        stack_info = gr.Markdown(app.describe_stack(None))
                        gr.Examples(global_examples, inputs=[neutral, target, alpha, beta], label="Examples")
                    with gr.Tab("Latent mapper", elem_id="tab-mapper"):
                        choices = app.mapper_choices()
                        with gr.Row():
                            mapper = gr.Dropdown(choices, value=choices[0] if choices else None, scale=4,
                                                 allow_custom_value=True,  # API callers may name one: 'mohawk'
                                                 label="Mapper (trained here or official)")
                            refresh_button = gr.Button("Refresh", scale=1)
                        strength = gr.Slider(-2, 3, 1.0, step=0.1, label="Strength (1 = as trained)")
                        mapper_button = gr.Button("Apply mapper", variant="primary")
                        gr.Markdown("Train one with `styleclip train-mapper --prompt '...'` (it lands in "
                                    "`./mappers`), or put official mapper files (e.g. `mohawk.pt`) in the "
                                    "weights folder; then press Refresh.")
                    with gr.Tab("Optimization", elem_id="tab-optimize"):
                        prompt = gr.Textbox(label="Prompt", placeholder="type the change, e.g. "
                                            + optimize_examples[0][0], elem_id="prompt", max_length=MAX_TEXT)
                        steps = gr.Slider(1, 1000, steps_default, step=1, label="Steps")
                        with gr.Accordion("Loss weights and learning rate", open=False):
                            lr = gr.Slider(0.001, 0.5, opt.lr, step=0.001, label="Learning rate")
                            l2_lambda = gr.Slider(0, 0.1, opt.l2_lambda, step=0.001, label="λ L2 (stay near the source)")
                            id_lambda = gr.Slider(0, 0.1, opt.id_lambda, step=0.001,
                                                  label="λ identity" + ("" if app.identity is not None
                                                                        else " (no identity net loaded)"))
                        optimize_button = gr.Button("Optimize", variant="primary", elem_id="optimize")
                        frames = gr.Gallery(label="Intermediate frames", columns=9, height=150, format="png",
                                            elem_classes="result")
                        gr.Examples(optimize_examples, inputs=[prompt], label="Examples")
                    with gr.Tab("Any prompt / reference image", elem_id="tab-any"):
                        any_prompt = gr.Textbox(label="Prompt (optional with a reference image)",
                                                placeholder="a face with a mohawk", elem_id="any-prompt")
                        any_image = gr.Image(label="Reference image (its CLIP embedding is the target)",
                                             type="filepath", height=160, elem_id="any-image")
                        with gr.Row():
                            any_engine = gr.Radio(list(app.ANY_PROMPT_ENGINES), value="universal mapper",
                                                  label="Engine")
                            any_strength = gr.Slider(0, 4, 1.0, step=0.25, label="Strength (x the engine's "
                                                     f"default; global: x alpha {alpha_default:g})")
                            any_auto = gr.Radio(list(app.STRENGTH_MODES), value="fixed", label="Strength per face",
                                                info="auto: the smallest reaching the prompt's CLIP gain; keep "
                                                     "identity: the strongest up to the slider's that keeps the "
                                                     "person")
                        any_button = gr.Button("Edit", variant="primary", elem_id="any-edit")
        gr.Markdown("### 3 · Result")
        with gr.Row(equal_height=True):
            before = gr.Image(label="Before", type="pil", format="png", interactive=False, height=300,
                              elem_id="before", elem_classes="result")
            after = gr.Image(label="After", type="pil", format="png", interactive=False, height=300,
                             elem_id="after", elem_classes="result")
            sweep = gr.Image(label="Alpha sweep", type="filepath", interactive=False, height=300,
                             elem_id="sweep", elem_classes="result")
        result_info = gr.Markdown(elem_id="result-info")
        with gr.Row(equal_height=True):  # uploaded photos: the whole photo, before and with the edit pasted back
            photo_before = gr.Image(label="Photo", type="pil", interactive=False, height=300, elem_id="photo-before")
            photo_after = gr.Image(label="Edited photo (the edit pasted back)", type="pil", format="png",
                                   interactive=False, height=300, elem_id="photo-after")
        with gr.Row():
            image_file = gr.File(label="Edited image (PNG)", elem_id="image-file")
            photo_file = gr.File(label="Edited photo, full size (PNG)", elem_id="photo-file")
            latent_file = gr.File(label="Edited latent (.pt)", elem_id="latent-file")

        # ---- wiring --------------------------------------------------------------------------------------
        source_outputs = [source_image, source_info, session, stack_info]
        edit_outputs = [before, after, result_info, image_file, latent_file, session]
        photo_outputs = [photo_before, photo_after, photo_file]

        def show_source(out: SourceOutput):
            return out.image, out.info, out.session, app.describe_stack(out.session)

        def show_edit(out):
            return out.before, out.after, out.info, str(out.image_file), str(out.latent_file), out.session

        def show_photo_result(session):  # after an edit or an upload: the whole photo, with the last edit pasted back
            return app.photo_view(session)

        def face_from_seed(seed, truncation):
            with user_errors():
                return show_source(app.face_from_seed(seed, truncation))

        def new_face(truncation):
            with user_errors():
                seed, out = app.new_face(truncation)
                return (seed, *show_source(out))

        def upload_photo(path, steps, invert, progress=gr.Progress()):
            with user_errors():
                out = app.upload_photo(path, steps=steps, invert=invert or "auto", report=_reporter(progress))
                return (*show_source(out), out.aligned)

        def show_photo(path):
            return app.preview_photo(path)

        def global_edit(session, neutral, target, alpha, beta):
            with user_errors():
                return show_edit(app.global_edit(session, neutral, target, alpha, beta))

        def global_live(session, neutral, target, alpha, beta):
            if not str(target or "").strip():  # sliders moved before any text: nothing to show yet
                return tuple(gr.skip() for _ in edit_outputs)
            return global_edit(session, neutral, target, alpha, beta)

        def stack_edit(session, neutral, target, alpha, beta):
            with user_errors():
                return app.stack_edit(session, neutral, target, alpha, beta)

        def clear_stack(session):
            with user_errors():
                return app.clear_stack(session)

        def alpha_sweep(session, neutral, target, alpha, beta):
            with user_errors():
                return str(app.alpha_sweep(session, neutral, target, alpha, beta))

        def refresh_mappers():
            names = app.mapper_choices()
            return gr.Dropdown(choices=names, value=names[0] if names else None)

        def mapper_edit(session, choice, strength):
            with user_errors():
                return show_edit(app.mapper_edit(session, choice, strength))

        def optimize(session, prompt, steps, lr, l2_lambda, id_lambda, progress=gr.Progress()):
            with user_errors():
                out = app.optimize(session, prompt, steps, lr, l2_lambda, id_lambda, report=_reporter(progress))
                return (*show_edit(out), out.frames)

        result_outputs = [before, after, sweep, result_info, image_file, latent_file, frames]

        def clear_result():  # a new source: the previous result no longer belongs to it
            return None, None, None, "", None, None, []

        hidden = dict(api_visibility="private", show_progress="hidden")
        def any_prompt_edit(session, prompt, image, engine, strength, auto, progress=gr.Progress()):
            with user_errors():
                return show_edit(app.any_prompt_edit(session, prompt, image, engine, strength, auto,
                                                     report=_reporter(progress)))

        heavy = dict(concurrency_id="heavy", concurrency_limit=1)
        then_photo = dict(fn=show_photo_result, inputs=[session], outputs=photo_outputs, api_visibility="private",
                          show_progress="hidden")
        on_source = dict(show_progress_on=[source_image])  # spinners and error badges on one panel only
        on_after = dict(show_progress_on=[after])
        demo.load(face_from_seed, [seed, truncation], source_outputs, api_name="initial_face", api_visibility="private",
                  **on_source)
        new_button.click(new_face, [truncation], [seed, *source_outputs], api_name="new_face", **on_source).then(
            clear_result, None, result_outputs, **hidden).then(**then_photo)
        seed_button.click(face_from_seed, [seed, truncation], source_outputs, api_name="face_from_seed",
                          **on_source).then(clear_result, None, result_outputs, **hidden).then(**then_photo)
        seed.submit(face_from_seed, [seed, truncation], source_outputs, api_name="seed_submit",
                    api_visibility="private", **on_source).then(clear_result, None, result_outputs, **hidden)
        photo.change(show_photo, [photo], [preview], api_name="photo_preview", api_visibility="private",
                     show_progress="hidden")
        upload_button.click(upload_photo, [photo, invert_steps, invert], [*source_outputs, aligned],
                            api_name="upload_photo", **heavy, **on_source).then(
            clear_result, None, result_outputs, **hidden).then(**then_photo)
        global_inputs = [session, neutral, target, alpha, beta]
        global_button.click(global_edit, global_inputs, edit_outputs, api_name="global_edit",
                            **on_after).then(**then_photo)
        target.submit(global_edit, global_inputs, edit_outputs, api_name="target_submit", api_visibility="private",
                      **on_after).then(**then_photo)
        for name, slider in (("alpha", alpha), ("beta", beta)):  # on release: a cached direction, one synthesis
            slider.release(global_live, global_inputs, edit_outputs, api_name=f"{name}_release",
                           api_visibility="private",
                           show_progress="minimal", trigger_mode="always_last", **on_after).then(**then_photo)
        stack_button.click(stack_edit, global_inputs, [stack_info, session], api_name="stack_edit")
        clear_button.click(clear_stack, [session], [stack_info, session], api_name="clear_stack")
        sweep_button.click(alpha_sweep, global_inputs, [sweep], api_name="alpha_sweep")
        refresh_button.click(refresh_mappers, None, [mapper], api_name="refresh_mappers")
        mapper_button.click(mapper_edit, [session, mapper, strength], edit_outputs, api_name="mapper_edit",
                            **on_after).then(**then_photo)
        optimize_button.click(optimize, [session, prompt, steps, lr, l2_lambda, id_lambda], [*edit_outputs, frames],
                              api_name="optimize", **heavy, **on_after).then(**then_photo)
        any_button.click(any_prompt_edit, [session, any_prompt, any_image, any_engine, any_strength, any_auto],
                         edit_outputs, api_name="any_prompt_edit", **heavy, **on_after).then(**then_photo)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def serve(model: str = "debug", *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          device: str = "auto", relevance: Optional[str] = None, stats: Optional[str] = None,
          mappers: Optional[Sequence[str]] = None, block: bool = True):
    """Load the models once, build the page and serve it (127.0.0.1 unless told otherwise)."""
    app = StyleClipApp(model, device=device, relevance=relevance, stats=stats, mapper_folders=mappers)
    for notice in app.notices:
        print(f"notice: {notice}")
    demo = build_demo(app)
    # quiet: gradio's own hint says "set share=True in launch()"; this app's switch is --share
    demo.launch(server_name=host, server_port=port, share=share, theme=gr.themes.Soft(), css=CSS,
                prevent_thread_lock=True, footer_links=["api", "gradio"], quiet=True)
    print(f"Running on {demo.local_url}" + (f" and {demo.share_url}" if getattr(demo, "share_url", None) else
                                           " (styleclip serve --share: also a temporary public link)"), flush=True)
    if block:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # `kill` too, not only Ctrl-C, cleans up
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            demo.block_thread()
        finally:
            app.close()
    return demo


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="The StyleCLIP web app.")
    parser.add_argument("--model", default=None, help="model set (ffhq; toy-faces: offline, the default when "
                                                      "FFHQ cannot be had; debug) or checkpoint")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    parser.add_argument("--relevance", default=None, help="channel relevance fs3.npy for global directions")
    parser.add_argument("--stats", default=None, help="style statistics file for global directions")
    parser.add_argument("--mappers", action="append", default=None, help="folder of trained mappers (repeatable)")
    args = parser.parse_args(argv)
    from styleclip.errors import StyleClipError
    from styleclip.util.runtime import keep_freed_memory

    keep_freed_memory()  # a long-running server: reuse activation memory across requests

    try:
        from styleclip.factory import default_model

        model = args.model or default_model(notice=lambda line: print(line, file=sys.stderr))
        serve(model, host=args.host, port=args.port, share=args.share, device=args.device,
              relevance=args.relevance, stats=args.stats, mappers=args.mappers)
    except StyleClipError as e:
        raise SystemExit(f"error: {' '.join(str(e).split())}")


if __name__ == "__main__":
    main()
