"""Labelled downstream sets (Section 4.2, Appendix B) built from real data in Debian packages.

- `rna_typecls`: RNA type classification. Ten classes: the rRNA types in SILVA titles (5.8S, 16S, 18S,
  23S, 28S) and the Rfam families of infernal's alignments (tRNA, RNase P, SRP, Vault, snR75). Every
  example is a window of 40-64 nt drawn the same way for every class, so length gives nothing away.
- `rna_ss`: RNA secondary structure. Per-sequence `#=GR SS` lines where the alignment has them, else
  the consensus `SS_cons` projected onto the sequence (a pair is kept when both columns hold residues
  that can pair: AU, GC, GU). Stored as dot-brackets; contact maps are the base pairs.
- `protein_loc`: localization from Swiss-Prot GO cellular-component labels (metastudent-data): membrane
  vs soluble (GO:0016020 in the transitive closure), and one compartment out of nine.
- `protein_struct`: DSSP secondary structure (3 states) and C-alpha coordinates of PDB chains from the
  structure database of promod3-data (contacts: C-alpha under 8 Angstrom).

Leakage: the split of a sequence is fixed by sha256 of its id (25% test, 15% valid). Every test
sequence is left out of the pretraining pools (demo and --full builds), matched on the exact
sequence, and PDB chains whose sequence is in a protein source are dropped.

"""
from __future__ import annotations

import hashlib
import mmap
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from corelib.errors import InputError
from corelib.files import atomic_gzip, atomic_write

LABELLED = {
    "rna_typecls": "rna", "rna_ss": "rna", "protein_loc": "protein", "protein_struct": "protein",
}

TYPE_CLASSES = ["5.8S_rRNA", "16S_rRNA", "18S_rRNA", "23S_rRNA", "28S_rRNA", "tRNA", "RNaseP", "SRP", "Vault", "snR75"]

COMPARTMENTS = {  # GO term -> class; a protein is labelled when exactly one of the first eight applies
    "GO:0005739": "mitochondrion", "GO:0005783": "endoplasmic_reticulum", "GO:0005794": "golgi",
    "GO:0005634": "nucleus", "GO:0005886": "plasma_membrane", "GO:0005576": "extracellular",
    "GO:0009507": "chloroplast", "GO:0005777": "peroxisome", "GO:0005737": "cytoplasm",
}

MEMBRANE = "GO:0016020"

PER_CLASS = 160          # candidates per class (typecls, loc), chosen by sha256 of the id

PER_FAMILY_SS = 200

STRUCT_CHAINS = 800

WINDOW = (40, 64)        # typecls window length range (nt)

_PAIRABLE = {"AU", "UA", "GC", "CG", "GU", "UG"}

STRUCTURE_DB = "usr/share/promod3/loop_data/structure_db.dat"


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _by_hash(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order of sha256('label:' + id): a fixed, source-independent order to take quotas from."""
    return df.assign(k=[_h(f"label:{i}") for i in df["id"]]).sort_values("k")


def split_of(seq_id: str) -> str:
    """Train / valid / test of a sequence, fixed by sha256 of its id (25% test, 15% valid)."""
    u = _h(f"split:{seq_id}") / 2**64
    return "test" if u < 0.25 else "valid" if u < 0.40 else "train"


# ----------------------------------------------------------------------------- RNA
def _typecls(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for label in TYPE_CLASSES:
        sub = rows[(rows["family"] == label) & (rows["seq"].str.len() >= WINDOW[1])]
        sub = _by_hash(sub).head(PER_CLASS)
        for r in sub.itertuples():
            h = _h(f"window:{r.id}")
            width = WINDOW[0] + h % (WINDOW[1] - WINDOW[0] + 1)
            start = (h >> 16) % (len(r.seq) - width + 1)
            out.append({"id": r.id, "split": split_of(r.id), "label": label, "start": start,
                        "seq": r.seq[start : start + width]})
    return pd.DataFrame(out)


def wuss_pairs(structure: str) -> list[tuple[int, int]]:
    """Base pairs (0-based columns) of a WUSS / dot-bracket string: <>, (), [], {} and Aa pseudoknot letters."""
    stacks: dict[str, list[int]] = {}
    pairs = []
    for j, c in enumerate(structure):
        if c in "<([{" or c.isupper():
            stacks.setdefault(c, []).append(j)
        elif c in ">)]}" or c.islower():
            opener = {">": "<", ")": "(", "]": "[", "}": "{"}.get(c, c.upper())
            if stacks.get(opener):
                pairs.append((stacks[opener].pop(), j))
    return sorted(pairs)


def to_dotbracket(pairs, length: int) -> str:
    """Dot-bracket of base pairs, crossing pairs (pseudoknots) on [], {}, <> in turn."""
    out, levels = ["."] * length, []
    for i, j in sorted(pairs):
        for level, placed in enumerate(levels):  # noqa: B007 (level is read after the loop)
            if not any(a < i < b < j or i < a < j < b for a, b in placed):
                placed.append((i, j))
                break
        else:
            level = len(levels)
            levels.append([(i, j)])
        if level > 3:
            continue
        out[i], out[j] = "([{<"[level], ")]}>"[level]
    return "".join(out)


def _project(aligned: str, structure: str, check: bool) -> tuple[str, list[tuple[int, int]]]:
    seq, pos = [], {}
    for col, ch in enumerate(aligned):
        if ch not in "-.~_":
            pos[col] = len(seq)
            seq.append(ch.upper().replace("T", "U"))
    seq = "".join(seq)
    pairs = [(pos[a], pos[b]) for a, b in wuss_pairs(structure) if a in pos and b in pos]
    if check:
        pairs = [(i, j) for i, j in pairs if seq[i] + seq[j] in _PAIRABLE]
    return seq, pairs


def _rna_ss(infernal_dir: Path) -> pd.DataFrame:
    from Bio import AlignIO

    from corelib.data.debian import INFERNAL_FAMILIES
    from corelib.data.sources import MAX_RESIDUES

    rows = []
    for fname, (family, _) in INFERNAL_FAMILIES.items():
        for aln in AlignIO.parse(str(infernal_dir / fname), "stockholm"):
            cons = aln.column_annotations.get("secondary_structure")
            for rec in aln:
                own = rec.letter_annotations.get("secondary_structure")
                if own is None and cons is None:
                    continue
                seq, pairs = _project(str(rec.seq), own or cons, check=own is None)
                if len(seq) > MAX_RESIDUES or not set(seq) <= set("ACGU") or not pairs:
                    continue
                rows.append({"id": f"{family}_{rec.id}", "family": family,
                             "source": "GR SS" if own is not None else "SS_cons projected", "seq": seq,
                             "structure": to_dotbracket(pairs, len(seq))})
    df = pd.DataFrame(rows).drop_duplicates("id").drop_duplicates("seq")
    df = _by_hash(df)
    df = df.groupby("family", group_keys=False).head(PER_FAMILY_SS)
    return df.assign(split=[split_of(i) for i in df["id"]])[["id", "split", "family", "source", "seq", "structure"]]


# ----------------------------------------------------------------------------- proteins
def _go_ancestors(path: Path, wanted: set[str]) -> dict[str, set[str]]:
    """term -> the wanted terms it is (is_a / part_of, transitively) or equals, from metastudent's closure."""
    up: dict[str, set[str]] = {}
    with open(path) as fh:
        for line in fh:
            child, rel, parent, _ = line.rstrip("\n").split("\t")
            if parent in wanted and rel in ("OBO_REL:is_a", "part_of", "OBO_REL:part_of"):
                up.setdefault(child, set()).add(parent)
    for term in wanted:
        up.setdefault(term, set()).add(term)
    return up


def _protein_loc(rows: pd.DataFrame, closure: Path) -> pd.DataFrame:
    terms = set(COMPARTMENTS) | {MEMBRANE}
    up = _go_ancestors(closure, terms)
    out = []
    for r in rows[rows["source"] == "SwissProt_GO_CC"].itertuples():
        hits = set().union(*(up.get(g, set()) for g in str(r.go).split(",") if g)) if r.go else set()
        if not hits:
            continue
        specific = [COMPARTMENTS[g] for g in COMPARTMENTS if g in hits and g != "GO:0005737"]
        comp = specific[0] if len(specific) == 1 else ("cytoplasm" if not specific and "GO:0005737" in hits else "")
        out.append({"id": r.id, "membrane": int(MEMBRANE in hits), "compartment": comp, "seq": r.seq})
    df = pd.DataFrame(out)
    df = _by_hash(df)
    df = df[df["compartment"] != ""].groupby("compartment", group_keys=False).head(PER_CLASS)
    return df.assign(split=[split_of(i) for i in df["id"]])[["id", "split", "membrane", "compartment", "seq"]]


def read_structure_db(path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """ProMod3's StructureDB file (promod3-data): per chain id, offset and length; per residue the
    one-letter sequence, N/CA/C/O coordinates (int16, 0.01 Angstrom, chain-shifted) and DSSP state."""
    with open(path, "rb") as fh:
        m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    magic, version = struct.unpack_from("<ii", m, 0)
    if (magic, version) != (1234, 2):
        raise InputError(f"{path}: not a ProMod3 StructureDB file of version 2 (magic {magic}, version {version})")
    p = 77  # magic, version, type-size checks and stored-data flags
    (n_chains,) = struct.unpack_from("<Q", m, p)
    p += 8
    toc = []
    for _ in range(n_chains):
        (n,) = struct.unpack_from("<I", m, p)
        ident = m[p + 4 : p + 4 + n].decode()
        p += 4 + n
        (c,) = struct.unpack_from("<I", m, p)
        chain = m[p + 4 : p + 4 + c].decode()
        p += 4 + c
        offset, size = struct.unpack_from("<IH", m, p)
        p += 20  # offset, size, first residue number, shift vector
        toc.append((f"{ident}_{chain}", offset, size))
    arrays = {}
    for name, width in [("seq", 1), ("coords", 24), ("dihedrals", 4), ("accessibility", 2), ("depth", 2), ("dssp", 1)]:
        (n,) = struct.unpack_from("<Q", m, p)
        if n != toc[-1][1] + toc[-1][2]:
            raise InputError(f"{path}: array {name!r} holds {n} residues, the chain table {toc[-1][1] + toc[-1][2]}")
        arrays[name] = np.frombuffer(m, dtype=np.uint8, count=n * width, offset=p + 8).reshape(n, width)
        p += 8 + n * width
    arrays["coords"] = arrays["coords"].view("<i2").reshape(-1, 4, 3)
    return pd.DataFrame(toc, columns=["id", "offset", "length"]), arrays


def dssp3(states: str) -> str:
    """DSSP 8 states to 3: H, G, I -> H; E, B -> E; everything else -> C."""
    return states.translate(str.maketrans("GIBTS ", "HHECCC"))


def _protein_struct(path: Path, protein_seqs: set[str]) -> pd.DataFrame:
    toc, arr = read_structure_db(path)
    toc = toc[(toc["length"] >= 50) & (toc["length"] <= 300)]
    toc = _by_hash(toc)
    rows, seen = [], set()
    for r in toc.itertuples():
        sl = slice(r.offset, r.offset + r.length)
        seq = arr["seq"][sl].tobytes().decode()
        ca = arr["coords"][sl, 1].astype(np.float64) / 100
        if not set(seq) <= set("ACDEFGHIKLMNPQRSTVWY") or seq in seen or seq in protein_seqs:
            continue
        if np.linalg.norm(np.diff(ca, axis=0), axis=1).max() > 4.2:  # chain break
            continue
        seen.add(seq)
        ca10 = np.rint((ca - ca.mean(0)) * 10).astype(int)
        rows.append({"id": r.id, "split": split_of(r.id), "seq": seq, "ss3": dssp3(arr["dssp"][sl].tobytes().decode()),
                     "ca": ";".join(",".join(map(str, xyz)) for xyz in ca10)})
        if len(rows) == STRUCT_CHAINS:
            break
    return pd.DataFrame(rows)


def ca_coordinates(text: str) -> np.ndarray:
    """C-alpha coordinates (L x 3, Angstrom) from the `ca` column of protein_struct (0.1 Angstrom integers)."""
    return np.array([[int(v) for v in xyz.split(",")] for xyz in text.split(";")], dtype=np.float64) / 10


def contact_map(ca: np.ndarray, cutoff: float = 8.0) -> np.ndarray:
    """C-alpha contacts: 1 where the distance is under `cutoff` Angstrom (Table 2c / protein contacts)."""
    d = np.linalg.norm(ca[:, None, :] - ca[None, :, :], axis=-1)
    return (d < cutoff).astype(np.int8)


# ----------------------------------------------------------------------------- building and loading
def heldout_sequences(modality: str, rows: pd.DataFrame) -> set[str]:
    """The test sequences of the labelled sets of a modality (they are left out of every pool build)."""
    from corelib.config import cache_dir
    from corelib.data.debian import INFERNAL_DIR

    if modality == "rna":
        typ = _typecls(rows)
        ss = _rna_ss(cache_dir() / "debian" / "root" / "infernal" / INFERNAL_DIR)
        test_ids = set(typ.loc[typ["split"] == "test", "id"])
        return set(rows.loc[rows["id"].isin(test_ids), "seq"]) | set(ss.loc[ss["split"] == "test", "seq"])
    loc = _protein_loc(rows, _closure_path())
    return set(loc.loc[loc["split"] == "test", "seq"])


def _closure_path() -> Path:
    from corelib.config import cache_dir

    return cache_dir() / "debian/root/metastudent-data/usr/share/metastudent-data/dataset_201401/fullTransitiveClosureGO.txt"


def build_labelled(name: str, out_dir: Path | None = None) -> Path:
    """Rebuild a labelled set from Debian packages into data_manifests/files/NAME.tsv.gz (+ manifest)."""
    from tqdm import tqdm

    from corelib.config import cache_dir
    from corelib.data.debian import BLAST_PKGS, INFERNAL_DIR, fetch_packages
    from corelib.data.manifests import manifests_dir
    from corelib.data.sources import clean_rows, source_readers
    from corelib.files import sha256_file

    modality = LABELLED[name]
    pkgs, readers = source_readers(modality)
    if name == "protein_struct":
        pkgs = [*pkgs, "promod3-data"]
    versions = fetch_packages(tqdm(pkgs, desc="packages", leave=False))
    rows, _ = clean_rows([row for read in readers for row in read()], modality)
    root = cache_dir() / "debian" / "root"
    if name == "rna_typecls":
        df = _typecls(rows)
    elif name == "rna_ss":
        df = _rna_ss(root / "infernal" / INFERNAL_DIR)
    elif name == "protein_loc":
        df = _protein_loc(rows, _closure_path())
    else:
        df = _protein_struct(root / "promod3-data" / STRUCTURE_DB, set(rows["seq"]))
    df = df.sort_values(["split", "id"], kind="stable").reset_index(drop=True)
    out_dir = Path(out_dir) if out_dir else manifests_dir() / "files"
    path = out_dir / f"{name}.tsv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)

    atomic_gzip(path, lambda gz: gz.write(df.to_csv(sep="\t", index=False, lineterminator="\n").encode()))

    label = {"rna_typecls": "label", "rna_ss": "family", "protein_loc": "compartment"}.get(name)
    manifest = {
        "name": name, "modality": modality, "kind": "embedded labelled downstream set", "task": _TASKS[name],
        "file": path.name, "sha256": sha256_file(path), "sequences": int(len(df)),
        "splits": {k: int(v) for k, v in df["split"].value_counts().sort_index().items()},
        "classes": ({str(k): int(v) for k, v in df[label].value_counts().sort_index().items()} if label else None),
        "columns": list(df.columns),
        "sources": {p: versions.get(p) for p in pkgs if p not in BLAST_PKGS},
        "leakage": "split fixed by sha256('split:' + id) (25% test, 15% valid); every test sequence is left out of "
                   "the rna_demo / protein_demo pools and of --full builds (exact sequence match)"
                   + ("; PDB chains whose sequence occurs in any protein source are dropped" if name == "protein_struct" else ""),
        "build_command": f"python -m corelib data build {name}",
    }
    man_dir = manifests_dir() if out_dir == manifests_dir() / "files" else out_dir
    atomic_write(man_dir / f"{name}.yaml", lambda tmp: tmp.write_text(yaml.safe_dump(manifest, sort_keys=False, width=120)))
    return path

_TASKS = {
    "rna_typecls": "RNA type classification (10 classes, 40-64 nt windows); Table 1 TypeCls",
    "rna_ss": "RNA secondary structure (dot-bracket; contacts = base pairs); Tables 2a, 2c",
    "protein_loc": "membrane vs soluble (Table 3 Bin) and 9-compartment localization",
    "protein_struct": "DSSP 3-state secondary structure (Table 3 SS) and C-alpha contacts under 8 A",
}


def load_labelled(name: str) -> pd.DataFrame:
    """A labelled set as a table (columns per set; `split` is train / valid / test)."""
    from corelib.data.manifests import dataset_path, load_manifest

    if name not in LABELLED:
        raise InputError(f"unknown labelled set {name!r}; known: {', '.join(LABELLED)}")
    load_manifest(name)
    path = dataset_path(name)
    if not path.exists():
        raise InputError(f"{path}: missing; rebuild with: python -m corelib data build {name}")
    return pd.read_csv(path, sep="\t", dtype={"go": str, "compartment": str}, keep_default_na=False)


def near_duplicates(test_seqs, pool_seqs, modality: str, min_seq_id: float = 0.9, coverage: float = 0.8) -> int:
    """How many test sequences share an MMseqs2 linclust cluster (min_seq_id identity over `coverage` of the
    member) with a pool sequence: the leakage that exact matching leaves."""
    import tempfile

    from corelib.data.clusters import mmseqs_clusters

    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "all.fa"
        with open(fasta, "w") as fh:
            fh.writelines(f">t{i}\n{s}\n" for i, s in enumerate(test_seqs))
            fh.writelines(f">p{i}\n{s}\n" for i, s in enumerate(pool_seqs))
        table = mmseqs_clusters(fasta, min_seq_id, coverage, mode="linclust", cov_mode=2)
    with_pool = set(table.loc[table["id"].str.startswith("p"), "cluster"])
    return int(table[table["id"].str.startswith("t") & table["cluster"].isin(with_pool)].shape[0])


def leakage_report(names=None, min_seq_id: float = 0.9) -> pd.DataFrame:
    """Per labelled set: test sequences, exact matches in the pool (0 by construction) and MMseqs2 near
    duplicates at `min_seq_id` identity (the `data leakage` verb)."""
    from corelib.data.pools import load_pool

    rows = []
    for name in names or list(LABELLED):
        if name not in LABELLED:
            raise InputError(f"unknown labelled set {name!r}; known: {', '.join(LABELLED)}")
        modality = LABELLED[name]
        test = load_labelled(name).query("split == 'test'")["seq"].tolist()
        pool = load_pool(f"{modality}_demo", modality)["seq"].tolist()
        rows.append({"set": name, "pool": f"{modality}_demo", "test_sequences": len(test),
                     "exact_in_pool": len(set(test) & set(pool)),
                     f"near_duplicates_{round(min_seq_id * 100)}": near_duplicates(test, pool, modality, min_seq_id)})
    return pd.DataFrame(rows)
