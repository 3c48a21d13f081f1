"""Building the sequence pools from Debian packages, their manifests, sha256 checks, and loading pools by name.

`python -m corelib data build NAME [--full]` fetches the packages with `apt-get download`, unpacks them
with `dpkg -x` under the cache, extracts the BLAST databases with the package's own `blastdbcmd`,
reads the Stockholm alignments with Biopython, and writes a deterministic gzip FASTA (mtime 0): the
demo build reproduces the committed file byte for byte.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from .config import cache_dir, repo_root
from .data import RNA_LETTERS, PROTEIN_LETTERS, normalize, read_fasta
from .errors import InputError
from .files import atomic_gzip

MAX_RESIDUES = 1022  # RNA-FM's limit of 1024 tokens, <cls> and <eos> included

# Debian package -> version the committed demo files were built from (a newer one is used with a warning).
PACKAGES = {
    "ncbi-rrna-data": "6.1.20170106+dfsg1-10",
    "ncbi-blast+": "2.12.0+ds-3+b1",
    "liblmdb0": None, "libmbedtls14": None, "libmbedcrypto7": None, "libmbedx509-1": None,
    "infernal": "1.1.4-1",
    "vsearch-examples": "2.22.1-1",
    "metastudent-data": "2.0.1-8",
    "mmseqs2-examples": "14-7e284+ds-1",
    "mmseqs2": None, "libgzstream0": None,
    "promod3-data": "3.2.1+ds-6",
}
BLAST_PKGS = ["ncbi-blast+", "liblmdb0", "libmbedtls14", "libmbedcrypto7", "libmbedx509-1"]
RRNA_DIR = "usr/share/ncbi/data"
INFERNAL_DIR = "usr/share/doc/infernal/examples/testsuite"
# Stockholm file -> (family, Rfam accession) for the infernal test-suite alignments used in the RNA pool.
INFERNAL_FAMILIES = {
    "tRNA.sto": ("tRNA", "RF00005"), "tRNA1415G.sto": ("tRNA", "RF00005"),
    "rnaseP-eubact.sto": ("RNaseP", "RF00010"), "RNaseP.sto": ("RNaseP", "RF00010"),
    "srp-euk.sto": ("SRP", "RF00017"), "Plant_SRP.sto": ("SRP", "RF01855"),
    "Vault.sto": ("Vault", "RF00006"), "snR75.sto": ("snR75", "RF01185"),
}
# rRNA type from a SILVA title: the subunit's own types first, then any type named, else SSU/LSU.
_RRNA_TYPES = {"SSU": re.compile(r"\b(12S|16S|18S)\b"), "LSU": re.compile(r"\b(23S|25S|26S|28S)\b"),
               "any": re.compile(r"\b(5\.8S|5S|12S|16S|18S|23S|25S|26S|28S)\b")}

# Demo quotas per source (full builds take everything); chosen by sha256 of the id, so stable.
DATASETS = {
    "rna_demo": {"modality": "rna", "quotas": {"SILVA_SSU": 2400, "SILVA_LSU": 800, "Rfam": 1000, "BioMarKs": 800},
                 "family_cap": {"Rfam": 300}},
    "protein_demo": {"modality": "protein", "quotas": {"SwissProt_GO_CC": 3000, "UniProt_mmseqs2": 2000},
                     "family_cap": {}},
}


def manifests_dir() -> Path:
    """data_manifests/ in the checkout (YAML manifests; built demo files under files/)."""
    return repo_root() / "data_manifests"


def sha256_file(path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------- Debian packages
def fetch_packages(names, root: Path | None = None) -> dict[str, str]:
    """`apt-get download` + `dpkg -x` each package into the cache; returns {package: version}."""
    root = root or cache_dir() / "debian"
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    versions = {}
    for name in names:
        found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            _apt_download(name, PACKAGES.get(name), debs)
            found = sorted(debs.glob(f"{name}_*.deb"))
        deb = found[-1]
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                                 capture_output=True, text=True).stdout.strip()
        pinned = PACKAGES.get(name)
        if pinned and version != pinned:
            print(f"warning: {name} {version} differs from {pinned} used for the committed files; "
                  f"the build may not match byte for byte")
        target = root / "root" / name
        if not (target / ".unpacked").exists():
            target.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
            (target / ".unpacked").write_text(version)
        versions[name] = version
    return versions


def _apt_download(name: str, version: str | None, debs: Path) -> None:
    if shutil.which("apt-get") is None:
        raise InputError(f"apt-get not found: building {name!r} needs a Debian/Ubuntu machine")
    attempts = ([f"{name}={version}"] if version else []) + [name]
    for _ in range(2):
        for spec in attempts:
            if subprocess.run(["apt-get", "download", spec], cwd=debs, capture_output=True).returncode == 0:
                return
        if os.geteuid() == 0:  # stale or missing package lists: refresh once, then retry
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        else:
            break
    raise InputError(f"apt-get download {name} failed; run 'sudo apt-get update' and try again")


def _blastdbcmd(db: Path, fmt: str) -> list[str]:
    roots = cache_dir() / "debian" / "root"
    root = roots / "ncbi-blast+"
    libs = [f"{root}/usr/lib/ncbi-blast+"] + [f"{roots / p}/usr/lib/x86_64-linux-gnu" for p in BLAST_PKGS]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(libs))
    out = subprocess.run([str(root / "usr/bin/blastdbcmd"), "-db", str(db), "-entry", "all", "-outfmt", fmt],
                         check=True, capture_output=True, text=True, env=env)
    return out.stdout.splitlines()


# ----------------------------------------------------------------------------- source readers
def _silva(db_name: str, source: str) -> list[dict]:
    db = cache_dir() / "debian" / "root" / "ncbi-rrna-data" / RRNA_DIR / db_name
    rows = []
    for line in _blastdbcmd(db, "%t\t%s"):
        title, seq = line.rsplit("\t", 1)
        fields = title.split("|")
        acc = fields[1] if len(fields) > 2 else fields[0].split()[0]
        unit = source.split("_")[1]
        match = _RRNA_TYPES[unit].search(title) or _RRNA_TYPES["any"].search(title)
        family = match.group(1) if match else unit
        rows.append({"id": f"{source.split('_')[1]}_{acc}", "source": source, "family": f"{family}_rRNA",
                     "seq": seq})
    return rows


def _infernal() -> list[dict]:
    from Bio import AlignIO

    base = cache_dir() / "debian" / "root" / "infernal" / INFERNAL_DIR
    rows = []
    for fname, (family, acc) in INFERNAL_FAMILIES.items():
        for aln in AlignIO.parse(str(base / fname), "stockholm"):
            for rec in aln:
                seq = re.sub(r"[-.~_]", "", str(rec.seq))
                rows.append({"id": f"{family}_{rec.id}", "source": "Rfam", "family": family, "rfam": acc,
                             "seq": seq})
    return rows


def _biomarks() -> list[dict]:
    path = cache_dir() / "debian" / "root" / "vsearch-examples" / "usr/share/doc/vsearch-examples/BioMarKs50k.fsa.gz"
    return [{"id": f"V4_{r.id.split(';')[0]}", "source": "BioMarKs", "family": "18S_V4_amplicon", "seq": r.seq}
            for r in read_fasta(path)]


def _swissprot_cc() -> list[dict]:
    db = cache_dir() / "debian" / "root" / "metastudent-data" / "usr/share/metastudent-data/dataset_201401/CCO/goasp.fasta"
    rows = []
    for line in _blastdbcmd(db, "%t\t%s"):
        title, seq = line.rsplit("\t", 1)
        acc, _, gos = title.partition("|")
        go = ",".join(sorted(set(gos.split(",")))) if gos else ""
        rows.append({"id": f"sp_{acc}", "source": "SwissProt_GO_CC", "family": "SwissProt", "go": go, "seq": seq})
    return rows


def _mmseqs_uniprot() -> list[dict]:
    path = cache_dir() / "debian" / "root" / "mmseqs2-examples" / "usr/share/doc/mmseqs2/example-data/DB.fasta.gz"
    rows = []
    for r in read_fasta(path):
        parts = r.id.split("|")
        db, acc = (parts[0], parts[1]) if len(parts) >= 2 else ("uniprot", r.id)
        rows.append({"id": f"{db}_{acc}", "source": "UniProt_mmseqs2",
                     "family": "SwissProt" if db == "sp" else "TrEMBL", "seq": r.seq})
    return rows


# ----------------------------------------------------------------------------- building
def _clean(rows: list[dict], modality: str) -> tuple[pd.DataFrame, dict]:
    """Normalize, drop invalid letters, crop to 1022 residues, drop exact duplicates (after cropping)."""
    letters = RNA_LETTERS if modality == "rna" else PROTEIN_LETTERS
    df = pd.DataFrame(rows)
    df["seq"] = [normalize(s, modality) for s in df["seq"]]
    valid = np.array([bool(s) and set(s) <= letters for s in df["seq"]])
    stats = {"read": int(len(df)), "invalid_letters_dropped": int((~valid).sum())}
    df = df[valid].copy()
    stats["cropped"] = int((df["seq"].str.len() > MAX_RESIDUES).sum())
    df["seq"] = df["seq"].str.slice(0, MAX_RESIDUES)
    df["key"] = [_key(i) for i in df["id"]]
    df = df.sort_values("key", kind="stable").drop_duplicates("id").drop_duplicates("seq")
    stats["after_dedup"] = int(len(df))
    return df, stats


def _select_demo(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    parts = []
    for source, quota in spec["quotas"].items():
        sub = df[df["source"] == source]
        if source in spec["family_cap"]:
            sub = sub.groupby("family", group_keys=False).head(spec["family_cap"][source])
        parts.append(sub.head(quota))
    # order by a second, independent hash: ordering by the quota hash would put the source whose quota
    # skimmed the lowest hashes of a large set (SILVA) first, and a prefix would not be a random mix
    out = pd.concat(parts)
    out["order"] = [_key(f"order:{i}") for i in out["id"]]
    return out.sort_values("order", kind="stable")


def _write_fasta_gz(df: pd.DataFrame, path: Path) -> None:
    """Deterministic gzip FASTA: header `>id source=S family=F [extra=...]`, one sequence line."""
    extra = [c for c in ("rfam", "go") if c in df.columns]
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(gz) -> None:
        for row in df.itertuples(index=False):
            tags = "".join(f" {c}={getattr(row, c)}" for c in extra
                           if isinstance(getattr(row, c), str) and getattr(row, c))
            gz.write(f">{row.id} source={row.source} family={row.family}{tags}\n{row.seq}\n".encode())

    atomic_gzip(path, write)


def _readers(modality: str):
    if modality == "rna":
        return (["ncbi-rrna-data", "infernal", "vsearch-examples", *BLAST_PKGS],
                [lambda: _silva("SSURef_93.fasta", "SILVA_SSU"), lambda: _silva("LSURef_93.fasta", "SILVA_LSU"),
                 _infernal, _biomarks])
    return (["metastudent-data", "mmseqs2-examples", *BLAST_PKGS], [_swissprot_cc, _mmseqs_uniprot])


def build_dataset(name: str, full: bool = False, out_dir: Path | None = None) -> Path:
    """Rebuild a pool from Debian packages (demo: the committed file; full: every sequence, cache only),
    leaving out the test sequences of the labelled sets; labelled set names build those."""
    from .labelled import LABELLED, build_labelled

    if name in LABELLED and not full:
        return build_labelled(name, out_dir)
    if name not in DATASETS:
        raise InputError(f"unknown data set {name!r}; buildable: {', '.join([*DATASETS, *LABELLED])}")
    spec = DATASETS[name]
    modality = spec["modality"]
    pkgs, readers = _readers(modality)
    versions = fetch_packages(tqdm(pkgs, desc="packages", leave=False))
    rows = [row for read in tqdm(readers, desc="sources", leave=False) for row in read()]
    df, stats = _clean(rows, modality)
    from .labelled import heldout_sequences

    held = df["seq"].isin(heldout_sequences(modality, df))
    stats["labelled_test_sequences_left_out"] = int(held.sum())
    df = df[~held]
    if not full:
        df = _select_demo(df, spec)
    out_name = name if not full else name.replace("_demo", "_full")
    out_dir = Path(out_dir) if out_dir else (manifests_dir() / "files" if not full else cache_dir() / "full")
    fasta = out_dir / f"{out_name}.fasta.gz"
    _write_fasta_gz(df, fasta)
    manifest = _manifest(out_name, modality, df, stats, versions, fasta, full)
    man_path = (manifests_dir() if out_dir == manifests_dir() / "files" else out_dir) / f"{out_name}.yaml"
    man_path.write_text(yaml.safe_dump(manifest, sort_keys=False, width=120))
    return fasta


_PROVENANCE = {
    "SILVA_SSU": {"package": "ncbi-rrna-data", "file": f"{RRNA_DIR}/SSURef_93.fasta.n*",
                  "upstream": "SILVA SSU Ref release 93 (as a BLAST db in NCBI's toolbox data)",
                  "license": "public domain (NCBI toolbox data, Debian copyright file)",
                  "citation": "Quast et al. (2013) The SILVA ribosomal RNA gene database project. NAR 41:D590"},
    "SILVA_LSU": {"package": "ncbi-rrna-data", "file": f"{RRNA_DIR}/LSURef_93.fasta.n*",
                  "upstream": "SILVA LSU Ref release 93", "license": "public domain (NCBI toolbox data)",
                  "citation": "Quast et al. (2013) NAR 41:D590"},
    "Rfam": {"package": "infernal", "file": f"{INFERNAL_DIR}/{{{','.join(INFERNAL_FAMILIES)}}}",
             "upstream": "Rfam seed alignments in Infernal 1.1.4's test suite", "license": "BSD-3-Clause (Infernal)",
             "citation": "Nawrocki & Eddy (2013) Infernal 1.1. Bioinformatics 29:2933; Kalvari et al. (2021) Rfam 14. NAR 49:D192"},
    "BioMarKs": {"package": "vsearch-examples", "file": "usr/share/doc/vsearch-examples/BioMarKs50k.fsa.gz",
                 "upstream": "BioMarKs 18S rRNA V4 amplicons (vsearch examples)", "license": "GPL-3+ / BSD-2 (vsearch)",
                 "citation": "Rognes et al. (2016) VSEARCH. PeerJ 4:e2584; Massana et al. (2015) Env. Microbiol. 17:4035"},
    "SwissProt_GO_CC": {"package": "metastudent-data",
                        "file": "usr/share/metastudent-data/dataset_201401/CCO/goasp.fasta.p*",
                        "upstream": "UniProtKB/Swiss-Prot (2014-01) with GO cellular-component annotations (metastudent)",
                        "license": "CC BY 4.0 (UniProt); GPL (metastudent)",
                        "citation": "Hamp et al. (2013) Homology-based inference sets the bar high for protein function prediction. BMC Bioinf. 14:S7"},
    "UniProt_mmseqs2": {"package": "mmseqs2-examples", "file": "usr/share/doc/mmseqs2/example-data/DB.fasta.gz",
                        "upstream": "20k UniProtKB proteins (MMseqs2 example data)", "license": "CC BY 4.0 (UniProt); MIT (MMseqs2)",
                        "citation": "Steinegger & Soeding (2017) MMseqs2. Nat. Biotechnol. 35:1026"},
}


def _manifest(name, modality, df, stats, versions, fasta: Path, full: bool) -> dict:
    lengths = df["seq"].str.len()
    sources = []
    for src, count in df["source"].value_counts().sort_index().items():
        prov = dict(_PROVENANCE[src])
        prov["debian_version"] = versions.get(prov["package"])
        sources.append({"name": src, "sequences": int(count), **prov,
                        "families": {k: int(v) for k, v in df.loc[df["source"] == src, "family"].value_counts().sort_index().items()}})
    return {
        "name": name, "modality": modality, "kind": "full build (not committed)" if full else "embedded demo pool",
        "file": fasta.name, "sha256": sha256_file(fasta),
        "sequences": int(len(df)),
        "length": {"min": int(lengths.min()), "median": float(lengths.median()), "mean": round(float(lengths.mean()), 1),
                   "max": int(lengths.max())},
        "processing": {**stats, "max_residues": MAX_RESIDUES,
                       "steps": "uppercase; T->U (RNA); drop records with letters outside the vocabulary; crop to "
                                "1022 residues; drop exact duplicate sequences; leave out the test sequences of the labelled "
                                "sets; order by sha256(id)"
                                + ("" if full else "; demo quotas per source (and per family) by sha256(id); "
                                   "file ordered by sha256('order:' + id)")},
        "sources": sources,
        "build_command": f"python -m corelib data build {name.replace('_full', '_demo')}" + (" --full" if full else ""),
    }


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
    return manifests_dir() / "files" / man["file"]


def verify_datasets() -> list[str]:
    """Check the sha256 of every committed demo file against its manifest (the `data verify` verb)."""
    done = []
    for man_path in sorted(manifests_dir().glob("*.yaml")):
        man = yaml.safe_load(man_path.read_text())
        if "sha256" not in man:
            continue
        path = manifests_dir() / "files" / man["file"]
        if not path.exists():
            raise InputError(f"{path}: missing; rebuild with: {man['build_command']}")
        digest = sha256_file(path)
        if digest != man["sha256"]:
            raise InputError(f"{path}: sha256 {digest[:12]}... does not match {man_path.name} "
                             f"({man['sha256'][:12]}...); rebuild with: {man['build_command']}")
        done.append(f"{man['name']}: {man['sequences']} sequences, sha256 ok")
    return done


def load_pool(name_or_path, modality: str, limit: int | None = None) -> pd.DataFrame:
    """A pool as a table: index (0-based pool position), id, source, family, length, seq (Section 4 pools)."""
    rows = []
    for i, rec in enumerate(read_fasta(dataset_path(name_or_path), modality)):
        if limit is not None and i >= limit:
            break
        rows.append({"index": i, "id": rec.id, "source": rec.fields.get("source", "unknown"),
                     "family": rec.fields.get("family", "unknown"), "length": len(rec.seq), "seq": rec.seq})
    return pd.DataFrame(rows)


def summarize_pool(pool: pd.DataFrame, modality: str) -> pd.DataFrame:
    """Per-source counts, families and length (and GC for RNA) of a pool table from `load_pool`."""
    from .data import gc_content

    pool = pool.assign(gc=[gc_content(s) for s in pool["seq"]]) if modality == "rna" else pool
    agg = {"sequences": ("id", "size"), "families": ("family", "nunique"),
           "length_median": ("length", "median"), "length_max": ("length", "max")}
    if modality == "rna":
        agg["gc_mean"] = ("gc", "mean")
    out = pool.groupby("source").agg(**agg).reset_index()
    return out.assign(modality=modality)[["modality", *out.columns]]


def join_pool(scores: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """Scores with the pool's source, family and (for RNA) GC content, matched on pool index and id."""
    from .data import gc_content

    cols = pool[["index", "id", "source", "family", "seq"]]
    out = scores.merge(cols, on=["index", "id"], how="left", validate="one_to_one")
    out["gc"] = [gc_content(s) for s in out["seq"]]
    return out.drop(columns="seq")
