"""Data manifests (data_manifests/NAME.yaml): where each data set's file is, its sha256, and `data verify`."""
from __future__ import annotations

from pathlib import Path

import yaml

from corelib.config import cache_dir, repo_root
from corelib.errors import InputError
from corelib.files import sha256_file


def manifests_dir() -> Path:
    """data_manifests/ in the checkout (YAML manifests; built demo files under files/)."""
    return repo_root() / "data_manifests"


# ----------------------------------------------------------------------------- manifests and loading
def load_manifest(name: str) -> dict:
    """Parse data_manifests/NAME.yaml."""
    path = manifests_dir() / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in manifests_dir().glob("*.yaml"))
        raise InputError(f"{path}: no manifest for data set {name!r} (known: {', '.join(known)})")
    return yaml.safe_load(path.read_text())


def dataset_path(name_or_path) -> Path:
    """A FASTA path for a data set name (committed demo, full build, or a paper corpus placed by the user)."""
    p = Path(name_or_path)
    if p.suffix in {".fa", ".fasta", ".gz", ".fna", ".faa"} or p.exists():
        return p
    man = load_manifest(str(name_or_path))
    if "expected_path" in man:  # a paper corpus the user downloads themselves
        path = cache_dir() / man["expected_path"]
        if not path.exists():
            raise InputError(f"{path}: corpus {man['name']!r} is not here; {man['how_to_get'].strip()}")
        return path
    path = file_of(man)
    if man.get("location") == "cache" and not path.exists():
        raise InputError(f"{path}: pool {man['name']!r} is not built here; build it from the Debian packages with: "
                         f"{man['build_command']}")
    return path


def file_of(man: dict) -> Path:
    """Where a manifest's file lies: data_manifests/files/ (embedded) or the cache's full/ (a full build)."""
    return (cache_dir() / "full" if man.get("location") == "cache" else manifests_dir() / "files") / man["file"]


def verify_datasets() -> list[str]:
    """Check the sha256 of every committed demo file, and of every full build present in the cache, against its
    manifest (the `data verify` verb)."""
    done = []
    for man_path in sorted(manifests_dir().glob("*.yaml")):
        man = yaml.safe_load(man_path.read_text())
        if "sha256" not in man:
            continue
        path = file_of(man)
        if man.get("location") == "cache" and not path.exists():
            done.append(f"{man['name']}: not built ({man['build_command']})")
            continue
        if not path.exists():
            raise InputError(f"{path}: missing; rebuild with: {man['build_command']}")
        digest = sha256_file(path)
        if digest != man["sha256"]:
            raise InputError(f"{path}: sha256 {digest[:12]}... does not match {man_path.name} "
                             f"({man['sha256'][:12]}...); rebuild with: {man['build_command']}")
        done.append(f"{man['name']}: {man['sequences']} sequences, sha256 ok")
    return done


def manifest_sources(name: str):
    """A pool as its manifest records it, one row per source (Section 4 pools; the full builds included, built
    here or not): sequences, families and each source's share of the pool."""
    import pandas as pd

    man = load_manifest(name)
    out = pd.DataFrame([{"modality": man["modality"], "pool": man["name"], "source": s["name"],
                         "sequences": int(s["sequences"]), "families": len(s.get("families", {}))}
                        for s in man["sources"]])
    return out.assign(share=out["sequences"] / out["sequences"].sum())
