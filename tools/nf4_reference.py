#!/usr/bin/env python3
"""An independent reference of bitsandbytes' NF4 blockwise quantization (numpy only), and the
fixture tests/nf4/test_nf4.cpp compares kvprime's quantizer with, bit for bit.

The algorithm, as bitsandbytes' kQuantizeBlockwise + dQuantizeNF4 do it: row-major blocks of 64;
absmax = max |x| of the block (float32); scaled = x * (1 / absmax) in float32; the 4-bit code is
found by walking the binary tree of midpoints between the 16 NF4 values with `x > threshold`
(equal goes left/down, NaN goes to code 0); two codes per byte, the first in the high nibble.
This script walks the tree; kvprime counts midpoints (bucketize): different algorithms, one answer.

Double quantization (bitsandbytes' compress_statistics): offset = mean of the absmax values (here
in float64, rounded to float32: kvprime's definition, see model/nf4.h), then absmax - offset in
blocks of 256: each block's absmax, x * (1 / absmax) clamped to [-1, 1], and the index of the
nearest value of the signed dynamic map by float32 |x - v| (argmin over all 256: the first wins a
tie), as bitsandbytes' quantize_blockwise does. kvprime looks at the two neighbours only. The map
is built with torch exactly as bitsandbytes' create_dynamic_map builds it; its values depend on
torch's float32 linspace (torch 1.13 rounds 42 of the 256 one ulp differently from torch 2.x), so
the script wants PyTorch 2.x, as bitsandbytes has today: run it on the GPU machine (device tool),
where torch 2.11 made the committed fixture.

    python3 tools/nf4_reference.py [out]   # default tests/fixtures/nf4/reference.safetensors
"""
import json
import pathlib
import struct
import sys
from fractions import Fraction

import numpy as np
import torch

def f32(literal):
    """The float32 nearest to a decimal literal, rounded once, as a C/CUDA compiler rounds `1.23f`
    (bitsandbytes' constants are such literals). np.float32(float(s)) rounds twice (decimal ->
    double -> float32) and differs for 4 of the 15 midpoints below."""
    q = Fraction(literal)
    a = np.float32(float(literal))
    cands = [np.nextafter(a, np.float32(-2)), a, np.nextafter(a, np.float32(2))]
    best = min(abs(Fraction(float(c)) - q) for c in cands)
    ties = [c for c in cands if abs(Fraction(float(c)) - q) == best]
    # A tie goes to the even significand (round half to even).
    return min(ties, key=lambda c: int(np.frombuffer(np.float32(c).tobytes(), np.uint32)[0]) & 1)


CODE = np.array([f32(s) for s in """
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0
""".replace(",", " ").split()],
                dtype=np.float32)
MID = np.array([f32(s) for s in """
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011
""".replace(",", " ").split()],
               dtype=np.float32)


def code_of(x):
    """The tree: 4 comparisons, each choosing the upper half when x > the half's midpoint."""
    lo, hi = 0, 16
    while hi - lo > 1:
        m = (lo + hi) // 2          # codes [lo, m) vs [m, hi); their midpoint is MID[m - 1]
        if x > MID[m - 1]:
            lo = m
        else:
            hi = m
    return lo


def quantize(w, block=64):
    flat = w.astype(np.float32).reshape(-1)
    n = flat.size
    nb = (n + block - 1) // block
    padded = np.zeros(nb * block, dtype=np.float32)
    padded[:n] = flat
    absmax = np.abs(padded.reshape(nb, block)).max(axis=1).astype(np.float32)
    codes = np.zeros(nb * block, dtype=np.uint8)
    with np.errstate(divide="ignore", invalid="ignore"):
        recip = (np.float32(1.0) / absmax).astype(np.float32)
        for b in range(nb):
            scaled = padded[b * block:(b + 1) * block] * recip[b]   # float32 * float32
            for j, x in enumerate(scaled):
                codes[b * block + j] = 0 if np.isnan(x) else code_of(np.float32(x))
    # The zero padding of the last block is quantized like any value (bitsandbytes loads the
    # block padded with 0.0): an odd tensor's last byte ends in the code of 0.
    codes = codes[:n + (n % 2)]
    packed = (codes[0::2] << 4) | codes[1::2]
    return packed.astype(np.uint8), absmax


def dynamic_map():
    """bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)."""
    data = []
    for i in range(7):
        boundaries = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0, 1.0]
    assert len(data) == 256
    data.sort()
    return np.array(data, dtype=np.float32)


def quantize_absmax(absmax, dmap, block=256):
    offset = np.float32(np.mean(absmax.astype(np.float64)))
    centred = (absmax - offset).astype(np.float32)
    nb2 = (centred.size + block - 1) // block
    q = np.zeros(centred.size, dtype=np.uint8)
    scale = np.zeros(nb2, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in range(nb2):
            x = centred[b * block:(b + 1) * block]          # the last block: only its own elements
            scale[b] = np.abs(x).max()
            scaled = np.clip(x * (np.float32(1.0) / scale[b]), np.float32(-1), np.float32(1)).astype(np.float32)
            dist = np.abs(scaled[:, None] - dmap[None, :]).astype(np.float32)
            q[b * block:(b + 1) * block] = np.argmin(dist, axis=1)
    return q, scale, np.array([offset], dtype=np.float32)


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, arr in tensors.items():
        dt = {np.float32: "F32", np.uint8: "U8"}[arr.dtype.type]
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    if int(torch.__version__.split(".")[0]) < 2:
        sys.exit(f"nf4_reference: torch {torch.__version__}: the dynamic map needs PyTorch 2.x's linspace "
                 "(run this on the GPU machine)")
    rng = np.random.default_rng(20261129)
    cases = {
        "normal": rng.standard_normal((48, 128)).astype(np.float32) * 0.02,  # weight-like
        "heavy": rng.standard_t(3, (7, 64)).astype(np.float32),               # outliers
        "tail": rng.standard_normal((3, 37)).astype(np.float32),              # 111: odd, partial block
        # 400 blocks: a whole block of 256 absmax values and a partial one (double quantization)
        "large": rng.standard_normal((200, 128)).astype(np.float32) * 0.02,
    }
    # Edge cases in one block each: exact midpoints (scaled by absmax 1), exact code values, the
    # absmax itself at both signs, an all-zero block, tiny values.
    edge = np.zeros((6, 64), dtype=np.float32)
    edge[0, :15] = MID
    edge[0, 15] = 1.0
    edge[1, :16] = CODE
    edge[2, 0], edge[2, 1], edge[2, 2:] = -3.0, 3.0, np.linspace(-3, 3, 62, dtype=np.float32)
    edge[3] = 0.0
    edge[4] = np.float32(1e-30) * rng.standard_normal(64).astype(np.float32)
    edge[5, :15] = np.nextafter(MID, np.float32(2))   # just above each midpoint
    edge[5, 15] = 1.0
    cases["edge"] = edge
    dmap = dynamic_map()
    tensors = {"dynamic_map": dmap}
    for name, w in cases.items():
        packed, absmax = quantize(w)
        tensors[f"{name}/weight"] = w
        tensors[f"{name}/codes"] = packed
        tensors[f"{name}/absmax"] = absmax
        q, scale, offset = quantize_absmax(absmax, dmap)
        tensors[f"{name}/dq/absmax_q"] = q
        tensors[f"{name}/dq/absmax_scale"] = scale
        tensors[f"{name}/dq/absmax_offset"] = offset
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else \
        pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nf4" / "reference.safetensors"
    write_safetensors(out, tensors, {"generator": "tools/nf4_reference.py", "fixture_version": "2",
                                     "block": "64", "torch": torch.__version__, "numpy": np.__version__})
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
