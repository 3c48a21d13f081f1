"""ESM-C as transformers' EsmcForMaskedLM and RNA-FM as multimolecule's RnaFmForMaskedLM (an optional extra):
presets driven by corelib's token ids, .pt and Hugging Face folder round trips, the vocabulary contract (a real
ESM-C layout accepted, other ids refused), the per-sample rule of multimolecule's LM head and self-influence
against a batch-size-1 autograd oracle, and the CLI on the tiny ESM-C."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from corelib.data import get_vocab, load_pool, mlm_batches, tokenize
from corelib.data.tokens import pad_batch
from corelib.errors import InputError
from corelib.influence import diagonal_fisher, self_influence
from corelib.influence.hooks import PerSampleGradients, scope_params
from corelib.influence.rules import RULES, DecoderBiasAliasRule, LinearRule, find_rule
from corelib.models import (
    MODEL_PRESETS,
    MaskedLM,
    build_model,
    get_family,
    load_checkpoint,
    per_sequence_loss,
    save_checkpoint,
)

TINY = [("protein", "esmc-tiny"), ("rna", "rnafm-hf-tiny")]
DAMPING = 1e-3


def _needs(preset):
    if preset.startswith("rnafm"):
        pytest.importorskip("multimolecule", reason="RNA-FM as a Hugging Face model is the optional rnafm-hf extra")


def _net(modality, preset):
    spec = MODEL_PRESETS[(modality, preset)]
    return get_family(spec.family).build(spec, modality)


def _tokens(modality):
    v = get_vocab(modality)
    seqs = ["ACGUACGUNNACGU", "GGGAAACCCU"] if modality == "rna" else ["MKTLLVLAVL", "MSTNPKPQRKTK"]
    return torch.from_numpy(pad_batch([v.encode(s) for s in seqs], v.pad))


# ----------------------------------------------------------------------------- presets
def test_esmc_tiny_is_transformers_esmc_laid_out_as_released_checkpoints():
    from transformers import EsmcForMaskedLM

    model = build_model("protein", "esmc-tiny", seed=0).eval()
    v = get_vocab("protein")
    assert type(model.net) is EsmcForMaskedLM and model.family.name == "esmc"
    cfg = model.net.config
    assert (cfg.vocab_size, cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id, cfg.mask_token_id) == \
           (64, v.pad, v.cls, v.eos, v.mask)
    assert cfg._attn_implementation == "sdpa"
    x = _tokens("protein")
    with torch.no_grad():
        logits, states = model(x), model.encode(x)
        stock = model.net(input_ids=x, attention_mask=(x != v.pad).long())
    assert logits.shape == (2, x.shape[1], 64) and states.shape == (2, x.shape[1], 64)
    assert torch.equal(logits, stock.logits)
    assert model.spec == {"family": "esmc", "layers": 2, "embed_dim": 64, "heads": 4, "ffn_dim": 256}


def test_rnafm_hf_tiny_is_multimolecule_rnafm_on_our_vocabulary():
    mm = pytest.importorskip("multimolecule", reason="the optional rnafm-hf extra")
    model = build_model("rna", "rnafm-hf-tiny", seed=0).eval()
    v = get_vocab("rna")
    assert type(model.net) is mm.RnaFmForMaskedLM and model.family.name == "rnafm"
    cfg = model.net.config
    assert (cfg.vocab_size, cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id, cfg.mask_token_id) == \
           (len(v), v.pad, v.cls, v.eos, v.mask)
    assert model.net.model.embeddings.word_embeddings.padding_idx == v.pad
    x = _tokens("rna")
    with torch.no_grad():   # the head through its decoder Linear = the model's own forward
        assert torch.equal(model(x), model.net(input_ids=x, attention_mask=(x != v.pad).long()).logits)


def test_paper_protein_preset_is_the_esm_c_600m_architecture():
    """ESM-C 600M: 36 layers, 1152 wide, 18 heads, SwiGLU 3072; 300M: 30 / 960 / 15, 2560 (the released
    checkpoints' configs). Built on the meta device: no 575M-parameter allocation."""
    assert MODEL_PRESETS[("protein", "paper")] == MODEL_PRESETS[("protein", "esmc-600m")]
    for preset, numbers, size in [("esmc-600m", (36, 1152, 18, 3072), 575e6), ("esmc-300m", (30, 960, 15, 2560), 333e6)]:
        with torch.device("meta"):
            net = _net("protein", preset)
        cfg = net.config
        assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == numbers
        assert cfg.hidden_act == "silu" and not cfg.tie_word_embeddings and cfg.vocab_size == 64
        assert abs(sum(p.numel() for p in net.parameters()) - size) < 0.005 * size
    assert MODEL_PRESETS[("protein", "esm2-650m")].family == "esm2"


def test_rnafm_hf_preset_has_the_rna_fm_architecture():
    pytest.importorskip("multimolecule", reason="the optional rnafm-hf extra")
    with torch.device("meta"):
        hf, esm = _net("rna", "rnafm-hf"), _net("rna", "paper")
    cfg = hf.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (12, 640, 20, 5120)
    assert cfg.position_embedding_type == "absolute" and cfg.hidden_dropout == 0.0 and not cfg.token_dropout
    count = [sum(p.numel() for p in net.parameters()) for net in (hf, esm)]
    assert abs(count[0] - count[1]) < 1000          # the same network as the fair-esm RNA-FM layout


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("modality, preset", TINY)
def test_checkpoint_and_folder_round_trips_give_identical_logits(modality, preset, tmp_path):
    _needs(preset)
    model = build_model(modality, preset, seed=4).eval()
    x = _tokens(modality)
    back = load_checkpoint(save_checkpoint(model, tmp_path / "m.pt"), modality)
    assert back.spec == model.spec and back.family is model.family and back.attention == "sdpa"
    assert torch.equal(model(x), back.eval()(x))
    model.net.save_pretrained(tmp_path / "hf")
    folder = load_checkpoint(tmp_path / "hf", modality).eval()
    assert folder.spec == model.spec and folder.net.config._attn_implementation == "sdpa"
    assert torch.equal(model(x), folder(x))
    again = load_checkpoint(save_checkpoint(folder, tmp_path / "f.pt"), modality)   # a loaded folder saves too
    assert torch.equal(model(x), again.eval()(x))
    other = "rna" if modality == "protein" else "protein"
    with pytest.raises(InputError, match=f"a {modality} model"):
        load_checkpoint(tmp_path / "m.pt", other)
    with pytest.raises(InputError, match="does not remap embedding rows"):
        load_checkpoint(tmp_path / "hf", other)


def test_a_real_esm_c_folder_with_its_64_rows_and_own_tokenizer_loads(tmp_path):
    """ESM-C as users get it: EsmcConfig's 64-row vocabulary and EsmcTokenizer's 33 sequence tokens, the chain
    break `|` at id 31 where fair-esm has <null_1>: every id corelib feeds holds corelib's token, so it loads."""
    from transformers import EsmcConfig, EsmcForMaskedLM, EsmcTokenizer

    torch.manual_seed(0)
    net = EsmcForMaskedLM(EsmcConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128)).eval()
    net.save_pretrained(tmp_path / "esmc")
    tokenizer = EsmcTokenizer()
    tokenizer.save_pretrained(tmp_path / "esmc")
    assert tokenizer.convert_ids_to_tokens(31) == "|" and get_vocab("protein").tokens[31] == "<null_1>"
    model = load_checkpoint(tmp_path / "esmc", "protein").eval()
    assert model.family.name == "esmc" and model.net.config.vocab_size == 64
    x = _tokens("protein")
    ids = tokenizer(["MKTLLVLAVL", "MSTNPKPQRKTK"], padding=True, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, x)                                   # their tokenizer gives our ids
    with torch.no_grad():
        assert torch.equal(model(x), net(input_ids=x, attention_mask=(x != 1).long()).logits)


def test_a_folder_with_other_ids_is_refused_in_one_line(tmp_path):
    """corelib feeds its own ids and never remaps embedding rows: a tokenizer with another token at a fed id,
    or a config whose special-token ids differ, is refused, saying which id and why."""
    model = build_model("protein", "esmc-tiny")
    model.net.save_pretrained(tmp_path / "tok")
    theirs = ["<pad>", "<cls>", *get_vocab("protein").tokens[2:]]        # <pad> and <cls> swapped
    (tmp_path / "tok" / "vocab.txt").write_text("\n".join(theirs))
    with pytest.raises(InputError) as err:
        load_checkpoint(tmp_path / "tok", "protein")
    assert "\n" not in str(err.value)
    assert "'<pad>' at id 0" in str(err.value) and "does not remap embedding rows" in str(err.value)

    model.net.save_pretrained(tmp_path / "ids")
    cfg = json.loads((tmp_path / "ids" / "config.json").read_text())
    (tmp_path / "ids" / "config.json").write_text(json.dumps(dict(cfg, pad_token_id=0, bos_token_id=1)))
    with pytest.raises(InputError, match=r"pad_token_id 0 in its config, but corelib's protein vocabulary has '<pad>' at 1"):
        load_checkpoint(tmp_path / "ids", "protein")

    (tmp_path / "same").mkdir()
    model.net.save_pretrained(tmp_path / "same")
    (tmp_path / "same" / "vocab.txt").write_text("\n".join(get_vocab("protein").tokens))   # ours: accepted
    assert load_checkpoint(tmp_path / "same", "protein").family.name == "esmc"


def test_an_unknown_hugging_face_class_is_one_line(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(vocab_size=33, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64)).save_pretrained(tmp_path / "bert")
    with pytest.raises(InputError, match=r"a BertForMaskedLM folder; corelib drives the masked LMs .*EsmcForMaskedLM"):
        load_checkpoint(tmp_path / "bert", "protein")


# ----------------------------------------------------------------------------- per-sample rules
def _loss(out: torch.Tensor) -> torch.Tensor:
    """A nonlinear per-example loss (B,) of an output (B, ...), fixed random weights (as tests/test_rules.py)."""
    w = torch.randn(out.shape[1:], generator=torch.Generator().manual_seed(11))
    return (torch.sin(out) * w).flatten(1).sum(1)


class _Head(nn.Module):
    """The LM head as MaskedLM runs it: through its decoder Linear (head_logits)."""

    def __init__(self, head):
        super().__init__()
        self.lm_head = head

    def forward(self, h):
        from corelib.models.families.multimolecule import head_logits

        return head_logits(self.lm_head, h)


def _per_sample(module, params, x):
    got = {}
    with PerSampleGradients(module, params, lambda n, g: got.__setitem__(n, g.clone())) as psg:
        _loss(module(x)).sum().backward()
        psg.flush()
    return got


def _oracle(module, params, x):
    rows = [torch.autograd.grad(_loss(module(x[i : i + 1])).sum(), list(params.values())) for i in range(len(x))]
    return {n: torch.stack([r[j] for r in rows]) for j, n in enumerate(params)}


def test_multimolecule_lm_head_rule_matches_batch_size_1_autograd():
    """MaskedLMHead: its bias is its decoder's bias (tied); the decoder's LinearRule forms both, the head's
    alias rule adds nothing (a second delivery would double the bias gradient)."""
    pytest.importorskip("multimolecule", reason="the optional rnafm-hf extra")
    from multimolecule.modules import MaskedLMHead

    torch.manual_seed(5)
    head = _net("rna", "rnafm-hf-tiny").lm_head
    assert isinstance(head, MaskedLMHead) and head.decoder.bias is head.bias
    assert type(find_rule(head)) is DecoderBiasAliasRule and type(find_rule(head.decoder)) is LinearRule
    with torch.no_grad():
        head.bias.normal_()
    module, x = _Head(head), torch.randn(4, 5, 64)
    params = dict(module.named_parameters())
    assert set(params) == {"lm_head.bias", "lm_head.transform.dense.weight", "lm_head.transform.dense.bias",
                           "lm_head.transform.layer_norm.weight", "lm_head.transform.layer_norm.bias",
                           "lm_head.decoder.weight"}
    got, want = _per_sample(module, params, x), _oracle(module, params, x)
    assert set(got) == set(params)
    for n in params:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-6)   # fp32 sums in another order


@pytest.mark.parametrize("modality, preset", TINY)
def test_every_scored_layer_of_the_models_has_a_rule(modality, preset):
    _needs(preset)
    model = build_model(modality, preset)
    owners = {type(m).__name__ for m in model.modules() if any(True for _ in m.parameters(recurse=False))}
    assert owners <= {"Linear", "LayerNorm", "EsmcLayerNorm", "Embedding", "MaskedLMHead"}
    assert all(find_rule(m) is not None for m in model.modules() if any(True for _ in m.parameters(recurse=False)))


def test_without_the_head_rule_the_head_is_a_one_line_input_error(monkeypatch):
    pytest.importorskip("multimolecule", reason="the optional rnafm-hf extra")
    model = build_model("rna", "rnafm-hf-tiny")
    monkeypatch.delitem(RULES, "MaskedLMHead")
    with pytest.raises(InputError, match=r"^no per-sample gradient rule for MaskedLMHead module 'net.lm_head' "
                                         r"\(scored parameter net.lm_head.bias\)"):
        PerSampleGradients(model, scope_params(model, "all"), lambda n, g: None)
    monkeypatch.undo()
    model.net.lm_head.decoder.bias = nn.Parameter(torch.zeros(len(get_vocab("rna"))))   # untied: refused
    with pytest.raises(InputError, match="not its decoder Linear's bias"):
        PerSampleGradients(model, scope_params(model, "all"), lambda n, g: None)
    with pytest.raises(InputError, match="untied head"):
        MaskedLM(model.net, "rnafm", "rna", model.spec)


# ----------------------------------------------------------------------------- self-influence vs the oracle
def _pool_tokens(modality, n=8, max_tokens=60):
    pool = load_pool(f"{modality}_demo", modality, limit=n)
    return tokenize(pool["seq"], modality, max_tokens), np.arange(n)


def _influence_oracle(model, tokens, idx, scope):
    """One sequence at a time: torch.autograd.grad of its MLM loss over the scoped parameters (float64
    products), then F = mean g^2 (Eq. 9) and g^T (diag F + lambda)^-1 g (Eq. 11)."""
    params = scope_params(model, scope)
    model.eval()
    grads, order = [], []
    for inputs, labels, b_idx in mlm_batches(tokens, idx, 1, model.vocab, mask_seed=0):
        loss = per_sequence_loss(model(inputs), labels).sum()
        g = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        grads.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten().double()
                                for gi, p in zip(g, params.values())]))
        order.append(int(b_idx[0]))
    G = torch.stack(grads)[np.argsort(order)]
    fisher = G.square().mean(0)
    return fisher, (G.square() / (fisher + DAMPING)).sum(1).numpy()


@pytest.mark.parametrize("modality, preset", TINY)
def test_self_influence_matches_the_batch_size_1_autograd_oracle(modality, preset):
    _needs(preset)
    model = build_model(modality, preset, seed=1)
    tokens, idx = _pool_tokens(modality)
    fisher, _ = diagonal_fisher(model, mlm_batches(tokens, idx, 3, model.vocab, mask_seed=0), "all")
    got = np.zeros(len(idx))
    for b_idx, scores, _, groups in self_influence(model, mlm_batches(tokens, idx, 3, model.vocab, mask_seed=0),
                                                   fisher, DAMPING, "all"):
        got[b_idx] = scores
        assert np.allclose(np.sum(list(groups.values()), axis=0), scores)
    f_oracle, s_oracle = _influence_oracle(model, tokens, idx, "all")
    names = list(scope_params(model, "all"))
    assert set(fisher) == set(names)                  # every parameter, the tied ones once
    f_ours = torch.cat([fisher[n].flatten().double() for n in names])
    assert torch.allclose(f_ours, f_oracle, rtol=1e-5, atol=1e-6 * float(f_oracle.max()))
    np.testing.assert_allclose(got, s_oracle, rtol=1e-6)


# ----------------------------------------------------------------------------- CLI
def test_model_names_are_in_the_help(cli):
    status, out, _ = cli("score", "--help")
    assert status == 0
    text = " ".join(out.split())
    for name in ("esmc-tiny", "esmc-600m", "esmc-300m", "esm2-650m", "rnafm-hf-tiny", "rnafm-hf"):
        assert name in text


@pytest.mark.slow
def test_cli_scores_and_pretrains_with_esmc_tiny_on_cpu(cli, tmp_path):
    status, _, err = cli("score", "--fasta", "protein_demo", "--modality", "protein", "--model", "esmc-tiny",
                         "--limit", 16, "--subset-size", 8, "--out", tmp_path / "x", "--device", "cpu")
    assert status == 0, err
    import pandas as pd

    scores = pd.read_parquet(tmp_path / "x" / "scores.parquet")
    assert len(scores) == 16
    status, _, err = cli("pretrain", "--fasta", "protein_demo", "--modality", "protein", "--model", "esmc-tiny",
                         "--limit", 16, "--epochs", 1, "--out", tmp_path / "y")
    assert status == 0, err
    model = load_checkpoint(tmp_path / "y" / "model.pt", "protein")
    assert model.spec["family"] == "esmc" and model.family.name == "esmc"
