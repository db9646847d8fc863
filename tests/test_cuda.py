"""Every engine on CUDA gives what it gives on the CPU (skipped where no CUDA device is present: CI has none;
run on a GPU machine with `python -m pytest -q tests/test_cuda.py`)."""
import pytest
import torch

from typer.testing import CliRunner

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def toy():
    import styleclip

    g_cpu = styleclip.load_generator("toy-faces")
    g_gpu = styleclip.load_generator("toy-faces", device="cuda")
    return g_cpu, g_gpu, styleclip.load_clip("toy-faces"), styleclip.load_clip("toy-faces", device="cuda")


def _w(g, n=2):
    z = torch.randn(n, g.config.style_dim, generator=torch.Generator().manual_seed(0))
    return g.broadcast(g.mapping(z.to(g.w_avg.device), truncation_psi=0.7))


@pytest.fixture
def no_tf32():
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = old


def test_generator_matches_cpu_with_tf32_on(toy):
    g_cpu, g_gpu, _, _ = toy
    with torch.no_grad():
        diff = (g_gpu.synthesis(_w(g_gpu)).cpu() - g_cpu.synthesis(_w(g_cpu))).abs()
    assert diff.mean() < 2e-4 and diff.max() < 1e-2  # TF32 convolutions: 10-bit mantissas


def test_generator_matches_cpu_and_keeps_the_device(toy, no_tf32):
    """In float32 without TF32 the GPU path (fused upsampling, unbanded reductions) gives the CPU's image up to
    cuDNN's algorithm choice (7.5e-4 at most seen on an H200; an off-by-one tap would be ~0.1)."""
    g_cpu, g_gpu, _, _ = toy
    with torch.no_grad():
        a = g_cpu.synthesis(_w(g_cpu))
        b = g_gpu.synthesis(_w(g_gpu))
        s = g_gpu.styles(_w(g_gpu))
        c = g_gpu.synthesis_from_styles(s)
    assert b.device.type == "cuda" and all(x.device.type == "cuda" for x in s)
    torch.testing.assert_close(b.cpu(), a, atol=3e-3, rtol=0)
    torch.testing.assert_close(c, b, atol=1e-5, rtol=0)  # W+ -> S -> image round trip on the device


def test_latent_gradients_match_cpu(toy, no_tf32):
    grads = []
    for g in toy[:2]:
        w = _w(g).detach().requires_grad_(True)
        img = g.synthesis(w, checkpoint_min_res=32)
        (img * torch.linspace(-1, 1, img.numel(), device=img.device).view(img.shape)).sum().backward()
        grads.append(w.grad.cpu())
    scale = grads[0].abs().max()
    assert scale > 0 and (grads[1] - grads[0]).abs().max() < 5e-3 * scale  # 1.7e-3 seen on an H200


@pytest.mark.parametrize("engine,options", [
    ("optimize", dict(steps=3)),
    ("optimize", dict(steps=3, bf16=True)),
    ("global", dict()),
    ("mapper", dict(mapper="universal")),
])
def test_every_engine_edits_on_cuda_like_on_cpu(toy, engine, options):
    import styleclip

    g_cpu, g_gpu, c_cpu, c_gpu = toy
    prompt = styleclip.Prompt("a face with blond hair")
    out = {}
    for name, g, c in (("cpu", g_cpu, c_cpu), ("cuda", g_gpu, c_gpu)):
        editor = styleclip.create_editor(engine, g, c, **options)
        out[name] = editor.edit(styleclip.Latent(_w(g)), prompt)
    assert out["cuda"].image.device == g_gpu.w_avg.device
    diff = (out["cuda"].image.cpu().float() - out["cpu"].image.float()).abs().mean()
    change = (out["cpu"].image - out["cpu"].source_image).abs().mean() if out["cpu"].source_image is not None else 1
    assert diff < 0.05 + 0.2 * change, (float(diff), float(change))


def test_cli_edit_runs_on_cuda(tmp_path):
    from styleclip.cli import app

    r = CliRunner().invoke(app, ["edit", "--model", "toy-faces", "--device", "cuda", "--engine", "global",
                                 "--prompt", "a face with blond hair", "--seeds", "0-1", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    run = tmp_path / "a-face-with-blond-hair-global"  # the run's own folder
    assert (run / "seed0_edited.png").exists() and (run / "seed1_before_after.png").exists()


@pytest.mark.skipif(__import__("importlib").util.find_spec("triton") is None, reason="no Triton")
def test_compiled_optimization_with_cuda_graphs_edits_as_eager(toy, no_tf32):
    """--compile on CUDA (inductor's Triton kernels replayed as CUDA graphs) gives the eager edit, also with CLIP
    views."""
    import styleclip

    _, g, _, c = toy
    prompt = styleclip.Prompt("a face with blond hair")
    cfg = dict(steps=8, clip_views=2)  # views: their offsets enter the graphed step as a device tensor
    eager = styleclip.create_editor("optimize", g, c, **cfg).edit(styleclip.Latent(_w(g)), prompt)
    editor = styleclip.create_editor("optimize", g, c, compile=True, **cfg)
    compiled = editor.edit(styleclip.Latent(_w(g)), prompt)
    again = editor.edit(styleclip.Latent(_w(g)), prompt)  # replays the recorded graphs
    moved = (eager.latent - _w(g)).abs().max()
    assert moved > 1e-2
    assert (compiled.latent - eager.latent).abs().max() < 1e-2 * moved
    torch.testing.assert_close(again.latent, compiled.latent, atol=1e-5, rtol=0)
    assert compiled.metrics["final_losses"]["total"] == pytest.approx(eager.metrics["final_losses"]["total"],
                                                                      rel=1e-2)
