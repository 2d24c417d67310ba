"""Helpers shared by the fixture generators."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
TESTDATA = REPO / "testdata"


def cache_dir() -> pathlib.Path:
    """The artifact cache, as `cargo xtask fetch` fills it."""
    env = os.environ.get("KILN_CACHE")
    return pathlib.Path(env) if env else REPO / ".cache" / "kiln"


def artifact(*parts: str) -> pathlib.Path:
    """A path in the artifact cache; exits with a hint when it is missing."""
    path = cache_dir().joinpath(*parts)
    if not path.exists():
        sys.exit(f"{path} is missing: run `cargo xtask fetch`")
    return path


def provenance(generator: str, packages: list[str]) -> dict:
    """Who made a fixture: the generator script, the package versions, the date."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "generator": f"scripts/reference/{generator}",
        "python": sys.version.split()[0],
        "packages": versions,
        "date": datetime.date.today().isoformat(),
    }


def write_json(path: pathlib.Path, value) -> None:
    """Writes compact, stable JSON (sorted keys are NOT used: order can be meaningful)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
