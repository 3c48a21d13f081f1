"""corelib.data: FASTA validation (every bad-input case), vocabularies, cropping, masking, batching."""
from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest

from corelib.data import get_vocab, mlm_mask, read_fasta
from corelib.data.tokens import length_batches, pad_batch
from corelib.errors import InputError


def _one_line_error(cli, path, modality="rna"):
    status, out, err = cli("data", "check", path, "--modality", modality)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("content, name, expect", [
    ("", "empty.fa", "no FASTA records"),
    (">a\nACGU\n>b\n>c\nACGU\n", "x.fa", ":3: record 'b' has a header but no sequence"),
    ("ACGU\n>a\nACGU\n", "x.fa", ":1: sequence data before any '>' header"),
    (">a\nACGU\nACXGU\n", "x.fa", ":3: record 'a', residue 7: amino-acid letter 'X'"),
    (">a\nACGU\nAC1GU\n", "x.fa", ":3: record 'a', residue 7: invalid character '1'"),
    (">a\nACGU\n>a\nGGGG\n", "x.fa", ":3: duplicate record id 'a'"),
    (">a\nACGU\n> b\nGGGG\n", "x.fa", ":3: empty record id"),
    (b">a\nAC\x00\xff\x10GU\n", "x.fa", ":2: binary data"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe\xfd", "x.fa", ":1: binary or non-ASCII data"),
    (">sp|P1 protein\nMKTLLVLAVLLAGSQA\n", "prot.fa", "this looks like a protein sequence, use --modality protein"),
])
def test_bad_fasta_gives_one_line_and_exit_2(cli, fasta, content, name, expect):
    path = fasta(content, name)
    err = _one_line_error(cli, path)
    assert str(path) in err and expect in err


def test_missing_file_gives_one_line_and_exit_2(cli, tmp_path):
    err = _one_line_error(cli, tmp_path / "nope.fa")
    assert "file not found" in err


def test_truncated_gzip_gives_one_line_and_exit_2(cli, tmp_path):
    data = gzip.compress((">a\n" + "ACGU" * 5000 + "\n").encode())
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated gzip" in _one_line_error(cli, path)


def test_nucleotides_given_as_protein_are_rejected(cli, fasta):
    err = _one_line_error(cli, fasta(">a\n" + "ACGT" * 10 + "\n"), "protein")
    assert "looks like a nucleotide sequence" in err


def test_cli_process_exits_2_without_traceback(fasta):
    path = fasta(">a\nAC!GU\n")
    proc = subprocess.run([sys.executable, "-m", "corelib", "data", "check", str(path), "--modality", "rna"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "invalid character '!'" in proc.stderr


def test_unknown_option_is_one_line_exit_2(cli):
    status, _, err = cli("data", "check", "x.fa", "--modality", "dna")
    assert status == 2 and err.count("\n") == 1


def test_overlong_sequences_are_cropped_and_counted(cli, fasta):
    path = fasta(">long\n" + "ACGU" * 300 + "\n>short\nacgt\n", "x.fa.gz")
    status, out, _ = cli("data", "check", path, "--modality", "rna")
    assert status == 0
    assert '"cropped": 1' in out and '"sequences": 2' in out and '"length_max": 1200' in out


def test_reading_folds_case_converts_t_to_u_and_streams_gzip(fasta):
    recs = list(read_fasta(fasta(">a source=S family=F\nacgt\nNN\n>b\nUUUU\n", "p.fa.gz"), "rna"))
    assert [r.seq for r in recs] == ["ACGUNN", "UUUU"]
    assert recs[0].fields == {"source": "S", "family": "F"} and [r.line for r in recs] == [1, 4]


def test_vocabularies_match_rna_fm_and_fair_esm_alphabets():
    import esm
    import fm

    rna_alpha = fm.Alphabet.from_architecture("ESM-1b", "rna")
    prot_alpha = esm.Alphabet.from_architecture("ESM-1b")
    rna, prot = get_vocab("rna"), get_vocab("protein")
    assert list(rna.tokens) == rna_alpha.all_toks and list(prot.tokens) == prot_alpha.all_toks
    for ours, alpha, seq in [(rna, rna_alpha, "ACGUNRYKMSWBDHV"), (prot, prot_alpha, "MKTLLVLAVXBUZO")]:
        _, _, reference = alpha.get_batch_converter()([("x", seq)])  # <cls> ... <eos>, as the packages tokenize
        assert ours.encode(seq).tolist() == reference[0].tolist()
    assert (rna.pad, rna.mask) == (rna_alpha.padding_idx, rna_alpha.mask_idx)


def test_encode_crops_to_max_tokens_including_cls_and_eos():
    v = get_vocab("rna")
    toks = v.encode("A" * 2000, max_tokens=1024)
    assert len(toks) == 1024 and toks[0] == v.cls and toks[-1] == v.eos


def test_mask_is_a_function_of_seed_and_index_only():
    v = get_vocab("rna")
    toks = v.encode("ACGU" * 50)
    a = mlm_mask(toks, index=7, seed=0, vocab=v)
    b = mlm_mask(toks, index=7, seed=0, vocab=v)
    c = mlm_mask(toks, index=8, seed=0, vocab=v)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_mask_rates_follow_bert_80_10_10_and_skip_special_tokens():
    v = get_vocab("protein")
    toks = v.encode("MKTLLVLAVLLAGSQAVLSGT" * 20)
    counts = np.zeros(3)
    total = 0
    for i in range(300):
        inputs, labels = mlm_mask(toks, index=i, seed=1, vocab=v)
        chosen = labels != -100
        assert not chosen[0] and not chosen[-1]
        assert chosen.sum() == round(0.15 * (len(toks) - 2))
        assert np.array_equal(labels[chosen], toks[chosen])
        counts += [(inputs[chosen] == v.mask).sum(), ((inputs != toks) & (inputs != v.mask)).sum(),
                   (inputs[chosen] == toks[chosen]).sum()]
        total += chosen.sum()
    frac = counts / total
    assert abs(frac[0] - 0.8) < 0.02
    # random replacement may draw the original residue: observed "changed" is 0.1 * 19/20 in expectation
    assert abs(frac[1] - 0.1 * 19 / 20) < 0.015 and abs(frac[2] - (0.1 + 0.1 / 20)) < 0.015


def test_length_batches_cover_each_index_once_and_pad_less_than_random():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 1000, size=1000)
    for seed in (None, 3):
        batches = length_batches(lengths, 16, seed=seed)
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
        real = sum(lengths[b].sum() for b in batches)
        padded = sum(len(b) * lengths[b].max() for b in batches)
        naive = sum(16 * lengths[i : i + 16].max() for i in range(0, 1000, 16))
        assert real / padded > 0.9 > real / naive
    assert [b.tolist() for b in length_batches(lengths, 16, seed=3)] == \
        [b.tolist() for b in length_batches(lengths, 16, seed=3)]


@pytest.mark.parametrize("seed", [None, 3])
def test_token_budget_batches_fill_the_budget_and_no_more(seed):
    """With max_tokens every batch pads to at most the budget (count x longest), unless it is one sequence
    longer than the budget, and each is maximal: the next sequence in its window's length order would not fit."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(20, 1000, size=700)
    budget = 4000
    batches = length_batches(lengths, 16, seed=seed, max_tokens=budget)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(700))
    for b in batches:
        assert len(b) * lengths[b].max() <= budget or len(b) == 1
    if seed is None:   # pool order: windows of 16 x 64 sequences, each sorted by length, cut in order
        flat = np.concatenate(batches)
        pos = 0
        for b in batches[:-1]:
            pos += len(b)
            if pos % 1024 and pos < 700:   # the next sequence of the same window
                assert (len(b) + 1) * max(lengths[b].max(), lengths[flat[pos]]) > budget
    short = length_batches(np.full(50, 30), 16, max_tokens=300)
    assert [len(b) for b in short] == [10] * 5              # 10 x 30 = 300 tokens: ten sequences, not 16


def test_pad_batch_right_pads():
    out = pad_batch([np.array([1, 2, 3]), np.array([4])], pad_value=9)
    assert out.tolist() == [[1, 2, 3], [4, 9, 9]]


def test_unknown_modality_is_an_input_error(fasta):
    with pytest.raises(InputError):
        list(read_fasta(fasta(">a\nACGU\n"), "dna"))


def test_records_at_equals_read_fasta_at_those_positions():
    """records_at reads only the wanted records (any order, repeats once) and gives what read_fasta gives there:
    id, description, normalized sequence and header line; positions past the end yield nothing."""
    from corelib.data import dataset_path
    from corelib.data.fasta import records_at

    path = dataset_path("rna_demo")   # gzip
    records = list(read_fasta(path, "rna"))
    picks = [len(records) - 1, 0, 17, 17, 999, len(records) + 5]
    got = list(records_at(path, picks, "rna"))
    assert [i for i, _ in got] == [0, 17, 999, len(records) - 1]
    assert all(rec == records[i] and rec.line == records[i].line for i, rec in got)
