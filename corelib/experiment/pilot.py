"""The pilot that sizes a preset (docs/pilot.md): does a model pretrained on a budget-sized random set end at
least `claims.GATE_MARGIN` below the floor of the grid's own held-out metric (masked-only loss on the held-out
clusters, sources weighted by their pool share, `corelib.experiment.heldout`), interval included, and how long does
it take?

    python -m corelib.bench pilot --preset demo --modality rna --n 1000 [--lr 3e-3] [--epochs 10] [--model tiny]

The grid's held-out rule is applied as is (chosen once under runs/pilot-<preset>-<max_tokens>/); `n`
random sequences of the pool less that slice are pretrained on with the preset's model, crop (random windows) and
schedule, and the masked-only loss is set against the entropy of the masked residues, with a 95% item-bootstrap
interval of the gap.
"""
from __future__ import annotations

import time

import numpy as np

from corelib.config import Preset
from corelib.data.tokens import get_vocab
from corelib.evaluation.intrinsic import HELDOUT_MASK_SEED, heldout_mlm_loss
from corelib.experiment import stats
from corelib.experiment.claims import GATE_MARGIN
from corelib.experiment.grid import GridRun
from corelib.experiment.heldout import weighted_heldout
from corelib.models.masked_lm import build_model
from corelib.training.loop import total_steps, train_mlm

PILOT_SEED = 123   # the draw of the training sequences


def pilot_run(preset: Preset, modality: str, n: int, device="cpu") -> dict:
    """Pretrain on `n` random pool sequences (outside the held-out clusters) with the preset's schedule and model;
    the masked-only held-out loss, the entropy floor, their gap with a 95% item-bootstrap interval, whether the gate
    margin is met, steps and wall seconds (module docstring)."""
    # the grid's held-out rule on the preset's pool, in a folder of its own (a crop other than the preset's chooses
    # other windows): runs/pilot-<preset>-<max_tokens>/
    run = GridRun(preset.override(name=f"pilot-{preset.name}-{preset.data.max_tokens}"), modality, device=device,
                  progress=False)
    train = np.sort(np.random.default_rng(PILOT_SEED).choice(run.train_indices, size=n, replace=False))
    cfg = preset.pretrain
    net = build_model(modality, preset.model, seed=preset.seed)
    started = time.perf_counter()
    train_mlm(net, run.store.gather(train), train, cfg, device, mask_prob=preset.data.mask_prob, seed=preset.seed,
              precision=preset.precision, crop=preset.data.max_tokens, progress=False)
    seconds = time.perf_counter() - started
    table = run.heldout.table
    losses = heldout_mlm_loss(net, run.heldout_tokens, table["source"].astype(str).tolist(), get_vocab(modality),
                              mask_seed=HELDOUT_MASK_SEED, mask_prob=preset.data.mask_prob, device=device,
                              ids=table["id"].astype(str).tolist())
    weighted, entropy = weighted_heldout(losses, run.heldout.entropy, run.heldout.weights)
    num, den = weighted["num"].to_numpy(), weighted["den"].to_numpy()
    boot = stats.resample(num[None], den[None], stats.boot_counts(len(num), rng=np.random.default_rng(PILOT_SEED)))
    loss = float(boot.point[0])
    lo, hi = np.percentile(boot.boot[0] - entropy["all"], [2.5, 97.5])
    gap = loss - entropy["all"]
    return {"modality": modality, "model": preset.model, "n": int(n), "max_tokens": preset.data.max_tokens,
            "lr": cfg.lr, "batch_size": cfg.batch_size, "epochs": cfg.epochs, "steps": total_steps(cfg, n),
            "seed": preset.seed, "seconds": round(seconds, 1), "heldout_loss": round(loss, 4),
            "entropy": round(entropy["all"], 4), "gap": round(gap, 4), "gap_lo": round(float(lo), 4),
            "gap_hi": round(float(hi), 4), "heldout": len(table), "passes": bool(gap <= -GATE_MARGIN and hi < 0)}
