"""Read a CTranslate2 `model.bin` into numpy arrays.

Written by hand because no maintained library reads CT2 files back into PyTorch: CTranslate2 itself
only writes them (its converters) and runs them (its C++ runtime). The layout below is the inverse of
`ctranslate2/specs/model_spec.py::ModelSpec._serialize` (binary version 6, little endian):

    u32 version | str spec_name | u32 spec_revision | u32 n_vars
    n_vars × [ str name | u8 rank | rank × u32 dims | u8 dtype | u32 nbytes | raw bytes ]
    u32 n_aliases | n_aliases × [ str alias | str target ]
    str = u16 length (including NUL) | utf-8 bytes | NUL
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
SUPPORTED_VERSIONS = (5, 6)


def _u(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize(fmt)
    return struct.unpack("<" + fmt, f.read(size))[0]


def _str(f: BinaryIO) -> str:
    n = _u(f, "H")
    return f.read(n)[:-1].decode("utf-8")


def read_ct2(path: Union[str, Path]) -> tuple[str, dict[str, np.ndarray]]:
    """Return (spec name, {variable name: array}) with aliases resolved and int8/int16 weights
    dequantised to float32 (CT2 stores `w_q` and a per-row `w_scale`, with w = w_q / scale)."""
    with open(path, "rb") as f:
        version = _u(f, "I")
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, expected one of {SUPPORTED_VERSIONS}")
        spec = _str(f)
        _u(f, "I")  # spec revision: not needed to read the tensors
        variables: dict[str, np.ndarray] = {}
        for _ in range(_u(f, "I")):
            name = _str(f)
            dims = [_u(f, "I") for _ in range(_u(f, "B"))]
            dtype = _DTYPES[_u(f, "B")]
            raw = f.read(_u(f, "I"))
            if dtype == "bfloat16":  # numpy has no bfloat16: widen the upper 16 bits to float32
                arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, dtype)
            variables[name] = arr.reshape(dims)
        for _ in range(_u(f, "I")):
            alias, target = _str(f), _str(f)
            variables[alias] = variables[target]
    return spec, _dequantise(variables)


def _dequantise(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(variables)
    for name in [n for n in variables if n.endswith("_scale")]:
        weight = name[: -len("_scale")]
        if weight in variables and variables[weight].dtype in (np.int8, np.int16):
            scale = variables[name].astype(np.float32)
            out[weight] = variables[weight].astype(np.float32) / scale.reshape(-1, *[1] * (variables[weight].ndim - 1))
            del out[name]
    return out
