"""corelib.config: presets (paper = Appendix A), overrides, device choice with CPU fallback."""
from __future__ import annotations

import pytest
import torch

from corelib.config import PRESETS, get_preset
from corelib.errors import InputError
from corelib.runtime import choose_device


def test_paper_preset_holds_appendix_a_values():
    p = get_preset("paper")
    ft, pt = p.finetune, p.pretrain
    assert (ft.batch_size, p.data.mask_prob, ft.lr, ft.weight_decay, ft.warmup_steps, ft.epochs, ft.schedule) == \
        (16, 0.15, 1e-5, 0.01, 50, 1, "constant")                              # A.5
    assert (pt.batch_size, pt.lr, pt.weight_decay, pt.warmup_steps, pt.epochs, pt.schedule) == \
        (16, 1e-4, 0.01, 2000, 10, "inverse_sqrt")                             # A.3 / A.4
    assert (p.selection.hard_cutoff, p.selection.strata, p.selection.budget, p.scoring.subset_size, p.seed,
            p.seeds) == (0.05, 50, 200_000, 200_000, 0, (0, 1, 2))             # A.1, Section 4, A.6, B.3
    assert p.data.max_tokens == 1024


def test_demo_preset_keeps_the_papers_ratios():
    # the paper: budget 0.2M of 23M (0.87%), D_sub 0.2M (0.87%), warm-up 2,000 of 10 x 12,500 steps (1.6%),
    # fine-tune lr 1e-5 = 0.1 x pretraining lr 1e-4 (A.3-A.5); the demo at 1% of a 100k pool
    from corelib.training.loop import total_steps, warmup_steps

    d, paper = get_preset("demo"), get_preset("paper")
    assert paper.pretrain.warmup_steps / total_steps(paper.pretrain, 200_000) == pytest.approx(0.016)
    assert d.finetune.lr / d.pretrain.lr == pytest.approx(paper.finetune.lr / paper.pretrain.lr) == pytest.approx(0.1)
    assert d.pretrain.warmup_fraction == pytest.approx(0.016)
    assert warmup_steps(d.pretrain, 1000) == round(0.016 * 10 * 63) == 10
    assert d.scoring.subset_size / d.data.pool_limit == pytest.approx(0.01)
    assert (d.selection.budget, d.grid.budgets, d.grid.curve_protocol) == (0.99, (1, 3, 10), "steps")  # keep 1%, 3%, 10%
    assert (d.data.rna_pool, d.data.protein_pool) == ("rna_full", "protein_full")


def test_demo_seeds_where_they_buy_power():
    # issue 23: >= 10 paired seeds for C1 (both budgets) and C2 at the same steps, >= 3 scoring draws for C3,
    # each draw's C3 pair at its own seed; the other arms may keep fewer
    from corelib.experiment.grid import GridRun, cells

    d = get_preset("demo")
    run = GridRun.__new__(GridRun)   # seeds_of reads only the preset
    run.preset = d
    by_name = {c.name: c for c in cells(d)}
    for name in ("Random", "Top I", "CCI", "Top I (residues)", "CCI (residues)", "Random 10x (same steps)"):
        assert len(run.seeds_of(by_name[name])) >= 10, name
    c3 = run.seeds_of(by_name["Top I (w/o ft)"])
    assert len(c3) >= 3 and len({run.draw_of(s) for s in c3}) == len(c3) == d.grid.scoring_draws
    assert set(c3) <= set(run.seeds_of(by_name["Top I"]))            # paired with the fine-tuned arm's seeds


def test_overrides_replace_fields_and_reject_unknown_names():
    p = get_preset("smoke", {"selection.budget": 10}, seed=3)
    assert (p.selection.budget, p.seed, p.name) == (10, 3, "smoke") and PRESETS["smoke"].selection.budget != 10
    assert get_preset("smoke", selection={"strata": 7}).selection.strata == 7
    assert p.data == PRESETS["smoke"].data                       # other sections untouched
    with pytest.raises(InputError, match="unknown preset field"):
        get_preset("smoke", bugdet=10)
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("huge")


def test_device_falls_back_to_cpu_and_refuses_missing_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choose_device().type == expected
    assert choose_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            choose_device("cuda")
