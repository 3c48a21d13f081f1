"""`python -m corelib data build NAME [--full]`: the one step that sees both pools and labelled sets, so that
every labelled test sequence is left out of every pool build.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from tqdm import tqdm

from corelib.config import cache_dir
from corelib.data.debian import fetch_packages
from corelib.data.manifests import manifests_dir
from corelib.data.pools import DATASETS, pool_manifest, select_demo, write_fasta_gz
from corelib.data.sources import clean_rows, source_readers
from corelib.errors import InputError
from corelib.files import atomic_write
from corelib.rundir import open_run


def build_dataset(name: str, full: bool = False, out_dir: Path | None = None, wait: bool = False) -> Path:
    """Rebuild a pool from Debian packages (demo: the committed file; full: every sequence, cache only),
    leaving out the test sequences of the labelled sets; labelled set names build those. The output folder is
    checked and held (`open_run`) before any download; `wait`: wait for another build writing it."""
    from corelib.data.labelled import LABELLED, build_labelled

    if name not in DATASETS and not (name in LABELLED and not full):
        raise InputError(f"unknown data set {name!r}; buildable: {', '.join([*DATASETS, *LABELLED])}")
    folder = Path(out_dir) if out_dir else (manifests_dir() / "files" if not full else cache_dir() / "full")
    with open_run(folder, wait=wait):
        if name in LABELLED and not full:
            return build_labelled(name, out_dir)
        return _build_pool(name, full, folder)


def _build_pool(name: str, full: bool, out_dir: Path) -> Path:
    spec = DATASETS[name]
    modality = spec["modality"]
    pkgs, readers = source_readers(modality)
    versions = fetch_packages(tqdm(pkgs, desc="packages", leave=False))
    rows = [row for read in tqdm(readers, desc="sources", leave=False) for row in read()]
    df, stats = clean_rows(rows, modality)
    from corelib.data.labelled import heldout_sequences

    held = df["seq"].isin(heldout_sequences(modality, df))
    stats["labelled_test_sequences_left_out"] = int(held.sum())
    df = df[~held]
    if not full:
        df = select_demo(df, spec)
    out_name = name if not full else name.replace("_demo", "_full")
    fasta = out_dir / f"{out_name}.fasta.gz"
    write_fasta_gz(df, fasta)
    manifest = pool_manifest(out_name, modality, df, stats, versions, fasta, full)
    man_path = (manifests_dir() if out_dir == manifests_dir() / "files" else out_dir) / f"{out_name}.yaml"
    atomic_write(man_path, lambda tmp: tmp.write_text(yaml.safe_dump(manifest, sort_keys=False, width=120)))
    return fasta
