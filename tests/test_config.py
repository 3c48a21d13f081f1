"""corelib.config: presets (paper = Appendix A), overrides, device choice with CPU fallback."""
from __future__ import annotations

import pytest
import torch

from corelib.config import PRESETS, choose_device, get_preset
from corelib.errors import InputError


def test_paper_preset_holds_appendix_a_values():
    p = get_preset("paper")
    assert (p.batch_size, p.mask_prob, p.ft_lr, p.ft_weight_decay, p.ft_warmup_steps, p.ft_epochs) == \
        (16, 0.15, 1e-5, 0.01, 50, 1)                                           # A.5
    assert (p.pretrain_lr, p.pretrain_weight_decay, p.pretrain_warmup_steps, p.pretrain_epochs) == \
        (1e-4, 0.01, 2000, 10)                                                  # A.3 / A.4
    assert (p.hard_cutoff, p.strata, p.budget, p.subset_size, p.seed, p.seeds) == \
        (0.05, 50, 200_000, 200_000, 0, (0, 1, 2))                             # A.1, Section 4, A.6, B.3
    assert p.max_tokens == 1024


def test_overrides_replace_fields_and_reject_unknown_names():
    p = get_preset("smoke", budget=10, seed=3)
    assert (p.budget, p.seed, p.name) == (10, 3, "smoke") and PRESETS["smoke"].budget != 10
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
