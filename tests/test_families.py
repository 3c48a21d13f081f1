"""Model families (corelib.models.families): one definition of "layer i" for every family, checked against
forward hooks on the blocks themselves; the same weights in fair-esm's ESM-2 and in transformers'
EsmForMaskedLM give equal logits and equal states at every layer index; the registry answers for every family."""
from __future__ import annotations

import re

import pytest
import torch

from corelib.data import get_vocab
from corelib.data.tokens import pad_batch
from corelib.errors import InputError
from corelib.models import FAMILIES, MaskedLM, ModelSpec, build_model, get_family, load_checkpoint

# Where each family keeps its blocks and its final LayerNorm, and whether blocks run time-first: written here from
# the architectures' source, independently of the adapters.
LAYOUT = {
    "esm1b": ("layers", "emb_layer_norm_after", True),
    "esm2": ("layers", "emb_layer_norm_after", True),
    "esmc": ("esmc.layers", "esmc.norm", False),
    "hf-esm": ("esm.encoder.layer", "esm.encoder.emb_layer_norm_after", False),
    "rnafm": ("model.encoder.layer", "model.encoder.layer_norm", False),
}
MODELS = [("rna", "tiny"), ("protein", "tiny"), ("protein", "esmc-tiny"), ("protein", "hf-esm"),
          ("rna", "rnafm-hf-tiny")]


def _model(modality: str, preset: str, seed: int = 3) -> MaskedLM:
    if preset == "hf-esm":   # no preset builds one: the family builds it from a spec
        torch.manual_seed(seed)
        spec = ModelSpec("hf-esm", 2, 64, 4)
        return MaskedLM(get_family("hf-esm").build(spec, modality), "hf-esm", modality, spec)
    return build_model(modality, preset, seed=seed)


def _shake_norms(net: torch.nn.Module, seed: int = 0) -> None:
    """Random LayerNorm scales and shifts: a unit LayerNorm is idempotent, which would hide a missing one."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.LayerNorm):
                if m.weight is not None:
                    m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))


def _tokens(modality: str) -> torch.Tensor:
    v = get_vocab(modality)
    seqs = ["ACGUACGUNNACGU", "GGGAAACCCU"] if modality == "rna" else ["MKTLLVLAVLAQ", "MSTNPKPQ"]
    return torch.from_numpy(pad_batch([v.encode(s) for s in seqs], v.pad))


def _get(net, path: str):
    for part in path.split("."):
        net = getattr(net, part)
    return net


@pytest.mark.parametrize("modality, preset", MODELS)
def test_layer_i_is_the_output_of_block_i_and_layer_n_follows_the_final_layernorm(modality, preset):
    model = _model(modality, preset).eval()
    _shake_norms(model.net)
    blocks, final, time_first = LAYOUT[model.family.name]
    seen, inputs = {}, {}
    handles = [b.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o[0] if isinstance(o, tuple) else o))
               for k, b in enumerate(_get(model.net, blocks))]
    handles.append(_get(model.net, blocks)[0].register_forward_pre_hook(
        lambda m, args, kwargs: inputs.__setitem__(0, args[0] if args else next(iter(kwargs.values()))),
        with_kwargs=True))
    x = _tokens(modality)
    n = model.n_layers
    with torch.no_grad():
        states, _ = model.states(x, range(n + 1))
        logits = model(x)
    for h in handles:
        h.remove()
    batch_first = (lambda t: t.transpose(0, 1)) if time_first else (lambda t: t)
    real = (x != model.vocab.pad)[..., None]
    close = lambda a, b: torch.testing.assert_close(a * real, b * real, rtol=1e-5, atol=1e-5)  # noqa: E731
    close(states[:, 0], batch_first(inputs[0]))
    for i in range(1, n):
        close(states[:, i], batch_first(seen[i - 1]))
    with torch.no_grad():
        close(states[:, n], _get(model.net, final)(batch_first(seen[n - 1])))
        close(model.encode(x), states[:, n])
    assert logits.shape[:2] == x.shape


def _fair_to_hf(state: dict) -> dict:
    """fair-esm ESM-2 parameter names -> transformers EsmForMaskedLM names (the public conversion's mapping)."""
    rules = [(r"^embed_tokens\.", "esm.embeddings.word_embeddings."),
             (r"^layers\.(\d+)\.self_attn\.q_proj\.", r"esm.encoder.layer.\1.attention.self.query."),
             (r"^layers\.(\d+)\.self_attn\.k_proj\.", r"esm.encoder.layer.\1.attention.self.key."),
             (r"^layers\.(\d+)\.self_attn\.v_proj\.", r"esm.encoder.layer.\1.attention.self.value."),
             (r"^layers\.(\d+)\.self_attn\.out_proj\.", r"esm.encoder.layer.\1.attention.output.dense."),
             (r"^layers\.(\d+)\.self_attn_layer_norm\.", r"esm.encoder.layer.\1.attention.LayerNorm."),
             (r"^layers\.(\d+)\.fc1\.", r"esm.encoder.layer.\1.intermediate.dense."),
             (r"^layers\.(\d+)\.fc2\.", r"esm.encoder.layer.\1.output.dense."),
             (r"^layers\.(\d+)\.final_layer_norm\.", r"esm.encoder.layer.\1.LayerNorm."),
             (r"^emb_layer_norm_after\.", "esm.encoder.emb_layer_norm_after."),
             (r"^contact_head\.", "esm.contact_head."),
             (r"^lm_head\.weight$", "lm_head.decoder.weight")]
    out = {}
    for key, value in state.items():
        if "rot_emb" in key:
            continue
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def test_fair_esm_esm2_and_transformers_esm_give_equal_logits_and_states_at_every_layer(tmp_path):
    fair = build_model("protein", "tiny", seed=5).eval()
    _shake_norms(fair.net, 1)
    spec = ModelSpec("hf-esm", **{k: v for k, v in fair.spec.items() if k != "family"})
    hf_net = get_family("hf-esm").build(spec, "protein")
    missing, unexpected = hf_net.load_state_dict(_fair_to_hf(fair.net.state_dict()), strict=False)
    assert not unexpected and all("inv_freq" in k for k in missing)
    hf_net.save_pretrained(tmp_path / "esm2")
    hf = load_checkpoint(tmp_path / "esm2", "protein").eval()
    assert hf.family.name == "hf-esm" and hf.spec["layers"] == fair.spec["layers"]
    x = _tokens("protein")
    x[0, 3] = fair.vocab.mask       # token dropout rescales by the masked share: both implement it
    real = (x != fair.vocab.pad)[..., None]
    with torch.no_grad():
        torch.testing.assert_close(hf(x) * real, fair(x) * real, rtol=1e-5, atol=1e-5)
        layers = range(fair.n_layers + 1)
        (a, maps_a), (b, maps_b) = hf.states(x, layers, attention=True), fair.states(x, layers, attention=True)
    for i in layers:
        torch.testing.assert_close(a[:, i] * real, b[:, i] * real, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps_a, maps_b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("modality, preset", MODELS)
def test_sdpa_and_eager_attention_give_the_same_logits(modality, preset):
    model = _model(modality, preset).eval()
    x = _tokens(modality)
    with torch.no_grad():
        sdpa = model(x)
        model.attention = "eager"
        eager = model(x)
    real = (x != model.vocab.pad)[..., None]
    torch.testing.assert_close(sdpa * real, eager * real, rtol=1e-5, atol=1e-5)


def test_the_registry_names_every_family_once_and_refuses_unknown_ones():
    assert set(FAMILIES) == set(LAYOUT)
    assert len({c for f in FAMILIES.values() for c in f.hf_classes}) == sum(len(f.hf_classes) for f in FAMILIES.values())
    with pytest.raises(InputError, match=r"unknown model family 'bert'; known: esm1b, esm2"):
        get_family("bert")
    with pytest.raises(InputError, match="layer 3 of a 2-layer model"):
        build_model("rna", "tiny").states(_tokens("rna"), [3])


def test_no_module_outside_the_families_branches_on_a_family_name():
    """The adapters answer every question: nothing else compares a family name or a model's class name."""
    from pathlib import Path

    import corelib

    root = Path(corelib.__file__).parent
    names = "|".join(map(re.escape, FAMILIES))
    pattern = re.compile(rf"""(==|!=|\bin\b)\s*\(?\s*["']({names})["']|["']({names})["']\s*(==|!=)|\.kind\s*==\s*["']hf""")
    offenders = [f"{p.relative_to(root)}:{k + 1}" for p in root.rglob("*.py") if "families" not in p.parts
                 for k, line in enumerate(p.read_text().splitlines()) if pattern.search(line)]
    assert offenders == []


def test_without_the_optional_extra_everything_but_rnafm_works(tmp_path):
    """The default install has no multimolecule: ESM-C, ESM-2 and RNA-FM's fair-esm layout build, run, save and
    load; the multimolecule family is one line naming the extra."""
    import subprocess
    import sys

    code = """
import sys, torch
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'multimolecule':
            raise ImportError('blocked')
sys.meta_path.insert(0, Block())
from corelib.errors import InputError
from corelib.models import build_model, load_checkpoint, save_checkpoint
for modality, preset in [('protein', 'esmc-tiny'), ('protein', 'tiny'), ('rna', 'tiny')]:
    m = build_model(modality, preset).eval()
    x = torch.tensor([[0, 5, 6, 7, 2]])
    back = load_checkpoint(save_checkpoint(m, sys.argv[1] + '/m.pt'), modality).eval()
    assert torch.equal(m(x), back(x))
try:
    build_model('rna', 'rnafm-hf-tiny')
except InputError as exc:
    print(exc)
assert 'multimolecule' not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ("RNA-FM as a Hugging Face model needs the optional package multimolecule "
                                  "(pip install 'corelib[rnafm-hf]')")
