"""corelib.pretrain: the A.3 schedule, training on a coreset folder, and kill -9 then resume giving the
same weights as an uninterrupted run."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from corelib.models import load_checkpoint
from corelib.training.loop import lr_factor

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def test_inverse_sqrt_schedule_after_linear_warmup():
    warm = 2000
    assert lr_factor(0, warm, "inverse_sqrt") == pytest.approx(1 / warm)
    assert lr_factor(warm - 1, warm, "inverse_sqrt") == pytest.approx(1.0)
    assert lr_factor(4 * warm - 1, warm, "inverse_sqrt") == pytest.approx(0.5)          # sqrt(2000 / 8000)
    assert lr_factor(10 * warm, warm, "constant") == 1.0
    assert lr_factor(24, 50, "constant") == pytest.approx(0.5)


def test_warmup_as_a_share_of_the_run_and_a_step_cap():
    from corelib.config import TrainingConfig
    from corelib.models import build_model
    from corelib.training.loop import train_mlm

    # 40 sequences, batch 4: 10 batches an epoch; 5 epochs capped at 23 steps; warm-up 0.1 x 23 = 2.3 -> 2 steps
    rng = np.random.default_rng(0)
    tokens = [np.r_[0, rng.integers(4, 8, 12), 2] for _ in range(40)]
    cfg = TrainingConfig(lr=1e-3, warmup_fraction=0.1, max_steps=23, epochs=5, batch_size=4, schedule="inverse_sqrt")
    history = train_mlm(build_model("rna", "tiny", seed=0), tokens, np.arange(40), cfg, progress=False)
    assert len(history) == 23 and history["epoch"].tolist() == [0] * 10 + [1] * 10 + [2] * 3
    expected = [1e-3 * ((s + 1) / 2 if s < 2 else math.sqrt(2 / (s + 1))) for s in range(1, 24)]  # lr after step s
    assert history["lr"].tolist() == pytest.approx(expected)


def test_a_token_budget_sizes_the_steps_by_padded_tokens():
    """max_tokens_per_batch: 30 sequences of 14 tokens and 10 of 62 under a 120-token budget: the short ones go
    8 to a step (8 x 14 = 112 <= 120 < 9 x 14), i.e. steps of 8, 8, 8 and 6, and each long one alone
    (2 x 62 = 124 > 120): 14 steps an epoch, counted by hand."""
    from corelib.config import TrainingConfig
    from corelib.models import build_model
    from corelib.training.loop import total_steps, train_mlm

    rng = np.random.default_rng(1)
    tokens = [np.r_[0, rng.integers(4, 8, 12), 2] for _ in range(30)] + [np.r_[0, rng.integers(4, 8, 60), 2]
                                                                         for _ in range(10)]
    cfg = TrainingConfig(lr=1e-3, warmup_fraction=0.1, epochs=2, batch_size=64, schedule="constant",
                         max_tokens_per_batch=120)
    assert total_steps(cfg, 40, [len(t) for t in tokens], seed=0) == 2 * 14
    history = train_mlm(build_model("rna", "tiny", seed=0), tokens, np.arange(40), cfg, progress=False)
    assert len(history) == 28 and history["sequences"].sum() == 80
    assert sorted(history["sequences"].tolist()) == sorted(([8, 8, 8, 6] + [1] * 10) * 2)
    assert (history["tokens"] <= 120).all()


def test_a_checkpoint_from_before_the_newer_knobs_resumes(tmp_path):
    from dataclasses import asdict

    from corelib.config import TrainingConfig
    from corelib.models import build_model
    from corelib.training.loop import LATER_KNOBS, train_mlm

    rng = np.random.default_rng(0)
    tokens = [np.r_[0, rng.integers(4, 8, 12), 2] for _ in range(8)]
    cfg = TrainingConfig(lr=1e-3, warmup_steps=1, epochs=2, batch_size=4)
    train_mlm(build_model("rna", "tiny", seed=0), tokens, np.arange(8), cfg, out_dir=tmp_path, progress=False)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert not set(LATER_KNOBS) & set(saved["config"])          # unset newer knobs are not recorded
    saved["config"] = {k: v for k, v in saved["config"].items() if k in asdict(cfg)} | {"mask_prob": 0.15, "seed": 0}
    torch.save(saved, tmp_path / "checkpoint.pt")
    longer = TrainingConfig(lr=1e-3, warmup_steps=1, epochs=2, batch_size=4)
    history = train_mlm(build_model("rna", "tiny", seed=0), tokens, np.arange(8), longer, out_dir=tmp_path, progress=False)
    assert len(history) == 4                                    # resumed: the finished run, nothing refused


def _pretrain(tmp_path, out, *extra):
    return ["pretrain", "--fasta", "rna_demo", "--modality", "rna", "--limit", 96, "--max-tokens", 66,
            "--out", tmp_path / out, "--quiet", *extra]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "corelib", *map(str, args)], capture_output=True, text=True, env=ENV)


def test_pretraining_reads_a_coreset_folder(tmp_path, cli):
    from corelib.selection.files import write_scores

    pool = pd.DataFrame({"id": [f"s{i}" for i in range(4)], "index": range(4), "length": 4, "score": [1.0, 2, 3, 4]})
    fasta = tmp_path / "pool.fa"
    fasta.write_text("".join(f">s{i}\n{'ACGU' * (i + 3)}\n" for i in range(4)))
    write_scores(pool, {"fasta": str(fasta), "modality": "rna"}, tmp_path / "scores")
    assert cli("select", "--scores", tmp_path / "scores", "--method", "topk", "--budget", 2, "--out", tmp_path / "c")[0] == 0
    status, _, err = cli("pretrain", "--fasta", fasta, "--modality", "rna", "--coreset", tmp_path / "c",
                         "--out", tmp_path / "m", "--epochs", 1, "--quiet")
    assert status == 0, err
    saved = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert saved["sequences"] == 2 and len(pd.read_csv(tmp_path / "m" / "history.csv")) == 1   # 2 seqs, batch 16


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path):
    ref = _cli(*_pretrain(tmp_path, "ref", "--save-every", 2))
    assert ref.returncode == 0, ref.stderr
    args = [sys.executable, "-m", "corelib", *map(str, _pretrain(tmp_path, "run", "--save-every", 2))]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (tmp_path / "run" / "model.pt").exists()
    step = torch.load(ckpt, weights_only=True)["state"]["step"]
    total = 4 * math.ceil(96 / 16)                                    # smoke: 4 epochs of 6 batches
    assert 0 < step < total
    resumed = _cli(*_pretrain(tmp_path, "run", "--save-every", 2))
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "ref" / "model.pt", "rna").state_dict()
    b = load_checkpoint(tmp_path / "run" / "model.pt", "rna").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["step"].tolist() == list(range(total))                # no step lost or repeated
    np.testing.assert_array_equal(history["loss"], pd.read_csv(tmp_path / "ref" / "history.csv")["loss"])


@pytest.mark.slow
def test_a_checkpoint_from_other_settings_is_refused(tmp_path):
    assert _cli(*_pretrain(tmp_path, "x", "--epochs", 1)).returncode == 0
    (tmp_path / "x" / "model.pt").unlink()
    again = _cli(*_pretrain(tmp_path, "x", "--epochs", 2))
    assert again.returncode == 2 and "holds a run with other settings" in again.stderr


@pytest.mark.distributed
def test_two_torchrun_processes_train_like_one(tmp_path):
    one = _cli(*_pretrain(tmp_path, "one", "--epochs", 2, "--device", "cpu"))
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "corelib", *map(str, _pretrain(tmp_path, "two", "--epochs", 2, "--device", "cpu"))],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    one_model = load_checkpoint(tmp_path / "one" / "model.pt", "rna")
    two_model = load_checkpoint(tmp_path / "two" / "model.pt", "rna")
    # attention key biases get a mathematically zero gradient (softmax ignores a per-query shift), so Adam
    # moves them by float noise that differs between runs without changing any output: compare outputs
    a, b = one_model.state_dict(), two_model.state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a if "k_proj.bias" not in k)
    from corelib.data import load_pool, mlm_batches, tokenize

    tokens = tokenize(load_pool("rna_demo", "rna", limit=16)["seq"], "rna", 66)
    x = next(iter(mlm_batches(tokens, np.arange(16), 16, one_model.vocab, mask_seed=0)))[0]
    with torch.no_grad():
        assert torch.allclose(one_model(x), two_model(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "two" / "history.csv")["loss"],
                               pd.read_csv(tmp_path / "one" / "history.csv")["loss"], rtol=1e-4)
    assert torch.load(tmp_path / "two" / "model.pt", weights_only=True)["world_size"] == 2
