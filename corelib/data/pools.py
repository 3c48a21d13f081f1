"""Sequence pools (Section 4): demo quotas, the deterministic FASTA writer, manifests, and pool tables."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from corelib.data.debian import INFERNAL_DIR, INFERNAL_FAMILIES, RRNA_DIR
from corelib.data.fasta import read_fasta
from corelib.data.manifests import dataset_path
from corelib.data.sources import MAX_RESIDUES, id_key
from corelib.files import atomic_gzip, sha256_file

# Demo quotas per source (full builds take everything); chosen by sha256 of the id, so stable.
DATASETS = {
    "rna_demo": {"modality": "rna", "quotas": {"SILVA_SSU": 2400, "SILVA_LSU": 800, "Rfam": 1000, "BioMarKs": 800},
                 "family_cap": {"Rfam": 300}},
    "protein_demo": {"modality": "protein", "quotas": {"SwissProt_GO_CC": 3000, "UniProt_mmseqs2": 2000},
                     "family_cap": {}},
}


def select_demo(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    parts = []
    for source, quota in spec["quotas"].items():
        sub = df[df["source"] == source]
        if source in spec["family_cap"]:
            sub = sub.groupby("family", group_keys=False).head(spec["family_cap"][source])
        parts.append(sub.head(quota))
    # order by a second, independent hash: ordering by the quota hash would put the source whose quota
    # skimmed the lowest hashes of a large set (SILVA) first, and a prefix would not be a random mix
    out = pd.concat(parts)
    out["order"] = [id_key(f"order:{i}") for i in out["id"]]
    return out.sort_values("order", kind="stable")


def write_fasta_gz(df: pd.DataFrame, path: Path) -> None:
    """Deterministic gzip FASTA: header `>id source=S family=F [extra=...]`, one sequence line."""
    extra = [c for c in ("rfam", "go") if c in df.columns]
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(gz) -> None:
        for row in df.itertuples(index=False):
            tags = "".join(f" {c}={getattr(row, c)}" for c in extra
                           if isinstance(getattr(row, c), str) and getattr(row, c))
            gz.write(f">{row.id} source={row.source} family={row.family}{tags}\n{row.seq}\n".encode())

    atomic_gzip(path, write)

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


def pool_manifest(name, modality, df, stats, versions, fasta: Path, full: bool) -> dict:
    lengths = df["seq"].str.len()
    sources = []
    for src, count in df["source"].value_counts().sort_index().items():
        prov = dict(_PROVENANCE[src])
        prov["debian_version"] = versions.get(prov["package"])
        sources.append({"name": src, "sequences": int(count), **prov,
                        "families": {k: int(v) for k, v in df.loc[df["source"] == src, "family"].value_counts().sort_index().items()}})
    return {
        "name": name, "modality": modality, "kind": "full build (not committed)" if full else "embedded demo pool",
        **({"location": "cache"} if full else {}), "file": fasta.name, "sha256": sha256_file(fasta),
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
    from corelib.data.fasta import gc_content

    pool = pool.assign(gc=[gc_content(s) for s in pool["seq"]]) if modality == "rna" else pool
    agg = {"sequences": ("id", "size"), "families": ("family", "nunique"),
           "length_median": ("length", "median"), "length_max": ("length", "max")}
    if modality == "rna":
        agg["gc_mean"] = ("gc", "mean")
    out = pool.groupby("source").agg(**agg).reset_index()
    return out.assign(modality=modality)[["modality", *out.columns]]


def join_pool(scores: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """Scores with the pool's source, family and (for RNA) GC content, matched on pool index and id."""
    from corelib.data.fasta import gc_content

    cols = pool[["index", "id", "source", "family", "seq"]]
    out = scores.merge(cols, on=["index", "id"], how="left", validate="one_to_one")
    out["gc"] = [gc_content(s) for s in out["seq"]]
    return out.drop(columns="seq")
