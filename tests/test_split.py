"""The held-out split by clusters (corelib.experiment.heldout, MMseqs2): planted families of near-identical
sequences are held out whole, a sequence that carries an evaluated window inside unrelated flanks is excluded too,
nothing excluded is left to train on, and the per-arm audit finds a copy when one is put back."""
from __future__ import annotations

import numpy as np
import pytest

from corelib.data.store import token_store
from corelib.experiment.heldout import copies_in, ensure_heldout

pytestmark = pytest.mark.apt   # MMseqs2 comes from the Debian package


def _mutate(seq: str, rng, rate: float) -> str:
    return "".join(rng.choice(list("ACGU")) if rng.random() < rate else c for c in seq)


@pytest.fixture
def planted(tmp_path):
    """Source A: 30 families of 4 near-identical 100-nt RNAs (2% point mutations); source B: 60 unrelated
    100-nt RNAs; source C: for each family, a 300-nt carrier holding member 0 exactly between random flanks."""
    rng = np.random.default_rng(0)
    rows, family = [], {}
    for f in range(30):
        base = "".join(rng.choice(list("ACGU"), 100))
        for m in range(4):
            rows.append((f"a{f}_{m}", "A", base if m == 0 else _mutate(base, rng, 0.02)))
            family[f"a{f}_{m}"] = f
        flank = lambda: "".join(rng.choice(list("ACGU"), 100))  # noqa: E731
        rows.append((f"carrier{f}", "C", flank() + base + flank()))
    rows += [(f"b{k}", "B", "".join(rng.choice(list("ACGU"), 100))) for k in range(60)]
    order = rng.permutation(len(rows))
    rows = [rows[k] for k in order]
    path = tmp_path / "pool.fa"
    path.write_text("".join(f">{i} source={s}\n{q}\n" for i, s, q in rows))
    return path, rows, family


def test_held_out_clusters_and_planted_copies_never_reach_training(planted, tmp_path):
    path, rows, family = planted
    held = ensure_heldout(tmp_path / "held", path, "rna", len(rows), 130)
    ids = [r[0] for r in rows]
    excluded = set(held.excluded.tolist())
    evaluated = held.table["id"].tolist()
    assert {held.table["source"].tolist().count(s) for s in "AB"} <= {2, 3, 6}   # quotas: ceil(5%)
    assert any(item in family for item in evaluated)
    for item in evaluated:
        if item in family:   # its whole family, and the carrier that holds a (near) copy of it inside its flanks
            members = [k for k, i in enumerate(ids) if family.get(i) == family[item]]
            assert set(members) <= excluded, item
            assert ids.index(f"carrier{family[item]}") in excluded, item
    assert not excluded & set(held.train_indices().tolist())
    assert set(held.train_indices().tolist()) | excluded == set(range(len(rows)))
    store = token_store(path, "rna", progress=False)
    assert copies_in(store, held, held.train_indices(), 130) == {"exact": 0, "near": 0}
    leak = [ids.index(i) for i in evaluated[:1]]                      # put an evaluated sequence back: the audit sees it
    assert copies_in(store, held, np.concatenate([held.train_indices(), leak]), 130)["exact"] == 1
    again = ensure_heldout(tmp_path / "held", path, "rna", len(rows), 130)   # read back, not recomputed
    assert again.table.equals(held.table) and np.array_equal(again.excluded, held.excluded)
