import os
import pickle

import pytest
import torch
from typer.testing import CliRunner

from helpers import parity_state_dict, write_nvidia_pkl
from styleclip.cli import app
from styleclip.store.readers import build_generator, read_generator, save_generator
from styleclip.errors import CheckpointError
from styleclip.factory import load_generator

runner = CliRunner()


@pytest.fixture(scope="module")
def rosinality_pt(tmp_path_factory):
    _, sd = parity_state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "g.pt"
    torch.save({"g_ema": sd, "latent_avg": torch.randn(512, generator=torch.Generator().manual_seed(5))}, path)
    return path


def _images(g, seed=0):
    w = torch.randn(2, g.num_ws, g.config.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return g.synthesis(w)


def test_latent_avg_and_safetensors_round_trip(rosinality_pt, tmp_path):
    g = build_generator(*read_generator(rosinality_pt))
    expected = torch.randn(512, generator=torch.Generator().manual_seed(5))
    assert torch.equal(g.w_avg, expected)
    out = save_generator(g, tmp_path / "g.safetensors")
    g2 = build_generator(*read_generator(out))
    assert g2.config == g.config
    assert torch.equal(_images(g), _images(g2))


def test_bare_state_dict_without_latent_avg_or_kernels(tmp_path):
    _, sd = parity_state_dict()
    sd = {k: v for k, v in sd.items() if not k.endswith("kernel")}
    torch.save(sd, tmp_path / "bare.pt")
    config, state = read_generator(tmp_path / "bare.pt")
    assert config.size == 16 and state["w_avg"].shape == (512,)


def test_nvidia_pkl_loads_without_running_its_code(rosinality_pt, tmp_path):
    g = build_generator(*read_generator(rosinality_pt))
    trap = tmp_path / "executed.txt"
    pkl = tmp_path / "network-snapshot.pkl"
    write_nvidia_pkl(pkl, g.state_dict(), size=16, n_mlp=2, trap_file=str(trap))
    assert b"module source was executed" in pkl.read_bytes()  # the trap is really in the file
    g2 = build_generator(*read_generator(pkl))
    assert not trap.exists()
    assert torch.allclose(_images(g), _images(g2), atol=1e-5)
    assert torch.equal(g.w_avg, g2.w_avg)


def test_nvidia_conv_clamp_and_channel_base(tmp_path):
    torch.manual_seed(0)
    from styleclip.nets.stylegan2 import Generator, GeneratorConfig

    ref = Generator(GeneratorConfig(size=32, style_dim=64, n_mlp=2, channel_multiplier=1, channel_base=16384))
    pkl = tmp_path / "ada.pkl"
    write_nvidia_pkl(pkl, ref.state_dict(), size=32, n_mlp=2, channel_base=16384, conv_clamp=256)
    config, _ = read_generator(pkl)
    assert config.conv_clamp == 256.0 and config.channels(32) == 512 and config.channel_multiplier == 1


def test_pkl_with_unknown_global_is_refused(rosinality_pt, tmp_path):
    g = build_generator(*read_generator(rosinality_pt))
    pkl = tmp_path / "evil.pkl"
    write_nvidia_pkl(pkl, g.state_dict(), size=16, n_mlp=2, extra_globals=True)
    with pytest.raises(CheckpointError, match="refusing to load global (posix|os|nt).system"):
        read_generator(pkl)
    assert not os.path.exists("/tmp/styleclip-pwned")


def test_plain_malicious_pickle_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (eval, ("1+1",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Evil()}))
    with pytest.raises(CheckpointError, match="builtins.eval"):
        read_generator(path)


@pytest.mark.parametrize("case", ["truncated", "text", "empty", "wrong_keys", "missing"])
def test_bad_files_give_one_line_errors_and_exit_1(rosinality_pt, tmp_path, case):
    path = tmp_path / "g.pt"
    if case == "truncated":
        data = rosinality_pt.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "text":
        path.write_text("this is not a checkpoint, just some text\n" * 10)
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "wrong_keys":
        torch.save({"g_ema": {"style.1.weight": torch.zeros(4, 4)}}, path)
    result = runner.invoke(app, ["convert", str(path), str(tmp_path / "out.safetensors")])
    assert result.exit_code == 1
    lines = [l for l in result.output.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.safetensors").exists()


def test_shape_mismatch_names_the_keys(rosinality_pt, tmp_path):
    ckpt = torch.load(rosinality_pt, weights_only=True)
    ckpt["g_ema"]["conv1.activate.bias"] = torch.zeros(7)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"conv1.activate.bias \[7\]"):
        build_generator(*read_generator(tmp_path / "bad.pt"), source="bad.pt")


def test_load_generator_caches_conversion(rosinality_pt):
    from styleclip.store import registry as pretrained

    g = load_generator(rosinality_pt)
    cached = pretrained.converted_path(rosinality_pt)
    assert cached.is_file()
    g2 = load_generator(rosinality_pt)
    assert torch.equal(_images(g), _images(g2))


def test_cli_generate_and_convert(rosinality_pt, tmp_path):
    out = tmp_path / "face.png"
    result = runner.invoke(app, ["generate", "--model", "debug", "--seed", "3", "--out", str(out),
                                 "--save-latent", str(tmp_path / "w.pt")])
    assert result.exit_code == 0, result.output
    from PIL import Image

    assert Image.open(out).size == (32, 32)
    assert torch.load(tmp_path / "w.pt").shape == (1, 8, 64)  # 32 px: 8 W+ rows
    result = runner.invoke(app, ["convert", str(rosinality_pt), str(tmp_path / "g.safetensors")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["generate", "--checkpoint", str(tmp_path / "g.safetensors"), "--out",
                                 str(tmp_path / "b.png"), "--truncation", "1"])
    assert result.exit_code == 0 and Image.open(tmp_path / "b.png").size == (16, 16)


def test_missing_real_weights_message():
    result = runner.invoke(app, ["generate", "--model", "ffhq"])
    assert result.exit_code == 1
    assert "stylegan2-ffhq-config-f.pt" in result.output and "Traceback" not in result.output


def test_import_is_cheap():
    import subprocess
    import sys

    code = ("import sys, styleclip; assert 'torch' not in sys.modules and 'typer' not in sys.modules "
            "and 'gradio' not in sys.modules, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch','typer','gradio'))")
    subprocess.run([sys.executable, "-c", code], check=True)
