"""The score stage: same inputs give the same scores; compat mode equals the official recipe computed
independently; two torchrun processes equal one; kill -9 and resume loses and recomputes nothing;
non-finite gradients name the sequence; bad input is one line and exit 2."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from corelib.config import get_preset
from corelib.data import get_vocab, load_pool
from corelib.influence import run_scoring
from corelib.models import build_model, save_checkpoint
from corelib.selection import read_scores

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _fasta(tmp_path, n, name="pool.fa", modality="rna", edit=None):
    pool = load_pool(f"{modality}_demo", modality, limit=n)
    seqs = list(pool["seq"])
    if edit:
        edit(seqs)
    path = tmp_path / name
    path.write_text("".join(f">{i} source={s}\n{q}\n" for i, s, q in zip(pool["id"], pool["source"], seqs)))
    return path


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "corelib", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


SMALL = get_preset("smoke", {"scoring.subset_size": 16, "data.max_tokens": 66, "data.pool_limit": None})


def test_same_inputs_give_the_same_scores_and_layer_columns(tmp_path):
    fasta = _fasta(tmp_path, 40)
    a = read_scores(run_scoring(fasta, "rna", tmp_path / "a", SMALL, progress=False, shard_size=16))[0]
    b = read_scores(run_scoring(fasta, "rna", tmp_path / "b", SMALL, progress=False, shard_size=7))[0]
    pd.testing.assert_frame_equal(a, b)
    assert list(a["id"][:3]) == list(load_pool("rna_demo", "rna", limit=3)["id"])
    layer_cols = [c for c in a.columns if c.startswith("score_")]
    assert {"score_layer_00", "score_layer_01", "score_embed", "score_lm_head"} <= set(layer_cols)
    np.testing.assert_allclose(a[layer_cols].sum(axis=1), a["score"], rtol=1e-9)
    meta = json.loads((tmp_path / "a" / "scores.json").read_text())
    assert meta["finetune"] and meta["grad_norm_before_ft"] > 0 and meta["fisher_count"] == 16


def test_no_finetune_variant_skips_the_fine_tune(tmp_path):
    fasta = _fasta(tmp_path, 24)
    run_scoring(fasta, "rna", tmp_path / "wo", SMALL, finetune=False, progress=False)
    assert not (tmp_path / "wo" / "finetuned.pt").exists()
    assert "grad_norm_before_ft" not in json.loads((tmp_path / "wo" / "scores.json").read_text())


def test_compat_mode_equals_the_official_recipe_computed_independently(tmp_path):
    fasta = _fasta(tmp_path, 10)
    model = build_model("rna", "tiny", seed=7)
    ckpt = save_checkpoint(model, tmp_path / "m.pt")
    model.attend_padding = True   # the official model file attends to padding
    scores = read_scores(run_scoring(fasta, "rna", tmp_path / "c", SMALL, checkpoint=ckpt, compat="bio-coreset",
                                     batch_size=4, progress=False))[0]
    # the official recipe: lm_head.dense.weight only; every sequence padded to 1024; labels = the
    # unmasked input itself, pad included, mean over all 1024 positions; Fisher over the scored set
    # itself, no fine-tune; damping 1e-8; the score stored negated
    vocab = get_vocab("rna")
    weight = model.net.lm_head.dense.weight
    grads = []
    for seq in load_pool("rna_demo", "rna", limit=10)["seq"]:
        x = torch.full((1, 1024), vocab.pad)
        toks = torch.from_numpy(vocab.encode(seq)[:1024])
        x[0, : len(toks)] = toks
        loss = torch.nn.functional.cross_entropy(model(x).view(-1, len(vocab)), x.view(-1))
        grads.append(torch.autograd.grad(loss, weight)[0].flatten().double())
    G = torch.stack(grads)
    fisher = G.square().mean(0)
    expected = -(G.square() / (fisher + 1e-8)).sum(1).numpy()
    np.testing.assert_allclose(scores["score"], expected, rtol=1e-4)
    assert (scores["score"] < 0).all()


@pytest.mark.distributed
def test_two_torchrun_processes_equal_one(tmp_path):
    fasta = _fasta(tmp_path, 48)
    common = ["--fasta", fasta, "--modality", "rna", "--preset", "smoke", "--subset-size", 24, "--max-tokens", 66,
              "--shard-size", 8, "--quiet", "--device", "cpu"]
    one = _cli("score", "--out", tmp_path / "one", *common)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "corelib", "score", "--out", tmp_path / "two", *map(str, common)],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = read_scores(tmp_path / "one")[0], read_scores(tmp_path / "two")[0]
    assert list(a["id"]) == list(b["id"])
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-6)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_kill_9_then_resume_recomputes_no_finished_shard(tmp_path):
    fasta = _fasta(tmp_path, 256)
    args = ["score", "--fasta", fasta, "--modality", "rna", "--preset", "smoke", "--max-tokens", 130,
            "--shard-size", 4, "--quiet"]
    reference = _cli(*args, "--out", tmp_path / "ref")
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "corelib", *map(str, args), "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = out / "shards"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(shards.glob("shard_*.parquet"))) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard_*.parquet")}
    assert 3 <= len(done) < 64 and not (out / "scores.parquet").exists()
    resumed = _cli(*args, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert all((shards / name).stat().st_mtime_ns == t for name, t in done.items())   # not recomputed
    pd.testing.assert_frame_equal(read_scores(out)[0], read_scores(tmp_path / "ref")[0])


@pytest.mark.slow
def test_a_non_finite_gradient_names_the_sequence_and_keeps_finished_shards(tmp_path):
    n, sub = 20, 4
    d_sub = set(np.random.default_rng(0).choice(n, sub, replace=False).tolist())
    bad = max(set(range(10, n)) - d_sub)                     # outside D_sub and outside the first shard

    def crop(seqs):                                           # only the bad sequence reaches position 50
        for i in range(n):
            seqs[i] = seqs[i][: 60 if i == bad else 30]
    fasta = _fasta(tmp_path, n, edit=crop)
    model = build_model("rna", "tiny", seed=8)
    with torch.no_grad():
        model.net.embed_positions.weight[50] = float("inf")
    ckpt = save_checkpoint(model, tmp_path / "inf.pt")
    bad_id = load_pool("rna_demo", "rna", limit=n)["id"][bad]
    args = ["score", "--fasta", fasta, "--modality", "rna", "--checkpoint", ckpt, "--no-finetune",
            "--subset-size", sub, "--max-tokens", 66, "--shard-size", 10, "--quiet"]
    failed = _cli(*args, "--out", tmp_path / "s")
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and repr(bad_id) in failed.stderr
    assert (tmp_path / "s" / "shards" / "shard_000000.parquet").exists()
    skipped = _cli(*args, "--out", tmp_path / "s", "--skip-nonfinite")
    assert skipped.returncode == 0, skipped.stderr
    scores, meta = read_scores(tmp_path / "s")
    assert bad_id not in set(scores["id"]) and meta["skipped_nonfinite"] == [bad_id] and len(scores) == n - 1


@pytest.mark.parametrize("args, expect", [
    (["--checkpoint", "/nonexistent/RNA-FM_pretrained.pth"], "checkpoint not found"),
    (["--fasta", "EMPTY"], "no FASTA records"),
    (["--fasta", "PROTEIN"], "looks like a protein sequence"),
    (["--scope", "bogus"], "unknown scope"),
])
def test_bad_input_is_one_line_exit_2(cli, tmp_path, args, expect):
    (tmp_path / "empty.fa").write_text("")
    fasta = _fasta(tmp_path, 4)
    prot = _fasta(tmp_path, 4, name="prot.fa", modality="protein")
    args = [{"EMPTY": tmp_path / "empty.fa", "PROTEIN": prot}.get(a, a) for a in args]
    base = {"--fasta": fasta, "--modality": "rna", "--out": tmp_path / "o", "--quiet": None}
    for key, value in zip(args[::2], args[1::2]):
        base[key] = value
    flat = [x for k, v in base.items() for x in ((k,) if v is None else (k, v))]
    status, _, err = cli("score", *flat)
    assert status == 2 and err.count("\n") == 1 and expect in err, err


def test_a_folder_with_another_run_is_refused(cli, tmp_path):
    fasta = _fasta(tmp_path, 8)
    run_scoring(fasta, "rna", tmp_path / "r", SMALL, progress=False)
    status, _, err = cli("score", "--fasta", fasta, "--modality", "rna", "--out", tmp_path / "r", "--scope", "linear",
                         "--quiet")
    assert status == 2 and "holds a run with other settings (" in err and "scope" in err
