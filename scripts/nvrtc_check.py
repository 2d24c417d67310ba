"""Compiles generated CUDA kernel sources with NVRTC, without a GPU.

The kernel tests write the CUDA C++ that CubeCL generates (`KILN_CUDA_SOURCES=DIR cargo test
--features cuda ... cuda_sources`); this compiles each `.cu` file of DIR as the CUDA runtime
would (NVRTC, sm_90, the CUDA headers of the `nvidia-cuda-*` wheels) and prints the first
errors. Needs the wheels nvidia-cuda-nvrtc, -runtime, -crt and -cccl (`cargo xtask test`
installs them into the artifact cache).

Run: python scripts/nvrtc_check.py DIR [--arch sm_90]
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import pathlib
import sys


def find(pattern: str) -> str:
    for root in sys.path:
        hits = sorted(glob.glob(os.path.join(root, "nvidia", "**", pattern), recursive=True))
        if hits:
            return hits[0]
    sys.exit(f"{pattern} not found in the installed nvidia-* packages")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--arch", default="sm_90")
    args = ap.parse_args()
    nvrtc = ctypes.CDLL(find("libnvrtc.so*"))
    include = os.path.dirname(find("cuda_fp16.h"))
    # CUDA 13 keeps CCCL (`cuda/std`, `nv/target`) in include/cccl, which nvcc adds itself.
    includes = [include] + [d for d in [os.path.join(include, "cccl")] if os.path.isdir(d)]
    failed = 0
    files = sorted(args.dir.glob("*.cu"))
    if not files:
        sys.exit(f"no .cu files in {args.dir}")
    for path in files:
        prog = ctypes.c_void_p()
        src = path.read_bytes()
        rc = nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, path.name.encode(), 0, None, None)
        assert rc == 0, rc
        opts = [f"--gpu-architecture={args.arch}".encode(), b"--std=c++17"]
        opts += [b"-I" + d.encode() for d in includes]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        rc = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(prog, log)
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
        if rc != 0:
            failed += 1
            print(f"FAIL {path.name}:\n{log.value.decode(errors='replace')[:1500]}")
    print(f"{len(files) - failed}/{len(files)} compiled")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
