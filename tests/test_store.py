"""The tokenized pool store: one parse of the FASTA, then reads by index equal to tokenizing the records."""
from __future__ import annotations

import numpy as np
import pytest

from corelib.data import dataset_path, read_fasta, tokenize
from corelib.data import store as store_mod
from corelib.data.store import token_store
from corelib.errors import InputError


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_TOKENS", str(tmp_path / "tokens"))
    return tmp_path


@pytest.mark.parametrize("name, modality", [("rna_demo", "rna"), ("protein_demo", "protein")])
def test_reads_equal_tokenizing_the_fasta_at_every_crop(root, name, modality):
    fasta = dataset_path(name)
    records = [r for _, r in zip(range(400), read_fasta(fasta, modality))]
    st = token_store(fasta, modality, progress=False)
    assert len(st) == sum(1 for _ in read_fasta(fasta, modality))
    assert st.ids(0, 400).tolist() == [r.id for r in records]
    assert (st.lengths[:400] == [len(r.seq) for r in records]).all()
    assert st.lengths_of([399, 0]).tolist() == [len(records[399].seq), len(records[0].seq)]
    for crop in (10, 66, 1024):
        expected = tokenize([r.seq for r in records], modality, crop)
        got = st.gather(range(400), crop)
        assert all(np.array_equal(a, b) and a.dtype == np.uint8 for a, b in zip(got, expected))
    picks = [399, 3, 250]                    # any order, by index
    expected = tokenize([records[i].seq for i in picks], modality, 66)
    assert all(np.array_equal(a, b) for a, b in zip(st.gather(picks, 66), expected))


def test_built_once_then_reused_and_rebuilt_for_another_pool(root, fasta, monkeypatch):
    path = fasta(">a\nACGU\n>b\nGGGAAACCC\n", "p.fa")
    first = token_store(path, "rna", progress=False)
    calls = []
    monkeypatch.setattr(store_mod, "_build", lambda *a: calls.append(a))
    again = token_store(path, "rna", progress=False)
    assert calls == [] and again.folder == first.folder and again.ids().tolist() == ["a", "b"]
    monkeypatch.undo()
    monkeypatch.setenv("CORELIB_TOKENS", str(root / "tokens"))
    other = token_store(fasta(">a\nACGU\n>c\nUUU\n", "q.fa"), "rna", progress=False)
    assert other.folder != first.folder and other.ids().tolist() == ["a", "c"]
    assert token_store(path, "protein", progress=False).folder != first.folder   # another tokenizer


def test_a_bad_record_is_one_input_error_and_leaves_no_store(root, fasta):
    path = fasta(">a\nACGU\n>b\nAC#GU\n", "bad.fa")
    with pytest.raises(InputError, match="bad.fa"):
        token_store(path, "rna", progress=False)
    assert not any((root / "tokens").iterdir())   # nothing half-built is left


def test_offsets_are_written_in_chunks_and_ids_read_back_as_arrays(root, fasta, monkeypatch):
    """A build whose offset chunk is smaller than the pool writes the same arrays (the offsets cross chunk
    boundaries); ids come back as numpy arrays, in any order."""
    records = [("s1", "ACGU"), ("seq_2", "G"), ("s_3", "UUUUUUUU"), ("x", "AC"), ("long_id_five", "CCCA")]
    path = fasta("".join(f">{i}\n{q}\n" for i, q in records), "c.fa")
    monkeypatch.setattr(store_mod, "CHUNK", 2)
    monkeypatch.setattr(store_mod, "ID_CHUNK", 2)
    st = token_store(path, "rna", progress=False)
    lengths = np.array([len(q) + 2 for _, q in records])
    assert st.offsets.tolist() == [0, *np.cumsum(lengths).tolist()]
    assert st.id_offsets.tolist() == [0, *np.cumsum([len(i.encode()) for i, _ in records]).tolist()]
    assert st.meta["n"] == 5 and st.meta["residues"] == sum(len(q) for _, q in records)
    ids = st.ids()
    assert isinstance(ids, np.ndarray) and ids.tolist() == [i for i, _ in records]
    assert st.ids_of([4, 0, 2]).tolist() == ["long_id_five", "s1", "s_3"] and st.ids(3, 99).tolist() == ["x", "long_id_five"]
    assert all(np.array_equal(st.tokens(k), tokenize([q], "rna", 1024)[0]) for k, (_, q) in enumerate(records))


def test_a_duplicate_id_is_the_same_one_line_error_as_read_fasta(root, fasta):
    """The store checks ids from one hash per record, not a set of every id: a duplicate still names the file
    and the line of its second header, as read_fasta does, and leaves no store."""
    path = fasta(">a\nACGU\n>b\nGG\n>c\nAC\n>b\nUU\n>a\nCC\n", "dup.fa")
    with pytest.raises(InputError) as direct:
        list(read_fasta(path, "rna"))
    with pytest.raises(InputError) as built:
        token_store(path, "rna", progress=False)
    assert str(built.value) == str(direct.value) == f"{path}:7: duplicate record id 'b'"
    assert not any((root / "tokens").iterdir())
