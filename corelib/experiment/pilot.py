"""The pilot that sizes a preset (docs/pilot.md): does a model pretrained on a budget-sized random set end at
least `claims.GATE_MARGIN` below the unigram entropy of held-out residues, and how long does it take?

    python -m corelib.bench pilot --preset demo --modality rna --n 1000 [--lr 3e-3] [--batch-size 16]

A random draw of `heldout` pool sequences is held out (fixed masks), `n` others are pretrained on with the
preset's schedule (warm-up as its fraction of the run), and the held-out MLM loss is set against the entropy.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from corelib.config import Preset
from corelib.data.store import pool_size, token_store
from corelib.data.tokens import get_vocab, residue_entropy
from corelib.evaluation.intrinsic import heldout_mlm_loss
from corelib.experiment.claims import GATE_MARGIN
from corelib.layout import RunLayout
from corelib.models.masked_lm import build_model
from corelib.training.loop import total_steps, train_mlm

PILOT_SEED = 123   # the draw of held-out and training sequences


def pilot_run(preset: Preset, modality: str, n: int, heldout: int = 600, device="cpu") -> dict:
    """Pretrain on `n` random pool sequences with the preset's schedule and model; the held-out MLM loss, the
    unigram entropy, their gap, whether the gate margin is met, steps and wall seconds (issue 14's pilot)."""
    store = token_store(RunLayout(preset).pool(modality), modality, progress=False)
    order = np.random.default_rng(PILOT_SEED).permutation(pool_size(store, preset.data.pool_limit))
    held, train = order[:heldout], np.sort(order[heldout:heldout + n])
    held_tokens = store.gather(held, preset.data.max_tokens)
    cfg = dataclasses.replace(preset.pretrain)
    net = build_model(modality, preset.model, seed=preset.seed)
    started = time.perf_counter()
    train_mlm(net, store.gather(train, preset.data.max_tokens), train, cfg, device, mask_prob=preset.data.mask_prob,
              seed=preset.seed, precision=preset.precision, progress=False)
    seconds = time.perf_counter() - started
    loss = heldout_mlm_loss(net, held_tokens, ["pilot"] * len(held), get_vocab(modality), mask_seed=7,
                            mask_prob=preset.data.mask_prob, device=device)
    # the entropy of the residue frequencies, counted on the tokens between <cls> and <eos>
    value, entropy = float(loss["num"].sum() / loss["den"].sum()), residue_entropy(t[1:-1] for t in held_tokens)
    return {"modality": modality, "model": preset.model, "n": int(n), "max_tokens": preset.data.max_tokens,
            "lr": cfg.lr, "batch_size": cfg.batch_size, "epochs": cfg.epochs, "steps": total_steps(cfg, n),
            "seed": preset.seed, "seconds": round(seconds, 1), "heldout_loss": round(value, 4),
            "entropy": round(entropy, 4), "gap": round(value - entropy, 4), "passes": value - entropy <= -GATE_MARGIN}
