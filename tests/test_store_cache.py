"""One fingerprint per kind of module and one cache-path rule (store/cache.py): old cache and shipped file
names are still found, and mapper files recording the fingerprint of earlier releases still match."""
import hashlib
import json

import pytest

from styleclip.factory import debug_generator, load_clip, load_generator
from styleclip.store import cache
from styleclip.store import stylespace_files as files
from styleclip.util.fingerprint import clip_fingerprint, generator_fingerprint, identity_fingerprint


def test_the_rule_keeps_the_file_names_of_earlier_releases(tmp_path, monkeypatch):
    from styleclip.encoders.identity import debug_identity
    from styleclip.photo import invert, pti
    from styleclip.store.registry import converted_path

    monkeypatch.setenv("STYLECLIP_CACHE", str(tmp_path))
    g, clip, ident = debug_generator(), load_clip("debug"), debug_identity()
    fp = generator_fingerprint(g)
    assert files.stats_cache_path(g) == tmp_path / "stylespace" / f"stats-{fp}-n100000-psi0.7-seed5.safetensors"
    assert files.stats_cache_path(g, n=1000).name == f"stats-{fp}-n1000-psi0.7-seed5.safetensors"
    desc = hashlib.sha256(json.dumps({"method": "exact"}, sort_keys=True).encode()).hexdigest()[:8]
    assert files.relevance_cache_path(g, clip) == \
        tmp_path / "stylespace" / f"fs3-{fp}-{clip_fingerprint(clip)}-{desc}.npy"
    assert files.identity_cost_cache_path(g, ident) == \
        tmp_path / "stylespace" / f"idcost-{fp}-{identity_fingerprint(ident)}.npy"
    assert invert.cache_path("k") == tmp_path / "inversions" / "k.pt"
    assert pti.cache_path("k") == tmp_path / "pti" / "k.safetensors"
    src = tmp_path / "my.pkl"
    src.write_bytes(b"x")
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    assert converted_path(src) == tmp_path / "converted" / f"my-{key}.safetensors"
    assert cache.partial_path(files.stats_cache_path(g)).name == f"stats-{fp}-n100000-psi0.7-seed5.partial"
    with pytest.raises(ValueError, match="separator"):
        cache.cache_path("pti", "a/b", suffix=".x")
    with pytest.raises(KeyError, match="unknown cache kind"):
        cache.cache_path("nope", "a", suffix=".x")


def test_shipped_toy_files_are_found_by_the_unchanged_fingerprints():
    g, clip = load_generator("toy-faces"), load_clip("toy-faces")
    assert generator_fingerprint(g) == "8de5be606ab17afa"  # in the names of styleclip/assets/stylespace/*
    assert files.shipped_or(files.stats_cache_path(g)).parent == files.SHIPPED_DIR
    assert files.shipped_relevance(g, clip) is not None


def test_mapper_files_recording_the_legacy_fingerprint_still_match():
    from styleclip.store import mappers

    g, other = debug_generator(0), debug_generator(1)
    current = {"generator": {"fingerprint": generator_fingerprint(g)}}
    legacy = {"generator": {"fingerprint": mappers._legacy_fingerprint(g)}}
    assert mappers.trained_for(current, g) and mappers.trained_for(legacy, g)
    assert mappers.trained_for({}, g) and mappers.trained_for({"generator": {"fingerprint": None}}, g)
    assert not mappers.trained_for(current, other) and not mappers.trained_for(legacy, other)
    with pytest.warns(UserWarning, match="different generator"):
        mappers.warn_if_other_generator(current, other, "mapper")
