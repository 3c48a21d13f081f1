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
    assert st.ids(0, 400) == [r.id for r in records]
    assert (st.lengths[:400] == [len(r.seq) for r in records]).all()
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
    assert calls == [] and again.folder == first.folder and again.ids() == ["a", "b"]
    monkeypatch.undo()
    monkeypatch.setenv("CORELIB_TOKENS", str(root / "tokens"))
    other = token_store(fasta(">a\nACGU\n>c\nUUU\n", "q.fa"), "rna", progress=False)
    assert other.folder != first.folder and other.ids() == ["a", "c"]
    assert token_store(path, "protein", progress=False).folder != first.folder   # another tokenizer


def test_a_bad_record_is_one_input_error_and_leaves_no_store(root, fasta):
    path = fasta(">a\nACGU\n>b\nAC#GU\n", "bad.fa")
    with pytest.raises(InputError, match="bad.fa"):
        token_store(path, "rna", progress=False)
    assert not any((root / "tokens").iterdir())   # nothing half-built is left
