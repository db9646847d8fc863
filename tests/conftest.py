import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own weights cache and no weights dir: nothing leaks between tests or from ~."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("STYLECLIP_CACHE", str(cache))
    monkeypatch.delenv("STYLECLIP_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("STYLECLIP_OFFLINE", "1")  # no test may download (tests of the downloader lift this)
    yield


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests use tiny networks: with several threads OpenMP spin-waiting costs more than it gives (25-50x
    slower seen on a busy 2-core machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def debug_generator():
    from styleclip.factory import debug_generator as build

    return build()
