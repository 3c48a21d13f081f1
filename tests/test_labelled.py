"""corelib.labelled: the embedded downstream sets are real, leak-free and rebuildable; their format
helpers (WUSS, dot-brackets, DSSP, StructureDB, contacts) agree with independent computations."""
from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
import yaml
from scipy.spatial.distance import cdist
from sklearn.linear_model import LogisticRegression

from corelib.config import cache_dir
from corelib.data import load_labelled, load_pool
from corelib.data.labelled import (
    LABELLED,
    STRUCTURE_DB,
    _project,
    build_labelled,
    ca_coordinates,
    contact_map,
    dssp3,
    read_structure_db,
    to_dotbracket,
    wuss_pairs,
)
from corelib.data.manifests import manifests_dir
from corelib.evaluation.metrics import pairs_from_dotbracket
from corelib.files import sha256_file


@pytest.mark.parametrize("modality,names", [("rna", ["rna_typecls", "rna_ss"]),
                                            ("protein", ["protein_loc", "protein_struct"])])
def test_no_test_sequence_of_a_labelled_set_is_in_the_pretraining_pool(modality, names):
    table = load_pool(f"{modality}_demo", modality)
    pool, pool_ids = set(table["seq"]), set(table["id"])
    for name in names:
        df = load_labelled(name)
        test = df[df["split"] == "test"]
        assert len(test) > 50
        assert not set(test["seq"]) & pool, name
        assert not set(test["id"]) & pool_ids, name   # for typecls windows: their source sequences too


def test_labelled_files_match_their_manifests():
    for name in LABELLED:
        man = yaml.safe_load((manifests_dir() / f"{name}.yaml").read_text())
        assert sha256_file(manifests_dir() / "files" / man["file"]) == man["sha256"]
        df = load_labelled(name)
        assert len(df) == man["sequences"] and df["split"].value_counts().to_dict() == man["splits"]


def test_length_alone_does_not_give_the_rna_type_away():
    df = load_labelled("rna_typecls")
    assert df["label"].nunique() == 10 and df["seq"].str.len().between(40, 64).all()
    train, test = df[df["split"] != "test"], df[df["split"] == "test"]
    clf = LogisticRegression(max_iter=1000).fit(train[["seq"]].map(len), train["label"])
    acc = (clf.predict(test[["seq"]].map(len)) == test["label"]).mean()
    majority = test["label"].value_counts(normalize=True).max()
    assert acc <= majority + 0.05


def test_structures_are_balanced_and_pair_complementary_bases():
    df = load_labelled("rna_ss")
    projected = df[df["source"] == "SS_cons projected"]
    for seq, structure in zip(projected["seq"], projected["structure"]):
        assert len(seq) == len(structure)
        for i, j in pairs_from_dotbracket(structure):
            assert seq[i] + seq[j] in {"AU", "UA", "GC", "CG", "GU", "UG"}


def test_wuss_projection_by_hand():
    #            columns: 0123456789
    aligned, ss_cons = "GC-AAAG-C.", "<<.....>>."
    assert wuss_pairs("<<.Aa.>>") == [(0, 7), (1, 6), (3, 4)]
    seq, pairs = _project(aligned, ss_cons, check=True)
    assert _project("GA-AAAGU.", "<<.....>>", check=True)[1] == [(1, 6)]   # A:U pairs; column 8 is a gap
    assert _project("GA-AAAGG.", "<<.....>>", check=True)[1] == []         # A:G cannot pair
    assert seq == "GCAAAGC"
    assert pairs == [(0, 6)]   # columns (0, 8) G:C -> residues (0, 6) kept; (1, 7) hits a gap and is dropped


def test_dotbracket_writes_pseudoknots_on_a_second_bracket_and_round_trips():
    pairs = {(0, 6), (1, 5), (3, 9), (4, 8)}
    text = to_dotbracket(pairs, 10)
    assert text == "((.[[)).]]"
    assert pairs_from_dotbracket(text) == pairs


def test_dssp_eight_states_to_three():
    assert dssp3("HGIEBTS C") == "HHHEECCCC"


def test_membrane_labels_follow_the_go_closure():
    df = load_labelled("protein_loc")
    assert (df.loc[df["compartment"] == "plasma_membrane", "membrane"] == 1).all()   # plasma membrane is_a membrane
    assert 0.2 < df["membrane"].mean() < 0.8 and df["compartment"].nunique() == 9


def test_contacts_match_scipy_distances():
    df = load_labelled("protein_struct")
    ca = ca_coordinates(df["ca"].iloc[0])
    assert np.array_equal(contact_map(ca), (cdist(ca, ca) < 8).astype(np.int8))
    steps = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    assert 3.6 < np.median(steps) < 4.0           # consecutive C-alpha atoms are 3.8 A apart
    assert set("".join(df["ss3"])) == set("HEC") and (df["seq"].str.len() == df["ss3"].str.len()).all()


def _write_structure_db(path, chains):
    """A StructureDB file of version 2 with the layout read_structure_db expects."""
    header = struct.pack("<ii", 1234, 2) + bytes(77 - 8)
    toc, offset = b"", 0
    for ident, seq, _, _ in chains:
        pdb, chain = ident.split("_")
        toc += struct.pack("<I", 4) + pdb.encode() + struct.pack("<I", 1) + chain.encode()
        toc += struct.pack("<IHH3f", offset, len(seq), 1, 0, 0, 0)
        offset += len(seq)
    seq = "".join(c[1] for c in chains).encode()
    coords = np.concatenate([c[2] for c in chains]).astype("<i2").tobytes()
    dssp = "".join(c[3] for c in chains).encode()
    body = b""
    for arr, _width in [(seq, 1), (coords, 24), (bytes(4 * offset), 4), (bytes(2 * offset), 2), (bytes(2 * offset), 2), (dssp, 1)]:
        body += struct.pack("<Q", offset) + arr
    path.write_bytes(header + struct.pack("<Q", len(chains)) + toc + body)


def test_structure_db_reader_round_trips_a_written_file(tmp_path):
    rng = np.random.default_rng(0)
    chains = [("1ABC_A", "MKV", rng.integers(-999, 999, (3, 4, 3)), "CHH"),
              ("2XYZ_B", "GAVL", rng.integers(-999, 999, (4, 4, 3)), "EECC")]
    _write_structure_db(tmp_path / "db.dat", chains)
    toc, arr = read_structure_db(tmp_path / "db.dat")
    assert toc["id"].tolist() == ["1ABC_A", "2XYZ_B"] and toc["length"].tolist() == [3, 4]
    assert arr["seq"][3:7].tobytes() == b"GAVL" and arr["dssp"][:3].tobytes() == b"CHH"
    assert np.array_equal(arr["coords"][3:], chains[1][2])


def test_structure_db_reader_refuses_another_file(tmp_path):
    from corelib.errors import InputError

    (tmp_path / "x.dat").write_bytes(b"\0" * 200)
    with pytest.raises(InputError, match="not a ProMod3 StructureDB"):
        read_structure_db(tmp_path / "x.dat")


def test_real_structure_db_has_protein_geometry():
    path = cache_dir() / "debian" / "root" / "promod3-data" / STRUCTURE_DB
    if not path.exists():
        pytest.skip("promod3-data is not in the cache (python -m corelib data build protein_struct)")
    toc, arr = read_structure_db(path)
    first = arr["coords"][: toc["length"].iloc[0]].astype(float) / 100
    n_ca = np.linalg.norm(first[:, 0] - first[:, 1], axis=1)
    assert len(toc) > 20000 and abs(np.median(n_ca) - 1.46) < 0.03    # N-CA bond length


@pytest.mark.apt
@pytest.mark.parametrize("name", ["rna_typecls", "rna_ss", "protein_loc"])
def test_build_from_debian_packages_reproduces_the_committed_labelled_file(name, tmp_path):
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("needs a Debian/Ubuntu machine (apt-get, dpkg)")
    man = yaml.safe_load((manifests_dir() / f"{name}.yaml").read_text())
    built = build_labelled(name, out_dir=tmp_path)
    assert sha256_file(built) == man["sha256"]


@pytest.mark.apt
def test_near_duplicates_counts_a_one_letter_variant_and_not_an_unrelated_sequence():
    from corelib.data.labelled import near_duplicates

    rng = np.random.default_rng(1)
    pool = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 120)) for _ in range(20)]
    variant = pool[3][:60] + ("A" if pool[3][60] != "A" else "C") + pool[3][61:]
    unrelated = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 120))
    assert near_duplicates([variant, unrelated], pool, "protein") == 1
    assert near_duplicates([unrelated], pool, "protein") == 0


@pytest.mark.apt
def test_leakage_verb_reports_every_set_and_refuses_an_unknown_one(cli):
    status, out, err = cli("data", "leakage", "protein_struct")
    assert status == 0 and "protein_struct" in out and "near_duplicates_90" in out
    status, out, err = cli("data", "leakage", "nope")
    assert status == 2 and err.count("\n") == 1 and "unknown labelled set 'nope'" in err
