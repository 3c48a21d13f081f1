"""Readers that turn each Debian-packaged source (SILVA, Rfam, BioMarKs, Swiss-Prot, UniProt) into rows, and
the cleaning shared by pools and labelled sets.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd

from corelib.config import cache_dir
from corelib.data.debian import (
    BLAST_PKGS,
    INFERNAL_DIR,
    INFERNAL_FAMILIES,
    RRNA_DIR,
    _blastdbcmd,
)
from corelib.data.fasta import PROTEIN_LETTERS, RNA_LETTERS, looks_nucleotide, normalize, read_fasta

MAX_RESIDUES = 1022  # RNA-FM's limit of 1024 tokens, <cls> and <eos> included


# rRNA type from a SILVA title: the subunit's own types first, then any type named, else SSU/LSU.
_RRNA_TYPES = {"SSU": re.compile(r"\b(12S|16S|18S)\b"), "LSU": re.compile(r"\b(23S|25S|26S|28S)\b"),
               "any": re.compile(r"\b(5\.8S|5S|12S|16S|18S|23S|25S|26S|28S)\b")}


def id_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
def clean_rows(rows: list[dict], modality: str) -> tuple[pd.DataFrame, dict]:
    """Normalize, drop invalid letters, crop to 1022 residues, drop exact duplicates (after cropping)."""
    letters = RNA_LETTERS if modality == "rna" else PROTEIN_LETTERS
    df = pd.DataFrame(rows)
    df["seq"] = [normalize(s, modality) for s in df["seq"]]
    valid = np.array([bool(s) and set(s) <= letters for s in df["seq"]])
    stats = {"read": int(len(df)), "invalid_letters_dropped": int((~valid).sum())}
    if modality == "protein":   # a peptide spelt only in ACGTUN, which every FASTA reader here refuses as protein
        nucleotide_like = np.array([looks_nucleotide(s) for s in df["seq"]])
        stats["nucleotide_like_dropped"] = int((valid & nucleotide_like).sum())
        valid &= ~nucleotide_like
    df = df[valid].copy()
    stats["cropped"] = int((df["seq"].str.len() > MAX_RESIDUES).sum())
    df["seq"] = df["seq"].str.slice(0, MAX_RESIDUES)
    df["key"] = [id_key(i) for i in df["id"]]
    df = df.sort_values("key", kind="stable").drop_duplicates("id").drop_duplicates("seq")
    stats["after_dedup"] = int(len(df))
    return df, stats


def source_readers(modality: str):
    if modality == "rna":
        return (["ncbi-rrna-data", "infernal", "vsearch-examples", *BLAST_PKGS],
                [lambda: _silva("SSURef_93.fasta", "SILVA_SSU"), lambda: _silva("LSURef_93.fasta", "SILVA_LSU"),
                 _infernal, _biomarks])
    return (["metastudent-data", "mmseqs2-examples", *BLAST_PKGS], [_swissprot_cc, _mmseqs_uniprot])
