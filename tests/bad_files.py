"""Crafted and broken input files for the bad-input corpus and the fuzz targets (all tiny; built on demand).

`write_corpus(folder)` writes every file and returns {name: path}. The crafted pickles are written opcode by
opcode, so they do exactly what their name says whatever the unpickler does with them."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

RECORD = b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n"


def _str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _kv(key: str, value: bytes) -> bytes:
    return _str(key) + value + b"s"


def _pickle(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def _g_ema(record: bytes) -> bytes:
    return _pickle(b"}" + _kv("G_ema", record))


def deep_record_pickle(depth: int = 2_000) -> bytes:
    """G_ema whose module tree nests `depth` levels (naive recursion overflows the stack)."""
    open_level = RECORD + b"}" + _kv("class_name", _str("training.networks.Layer")) + _str("state") + b"}" \
        + _str("_modules") + b"}" + _str("m")
    close_level = b"s" + b"s" + b"s" + b"\x85R"
    leaf = RECORD + b"}\x85R"
    return _g_ema(open_level * depth + leaf + close_level * depth)


def self_reference_pickle() -> bytes:
    """G_ema whose _modules contain G_ema itself (memo + BUILD)."""
    record = RECORD + b"}\x85R" + b"q\x00"  # the record, memoised as 0
    meta = b"}" + _kv("class_name", _str("training.networks.SynthesisNetwork")) + _str("state") + b"}" \
        + _str("_modules") + b"}" + _str("self") + b"h\x00" + b"s" + b"s" + b"s"
    return _g_ema(record + b"}" + _str("meta") + meta + b"s" + b"b")


def nested_list_pickle(depth: int = 20_000) -> bytes:
    """A plain list nested `depth` deep (no G_ema)."""
    return _pickle(b"]" * depth + b"a" * (depth - 1))


def huge_ndarray_pickle() -> bytes:
    """An allowed numpy reconstructor asked for a 9 TiB array."""
    recon = b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + \
        b"(\x8a\x06" + (9 * 2 ** 40).to_bytes(6, "little") + b"t" + _str("b") + b"\x87R"
    return _g_ema(recon)


def huge_tensor_pickle() -> bytes:
    """A tensor view claiming 2^40 elements of an 8-byte storage (stride 0), and one past its storage."""
    import io

    buf = io.BytesIO()
    torch.save(torch.zeros(2).untyped_storage(), buf)  # what NVIDIA pickles embed via _load_from_bytes
    storage = b"ctorch.storage\n_load_from_bytes\n" + b"B" + struct.pack("<I", len(buf.getvalue())) \
        + buf.getvalue() + b"\x85R"
    size = b"(" + b"\x8a\x06" + (2 ** 40).to_bytes(6, "little") + b"t"
    stride = b"(K\x00t"
    od = b"ccollections\nOrderedDict\n)R"
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + b"K\x00" + size + stride + b"\x89" + od + b"tR"
    params = b"}" + _kv("weight", tensor)
    state = b"}" + _kv("_parameters", params)
    return _g_ema(RECORD + b"}" + _kv("class_name", _str("training.networks.Generator")) + _str("state") + state
                  + b"s" + b"\x85R")


def wrong_types_pickle() -> bytes:
    """A G_ema record whose fields have the wrong types (_parameters a list, _init_kwargs a string, ...)."""
    state = b"}" + _kv("_parameters", b"]K\x01a") + _kv("_init_kwargs", _str("img_resolution=64")) \
        + _kv("_modules", b"]")
    return _g_ema(RECORD + b"}" + _kv("class_name", _str("training.networks.Generator")) + _kv("state", state)
                  + b"\x85R")


def wrong_kwargs_pickle() -> bytes:
    """Well-formed records, but img_resolution is text and num_layers a list."""
    kwargs = b"}" + _kv("img_resolution", _str("sixty-four")) + _kv("mapping_kwargs", b"}" + _kv("num_layers", b"]"))
    state = b"}" + _kv("_init_kwargs", kwargs)
    return _g_ema(RECORD + b"}" + _kv("class_name", _str("training.networks.Generator")) + _kv("state", state)
                  + b"\x85R")


def code_pickle() -> bytes:
    """The classic: os.system through REDUCE (must be refused, never run)."""
    return _pickle(b"cos\nsystem\n" + _str("touch /tmp/styleclip-pwned") + b"\x85R")


def npy_header(shape, dtype: str = "<f4", data: bytes = b"") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict) -> bytes:
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def write_corpus(folder: Path, *, small: bool = False) -> dict[str, Path]:
    """Every crafted file (bytes only; no network built) into `folder`; `small`: shallower nesting (still far
    beyond the limits), as kept in tests/data/fuzz."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"size": 2 ** 20, "style_dim": 64, "n_mlp": 2, "channel_multiplier": 1, "channel_base": 512,
              "channel_max": 32}
    files = {
        "deep_record.pkl": deep_record_pickle(200 if small else 2_000),
        "self_reference.pkl": self_reference_pickle(),
        "nested_list.pkl": nested_list_pickle(2_000 if small else 20_000),
        "huge_ndarray.pkl": huge_ndarray_pickle(),
        "huge_tensor.pkl": huge_tensor_pickle(),
        "wrong_types.pkl": wrong_types_pickle(),
        "wrong_kwargs.pkl": wrong_kwargs_pickle(),
        "code.pkl": code_pickle(),
        "empty.pkl": b"",
        "truncated.pkl": deep_record_pickle(3)[:-40],
        "empty.npy": b"",
        "huge_header.npy": npy_header((10 ** 12, 512)),
        "object.npy": npy_header((2,), "|O", b"\x80\x02N."),
        "bad_header.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': os.system}\n",
        "empty_batch.npy": npy_header((0, 8, 64)),
        "nan.npy": npy_header((2, 3), data=np.full((2, 3), np.nan, np.float32).tobytes()),
        "huge_config.safetensors": safetensors_bytes({"w_avg": np.zeros(64)},
                                                     {"format": "styleclip-generator", "config": json.dumps(config)}),
        "config_wrong_type.safetensors": safetensors_bytes(
            {"w_avg": np.zeros(4)}, {"format": "styleclip-generator", "config": json.dumps([1, 2])}),
        "huge_safetensors_header.safetensors": struct.pack("<Q", 2 ** 40) + b"{" + b" " * 32,
        "mapper_bad_info.safetensors": safetensors_bytes(
            {"coarse_mapping.mapping.1.weight": np.zeros((64, 64))},
            {"format": "styleclip-mapper", "info": json.dumps({"architecture": {"split": 3, "num_ws": "x"}})}),
        "stats_garbage.safetensors": safetensors_bytes({"mean_0": np.zeros(3)}, {"styleclip": "[1"}),
        "stats_nan.safetensors": safetensors_bytes({"mean_0": np.zeros(3), "std_0": np.full(3, np.nan)},
                                                   {"styleclip": "{}"}),
        "garbage.bin": bytes(range(256)) * 4,
        "not_an_image.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


if __name__ == "__main__":  # python tests/bad_files.py tests/data/fuzz  (refresh the kept crash corpus)
    import sys

    for path in write_corpus(Path(sys.argv[1]), small=True).values():
        print(path)
