"""fair-esm's architectures (A.2): the ESM-1b layout that RNA-FM uses (`ProteinBertModel`, also RNA-FM's `.pth`)
and ESM-2 (`ESM2`, fair-esm's `.pt`). Their transformer layers run time-first (T, B, C) with fair-esm's attention
module swapped for its SDPA subclass (`corelib.models.attention`), q/k/v/out kept as hooked `nn.Linear`s.
"""
from __future__ import annotations

import argparse
import re

from corelib.models.attention import configure as configure_attention
from corelib.models.attention import install as install_attention
from corelib.models.families.base import Family, ModelSpec, torch_load

MAX_POSITIONS = 1024
_PREFIX = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")


def alphabet(modality: str):
    """fair-esm's Alphabet of a modality (A.2): rna-fm's RNA alphabet, or fair-esm's ESM-1b protein one."""
    if modality == "rna":
        import fm

        return fm.Alphabet.from_architecture("ESM-1b", "rna")
    import esm

    return esm.Alphabet.from_architecture("ESM-1b")


def strip_prefix(state: dict) -> dict:
    """A fairseq state dict with its `encoder.sentence_encoder.` / `encoder.` prefixes removed (A.2)."""
    return {_PREFIX.sub("", k): v for k, v in state.items()}


class FairEsm(Family):
    """Shared by both fair-esm layouts: time-first layers, `repr_layers` / `need_head_weights` (A.2)."""

    time_first = ("net.layers.", "net.emb_layer_norm_after")
    optional_keys = frozenset({"contact_head.regression.weight", "contact_head.regression.bias"})

    def prepare(self, net):
        """fair-esm's attention modules become their SDPA subclass (parameters and names unchanged), and their
        eager path stays unfused: torch's fused attention would read q/k/v's weights without calling the hooked
        Linear modules (A.2)."""
        for module in net.modules():
            if hasattr(module, "enable_torch_version"):
                module.enable_torch_version = False
        install_attention(net)

    def logits(self, model, tokens):
        """fair-esm's forward: logits of the LM head (Section 3.2)."""
        return model.net(tokens)["logits"]

    def states(self, model, tokens, layers, attention=False):
        """fair-esm's `repr_layers` (its layer n is taken after `emb_layer_norm_after`, as base.py defines) and
        `need_head_weights` maps (B, n, heads, T, T), pad positions zeroed (Section 4.2)."""
        out = model.net(tokens, repr_layers=list(layers), need_head_weights=attention)
        return {k: out["representations"][k] for k in layers}, (out["attentions"] if attention else None)

    def set_attention(self, net, mode):
        """SDPA or fair-esm's own unfused attention (A.2)."""
        configure_attention(net, attention=mode)

    def set_attend_padding(self, net, value):
        """Drop the key padding mask (the official bio-coreset model file) or keep it (A.2)."""
        configure_attention(net, attend_padding=value)


class Esm1b(FairEsm):
    """RNA-FM's layout (ESM-1b: learned positions, embedding LayerNorm before the blocks), from fair-esm (A.2)."""

    name = "esm1b"

    def build(self, spec, modality):
        """fair-esm's ProteinBertModel of `spec` on corelib's vocabulary (RNA-FM: 12 x 640, FFN 5120) (A.2)."""
        from esm.model.esm1 import ProteinBertModel

        args = argparse.Namespace(arch="roberta_large", layers=spec.layers, embed_dim=spec.embed_dim,
                                  ffn_embed_dim=spec.ffn_dim, attention_heads=spec.heads,
                                  max_positions=MAX_POSITIONS, emb_layer_norm_before=True, token_dropout=False)
        return ProteinBertModel(args, alphabet(modality))

    def reads(self, data):
        """A fairseq v1 file: RNA-FM's `.pth` and fair-esm's ESM-1b `.pt` (`args` and `model`) (A.2)."""
        return "args" in data and "model" in data

    def from_native(self, data, modality, source):
        """RNA-FM / ESM-1b as their own loaders build them: token dropout from the file's args, no embedding
        LayerNorm when the file has none, the <mask> rows of the tied embedding zeroed (A.2)."""
        args = {re.sub(r"^encoder_", "", k): v for k, v in vars(data["args"]).items()}
        state = strip_prefix(data["model"])
        spec = ModelSpec(self.name, args["layers"], args["embed_dim"], args["attention_heads"], args["ffn_embed_dim"])
        net = self.build(spec, modality)
        net.args.token_dropout = bool(args.get("token_dropout", False))
        if not any(k.startswith("emb_layer_norm_before") for k in state):
            net.emb_layer_norm_before = None
        for key in ("embed_tokens.weight", "lm_head.weight"):
            if key in state:
                state[key][net.mask_idx] = 0
        return net, spec, state


class Esm2(FairEsm):
    """ESM-2 (rotary positions, token dropout), from fair-esm (A.2)."""

    name = "esm2"

    def build(self, spec, modality):
        """fair-esm's ESM2 of `spec` on corelib's vocabulary (A.2)."""
        from esm.model.esm2 import ESM2

        return ESM2(num_layers=spec.layers, embed_dim=spec.embed_dim, attention_heads=spec.heads,
                    alphabet=alphabet(modality), token_dropout=True)

    def reads(self, data):
        """A fair-esm v2 file (`cfg` and `model`): ESM-2's `.pt` (A.2)."""
        return "cfg" in data and "model" in data

    def from_native(self, data, modality, source):
        """ESM-2 from its `.pt`, with the contact regression fair-esm keeps beside it when present (A.2)."""
        cfg = data["cfg"]["model"]
        get = cfg.get if isinstance(cfg, dict) else lambda k: getattr(cfg, k)
        spec = ModelSpec(self.name, get("encoder_layers"), get("encoder_embed_dim"), get("encoder_attention_heads"))
        state = strip_prefix(data["model"])
        regression = source.with_name(source.stem + "-contact-regression.pt")
        if regression.exists():
            state.update(strip_prefix(torch_load(regression)["model"]))
        return self.build(spec, modality), spec, state

