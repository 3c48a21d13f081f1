"""corelib.sources: committed demo pools match their manifests, and rebuild byte for byte from Debian packages."""
from __future__ import annotations

import shutil

import pytest
import yaml

from corelib.data import build_dataset, dataset_path, load_pool, verify_datasets
from corelib.data.manifests import manifests_dir
from corelib.data.pools import DATASETS
from corelib.errors import InputError
from corelib.files import sha256_file

REQUIRED = {"name", "modality", "file", "sha256", "sequences", "length", "sources", "build_command", "processing"}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_manifest_describes_the_committed_file(name):
    man = yaml.safe_load((manifests_dir() / f"{name}.yaml").read_text())
    assert REQUIRED <= set(man)
    pool = load_pool(name, man["modality"])
    assert len(pool) == man["sequences"] == sum(s["sequences"] for s in man["sources"])
    assert int(pool["length"].max()) == man["length"]["max"] <= 1022
    for src in man["sources"]:
        assert {"package", "debian_version", "license", "citation", "upstream", "file"} <= set(src)
        assert (pool["source"] == src["name"]).sum() == src["sequences"]


@pytest.mark.parametrize("name", ["rna_demo", "protein_demo"])
def test_manifest_sources_counts_what_the_pool_file_holds(name):
    from corelib.data import manifest_sources

    table = manifest_sources(name).set_index("source")
    pool = load_pool(name, table["modality"].iat[0])
    assert table["sequences"].to_dict() == pool["source"].value_counts().to_dict()
    assert table["families"].to_dict() == pool.groupby("source")["family"].nunique().to_dict()
    assert table["share"].sum() == pytest.approx(1.0)


def test_verify_accepts_committed_files_and_rejects_a_changed_one(tmp_path, monkeypatch):
    from corelib.data.labelled import LABELLED

    full = [p for p in manifests_dir().glob("*.yaml") if yaml.safe_load(p.read_text()).get("location") == "cache"]
    assert len(full) == 2 and len(verify_datasets()) == len(DATASETS) + len(LABELLED) + len(full)
    root = tmp_path / "root"
    shutil.copytree(manifests_dir(), root / "data_manifests")
    with open(root / "data_manifests" / "files" / "rna_demo.fasta.gz", "ab") as fh:
        fh.write(b"\0")
    monkeypatch.setenv("CORELIB_ROOT", str(root))
    with pytest.raises(InputError, match="does not match"):
        verify_datasets()


@pytest.mark.parametrize("name", sorted(p.stem for p in manifests_dir().glob("*.yaml") if "expected_path" in yaml.safe_load(p.read_text())))
def test_paper_corpus_manifest_says_where_to_put_the_files(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_CACHE", str(tmp_path))
    man = yaml.safe_load((manifests_dir() / f"{name}.yaml").read_text())
    with pytest.raises(InputError, match=str(tmp_path / man["expected_path"])):
        dataset_path(name)


@pytest.mark.parametrize("name", ["rna_full", "protein_full"])
def test_a_full_pool_not_built_here_says_how_to_build_it(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_CACHE", str(tmp_path))
    man = yaml.safe_load((manifests_dir() / f"{name}.yaml").read_text())
    assert man["build_command"] == f"python -m corelib data build {name.replace('_full', '_demo')} --full"
    with pytest.raises(InputError, match=f"not built here.*{man['build_command']}"):
        dataset_path(name)
    assert f"{name}: not built ({man['build_command']})" in verify_datasets()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / man["file"]).write_bytes(b"not the pool")
    assert dataset_path(name) == tmp_path / "full" / man["file"]
    with pytest.raises(InputError, match="does not match"):
        verify_datasets()


def test_a_protein_spelt_in_nucleotide_letters_is_dropped_and_counted():
    from corelib.data.sources import clean_rows

    rows = [{"id": "p1", "seq": "ACGT" * 6, "source": "S", "family": "f"},      # 24 letters, all ACGT: dropped
            {"id": "p2", "seq": "ACGTACGT", "source": "S", "family": "f"},      # short: a peptide, kept
            {"id": "p3", "seq": "MKTAYIAKQR" * 3, "source": "S", "family": "f"}]
    df, stats = clean_rows(rows, "protein")
    assert sorted(df["id"]) == ["p2", "p3"] and stats["nucleotide_like_dropped"] == 1
    assert "nucleotide_like_dropped" not in clean_rows(rows, "rna")[1]


@pytest.mark.apt
@pytest.mark.slow
@pytest.mark.parametrize("name", ["rna_demo", "protein_demo"])
def test_full_build_reproduces_its_manifest_byte_for_byte(name, tmp_path):
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("needs a Debian/Ubuntu machine (apt-get, dpkg)")
    full = name.replace("_demo", "_full")
    man = yaml.safe_load((manifests_dir() / f"{full}.yaml").read_text())
    built = build_dataset(name, full=True, out_dir=tmp_path)
    assert sha256_file(built) == man["sha256"]
    assert yaml.safe_load((tmp_path / f"{full}.yaml").read_text()) == man


@pytest.mark.apt
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_build_from_debian_packages_reproduces_committed_file_byte_for_byte(name, tmp_path):
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("needs a Debian/Ubuntu machine (apt-get, dpkg)")
    man = yaml.safe_load((manifests_dir() / f"{name}.yaml").read_text())
    built = build_dataset(name, out_dir=tmp_path)
    assert sha256_file(built) == man["sha256"] == sha256_file(manifests_dir() / "files" / man["file"])
    rebuilt = yaml.safe_load((tmp_path / f"{name}.yaml").read_text())
    assert rebuilt == man
