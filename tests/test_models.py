"""corelib.models: presets, and local checkpoints (ours, RNA-FM's fairseq .pth, fair-esm ESM-2 .pt, a
Hugging Face folder) load to the same function as the packages' own loaders; bad files are one line."""
from __future__ import annotations

import argparse

import pytest
import torch

from corelib.data import get_vocab
from corelib.errors import InputError
from corelib.models import build_model, load_checkpoint, save_checkpoint


def _tokens(modality):
    v = get_vocab(modality)
    seqs = ["ACGUACGUNNACGU", "GGGAAACCCU"] if modality == "rna" else ["MKTLLVLAVL", "MSTNPKPQRKTK"]
    rows = [v.encode(s) for s in seqs]
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), v.pad)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.from_numpy(r)
    return out


def test_presets_have_the_rna_fm_architecture():
    model = build_model("rna", "paper")
    net = model.net
    assert (len(net.layers), net.args.embed_dim, net.args.attention_heads, net.args.ffn_embed_dim) == (12, 640, 20, 5120)
    assert net.embed_positions.num_embeddings == 1024 + net.padding_idx + 1        # learned positions
    assert list(model.vocab.tokens) == list(get_vocab("rna").tokens)
    assert sum(p.numel() for p in net.parameters()) > 90e6


@pytest.mark.parametrize("modality", ["rna", "protein"])
def test_own_checkpoint_round_trips(modality, tmp_path):
    model = build_model(modality, "tiny", seed=4)
    path = save_checkpoint(model, tmp_path / "m.pt")
    back = load_checkpoint(path, modality)
    x = _tokens(modality)
    assert torch.equal(model(x), back(x))
    with pytest.raises(InputError, match="a rna model" if modality == "rna" else "a protein model"):
        load_checkpoint(path, "protein" if modality == "rna" else "rna")


def test_rna_fm_fairseq_checkpoint_loads_like_the_rna_fm_package(tmp_path):
    """A file in RNA-FM_pretrained.pth's layout (fairseq args + 'encoder.sentence_encoder.' keys)."""
    import fm

    src = build_model("rna", "tiny", seed=5)
    args = argparse.Namespace(arch="roberta_large", encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=256,
                              encoder_attention_heads=4, max_positions=1024)
    state = {(f"encoder.{k}" if k.startswith("lm_head") else f"encoder.sentence_encoder.{k}"): v
             for k, v in src.net.state_dict().items() if not k.startswith("contact_head")}
    path = tmp_path / "RNA-FM_pretrained.pth"
    torch.save({"args": args, "model": state}, path)
    ours = load_checkpoint(path, "rna")
    torch.serialization.add_safe_globals([argparse.Namespace])
    theirs, _ = fm.pretrained.load_model_and_alphabet_local(str(path), theme="rna")
    x = _tokens("rna")
    assert ours.attention == "sdpa"                     # the SDPA core, on the checkpoint's own parameters
    assert torch.allclose(ours(x), theirs.eval()(x)["logits"], atol=1e-5)
    # both loaders zero the <mask> embedding (tied to the output layer); every other logit is the source's
    keep = [i for i in range(len(get_vocab("rna"))) if i != get_vocab("rna").mask]
    assert torch.allclose(ours(x)[..., keep], src(x)[..., keep], atol=1e-5)


def test_fair_esm_esm2_checkpoint_loads_like_fair_esm(tmp_path):
    import esm

    src = build_model("protein", "tiny", seed=6)
    cfg = argparse.Namespace(encoder_layers=2, encoder_embed_dim=64, encoder_attention_heads=4, token_dropout=True)
    state = {f"encoder.sentence_encoder.{k}": v for k, v in src.net.state_dict().items()
             if not k.startswith("contact_head")}
    path = tmp_path / "esm2_t2_tiny.pt"
    torch.save({"cfg": {"model": cfg}, "model": state}, path)
    torch.save({"model": {f"contact_head.{k}": v for k, v in src.net.contact_head.state_dict().items()}},
               tmp_path / "esm2_t2_tiny-contact-regression.pt")
    ours = load_checkpoint(path, "protein")
    torch.serialization.add_safe_globals([argparse.Namespace])
    theirs, _ = esm.pretrained.load_model_and_alphabet_local(str(path))
    x = _tokens("protein")
    assert ours.attention == "sdpa"
    assert torch.allclose(ours(x), theirs.eval()(x)["logits"], atol=1e-5)


def test_hugging_face_masked_lm_folder_loads_offline(tmp_path):
    from transformers import EsmConfig, EsmForMaskedLM

    v = get_vocab("protein")
    net = EsmForMaskedLM(EsmConfig(vocab_size=len(v), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64, pad_token_id=v.pad, mask_token_id=v.mask,
                                   max_position_embeddings=1026))
    net.save_pretrained(tmp_path / "hf")
    model = load_checkpoint(tmp_path / "hf", "protein")
    x = _tokens("protein")
    expected = net.eval()(input_ids=x, attention_mask=(x != v.pad).long()).logits
    assert torch.allclose(model(x), expected, atol=1e-6)
    with pytest.raises(InputError, match=r"mask_token_id 32 in its config, but corelib's rna vocabulary has '<mask>' at 24"):
        load_checkpoint(tmp_path / "hf", "rna")


@pytest.mark.parametrize("setup, match", [
    (lambda p: None, "checkpoint not found"),
    (lambda p: p.write_bytes(b"garbage"), "not a readable torch checkpoint"),
    (lambda p: torch.save({"weights": 1}, p), "unrecognised checkpoint layout"),
    (lambda p: p.mkdir(), "no config.json"),
])
def test_bad_checkpoints_are_one_clear_error(tmp_path, setup, match):
    path = tmp_path / "ckpt.pt"
    setup(path)
    with pytest.raises(InputError, match=match):
        load_checkpoint(path, "rna")


def test_mismatched_weights_are_named(tmp_path):
    small = build_model("rna", "small")
    data = torch.load(save_checkpoint(small, tmp_path / "s.pt"), weights_only=True)
    data["corelib_spec"] = dict(small.spec, embed_dim=64, heads=4, ffn_dim=256)   # same keys, other shapes
    torch.save(data, tmp_path / "shape.pt")
    with pytest.raises(InputError, match="has shape"):
        load_checkpoint(tmp_path / "shape.pt", "rna")
    data["corelib_spec"] = build_model("rna", "tiny").spec                         # fewer layers: extra keys
    torch.save(data, tmp_path / "keys.pt")
    with pytest.raises(InputError, match="does not match the esm1b architecture"):
        load_checkpoint(tmp_path / "keys.pt", "rna")
