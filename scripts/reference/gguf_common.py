"""Shared helpers for the GGUF reference generators (kiln-models, `testdata/gguf/`)."""

import datetime
import os
import pathlib
import sys
from importlib import metadata

REPO = pathlib.Path(__file__).resolve().parents[2]
OUT = REPO / "testdata" / "gguf"


def cache_dir() -> pathlib.Path:
    """The artifact cache: `$KILN_CACHE`, else `<repo>/.cache/kiln` (filled by `cargo xtask fetch`)."""
    env = os.environ.get("KILN_CACHE")
    return pathlib.Path(env) if env else REPO / ".cache" / "kiln"


SMOLLM2 = ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA3 = ("gemma3", "gemma-3-270m-q4_k_m.gguf")


def artifact(pair) -> pathlib.Path:
    path = cache_dir() / pair[0] / pair[1]
    if not path.exists():
        sys.exit(f"missing artifact {path}: run `cargo xtask fetch`")
    return path


def provenance(script: str, packages) -> dict:
    """How a fixture was made: generator, package versions, date."""
    return {
        "generator": f"scripts/reference/{script}",
        "packages": {p: metadata.version(p) for p in packages},
        "python": sys.version.split()[0],
        "date": datetime.date.today().isoformat(),
    }
