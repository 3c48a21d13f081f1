"""Masked-LM builders (RNA-FM = ESM-1b layout and ESM-2 through fair-esm; ESM-C and RNA-FM as multimolecule's
Hugging Face models) and model presets (A.2)."""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import torch
from torch import nn

from corelib.data.tokens import get_vocab
from corelib.errors import InputError
from corelib.models.attention import ATTENTION_MODES
from corelib.models.attention import configure as configure_attention
from corelib.models.attention import install as install_attention


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one model preset."""

    family: str        # "esm1b" (RNA-FM layout) or "esm2" (fair-esm); "esmc" (ESM-C) or "rnafm" (multimolecule)
    layers: int
    embed_dim: int
    heads: int
    ffn_dim: int = 0   # ESM-2 uses 4 x embed_dim; ESM-C 0 = its SwiGLU width (8/3 x embed_dim, rounded up to 256)


# Families built as Hugging Face masked LMs of the `multimolecule` package (SDPA attention; Linear, LayerNorm
# and Embedding layers only); MaskedLM drives them with corelib's own token ids (`hf_config`).
HF_FAMILIES = ("esmc", "rnafm")

# RNA-FM: 12 layers, 640 dim, 20 heads, FFN 5120, learned positions (A.2), in fair-esm's layout ("paper") or as
# multimolecule's RnaFmForMaskedLM ("rnafm-hf"). Protein: ESM-C (Hayes et al. 2025) through multimolecule's
# EsmCForMaskedLM; "paper" = ESM-C 600M (36 layers, 1152 dim, 18 heads, SwiGLU 3072), "esmc-300m" the smaller
# release (30 / 960 / 15, 2560). ESM-2 stays available ("tiny", "small", "esm2-650m").
MODEL_PRESETS = {
    ("rna", "tiny"): ModelSpec("esm1b", 2, 64, 4, 256),
    ("rna", "small"): ModelSpec("esm1b", 4, 128, 8, 512),
    ("rna", "paper"): ModelSpec("esm1b", 12, 640, 20, 5120),
    ("rna", "rnafm-hf-tiny"): ModelSpec("rnafm", 2, 64, 4, 256),
    ("rna", "rnafm-hf"): ModelSpec("rnafm", 12, 640, 20, 5120),
    ("protein", "tiny"): ModelSpec("esm2", 2, 64, 4),
    ("protein", "small"): ModelSpec("esm2", 4, 128, 8),
    ("protein", "esm2-650m"): ModelSpec("esm2", 33, 1280, 20),
    ("protein", "esmc-tiny"): ModelSpec("esmc", 2, 64, 4, 256),
    ("protein", "esmc-300m"): ModelSpec("esmc", 30, 960, 15, 2560),
    ("protein", "esmc-600m"): ModelSpec("esmc", 36, 1152, 18, 3072),
    ("protein", "paper"): ModelSpec("esmc", 36, 1152, 18, 3072),
}

MAX_POSITIONS = 1024


class MaskedLM(nn.Module):
    """One interface over fair-esm models and Hugging Face masked LMs: tokens (B, T) -> logits (B, T, V).

    `time_first` lists module-name prefixes whose activations are laid out (T, B, C) (fair-esm's
    transformer layers); per-sample gradients need to know where the batch axis is.

    `attention` ("sdpa", the default, or "eager") picks the attention core of fair-esm models: SDPA, or
    fair-esm's own unfused computation; both keep q/k/v/out as hooked `nn.Linear` modules, and attention
    maps (need_head_weights / return_contacts) always come from fair-esm's computation (models/attention.py).
    On multimolecule models (ESM-C, RNA-FM) it sets the transformers attention implementation.
    `attend_padding=True` passes no key padding mask to the layers, so pad positions are attended to, as the
    official bio-coreset model file does (compat scoring).

    multimolecule's masked-LM head applies its `decoder` weight functionally (`F.linear`); MaskedLM runs the
    backbone and then the head through its `decoder` Linear (`head_logits`, the same computation), so the
    decoder's forward hook sees it and per-sample gradients cover the output layer (influence/rules.py).
    """

    def __init__(self, net: nn.Module, kind: str, modality: str, spec: dict, attention: str = "sdpa",
                 attend_padding: bool = False):
        super().__init__()
        self.net, self.kind, self.modality, self.spec = net, kind, modality, spec
        self.vocab = get_vocab(modality)
        self.time_first = ("net.layers.", "net.emb_layer_norm_after") if kind in ("esm1b", "esm2") else ()
        self.multimolecule = kind == "hf" and is_multimolecule(net)
        if self.multimolecule:
            head = net.lm_head
            if getattr(head, "bias", None) is not None and head.decoder.bias is not head.bias:
                raise InputError(f"{type(net).__name__}: lm_head.bias is not its decoder's bias (untied head)")
        for module in net.modules():  # fused attention bypasses the q/k/v Linear modules' hooks
            if hasattr(module, "enable_torch_version"):
                module.enable_torch_version = False
        if kind in ("esm1b", "esm2"):
            install_attention(net)
        self._attention = self._attend_padding = None
        self.attention, self.attend_padding = attention, attend_padding

    @property
    def attention(self) -> str:
        """The attention core: "sdpa" or "eager" (fair-esm's own computation / transformers' eager path)."""
        return self._attention

    @attention.setter
    def attention(self, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise InputError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {mode!r}")
        configure_attention(self.net, attention=mode)
        if self.multimolecule:  # read at every forward; set_attn_implementation refuses these models
            self.net.config._attn_implementation = mode
        self._attention = mode

    @property
    def attend_padding(self) -> bool:
        """True: no key padding mask, pad positions are attended to (the official bio-coreset model file)."""
        return self._attend_padding

    @attend_padding.setter
    def attend_padding(self, value: bool) -> None:
        configure_attention(self.net, attend_padding=bool(value))
        self._attend_padding = bool(value)

    def _hf_mask(self, tokens: torch.Tensor):
        if self.attend_padding:  # multimolecule derives a pad mask from None: attend everywhere explicitly
            return torch.ones_like(tokens) if self.multimolecule else None
        return (tokens != self.vocab.pad).long()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of the masked LM for tokens (B, T)."""
        if self.multimolecule:
            return head_logits(self.net.lm_head, self.encode(tokens))
        if self.kind == "hf":
            return self.net(input_ids=tokens, attention_mask=self._hf_mask(tokens)).logits
        return self.net(tokens)["logits"]

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, C) before the LM head, for downstream heads."""
        if self.multimolecule:  # after the encoder's final LayerNorm (hidden_states[-1] precedes it)
            return self.net.model(input_ids=tokens, attention_mask=self._hf_mask(tokens)).last_hidden_state
        if self.kind == "hf":
            out = self.net(input_ids=tokens, attention_mask=self._hf_mask(tokens), output_hidden_states=True)
            return out.hidden_states[-1]
        n = len(self.net.layers)
        return self.net(tokens, repr_layers=[n])["representations"][n]


def is_multimolecule(net: nn.Module) -> bool:
    """True for a `multimolecule` masked LM (a `model` backbone and a MaskedLMHead `lm_head` with a decoder)."""
    head = getattr(net, "lm_head", None)
    return (type(net).__module__.startswith("multimolecule.") and hasattr(net, "model")
            and type(head).__name__ == "MaskedLMHead" and isinstance(getattr(head, "decoder", None), nn.Linear))


def head_logits(head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """multimolecule's MaskedLMHead on final hidden states, through its `decoder` Linear: the head's own
    forward computes F.linear(transform(dropout(h)), decoder.weight, bias) with bias = decoder.bias (tied)."""
    logits = head.decoder(head.transform(head.dropout(hidden)))
    return head.activation(logits) if head.activation is not None else logits


def _esm_alphabet(modality: str):
    if modality == "rna":
        import fm

        return fm.Alphabet.from_architecture("ESM-1b", "rna")
    import esm

    return esm.Alphabet.from_architecture("ESM-1b")


def build_net(spec: ModelSpec, modality: str) -> nn.Module:
    """A fresh network of a spec: fair-esm's ProteinBertModel (ESM-1b / RNA-FM layout) or ESM2 (A.2), or
    multimolecule's EsmCForMaskedLM / RnaFmForMaskedLM on corelib's vocabulary (`hf_config`)."""
    if spec.family in HF_FAMILIES:
        import multimolecule  # registers ESM-C and RNA-FM with transformers

        cls = multimolecule.EsmCForMaskedLM if spec.family == "esmc" else multimolecule.RnaFmForMaskedLM
        return cls(hf_config(spec, modality))
    if spec.family not in ("esm1b", "esm2"):
        raise InputError(f"unknown model family {spec.family!r}; choose one of esm1b, esm2, {', '.join(HF_FAMILIES)}")
    alphabet = _esm_alphabet(modality)
    if spec.family == "esm1b":
        from esm.model.esm1 import ProteinBertModel

        args = argparse.Namespace(arch="roberta_large", layers=spec.layers, embed_dim=spec.embed_dim,
                                  ffn_embed_dim=spec.ffn_dim, attention_heads=spec.heads,
                                  max_positions=MAX_POSITIONS, emb_layer_norm_before=True, token_dropout=False)
        return ProteinBertModel(args, alphabet)
    from esm.model.esm2 import ESM2

    return ESM2(num_layers=spec.layers, embed_dim=spec.embed_dim, attention_heads=spec.heads,
                alphabet=alphabet, token_dropout=True)


def vocab_token_ids(modality: str) -> dict[str, int]:
    """The Hugging Face config entries that make a model embed corelib's token ids (get_vocab(modality))."""
    vocab = get_vocab(modality)
    return {"vocab_size": len(vocab), "pad_token_id": vocab.pad, "bos_token_id": vocab.cls,
            "eos_token_id": vocab.eos, "unk_token_id": vocab.unk, "mask_token_id": vocab.mask,
            "null_token_id": vocab.index.get("<null_1>", vocab.unk)}


def hf_config(spec: ModelSpec, modality: str):
    """The multimolecule config of an "esmc" / "rnafm" spec on corelib's vocabulary: vocab_size and the
    pad/cls/eos/unk/mask ids of get_vocab(modality), so our tokens drive the model directly; SDPA attention.
    RNA-FM as fair-esm builds it here: no dropout, no token dropout, positions for MAX_POSITIONS tokens
    (multimolecule numbers them from pad + 2)."""
    import multimolecule

    ids = vocab_token_ids(modality)
    common = dict(hidden_size=spec.embed_dim, num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                  attn_implementation="sdpa", **ids)
    if spec.family == "esmc":
        return multimolecule.EsmCConfig(intermediate_size=spec.ffn_dim or None, **common)
    if spec.family == "rnafm":
        return multimolecule.RnaFmConfig(intermediate_size=spec.ffn_dim or 4 * spec.embed_dim,
                                         max_position_embeddings=MAX_POSITIONS + ids["pad_token_id"] + 2,
                                         hidden_dropout=0.0, attention_dropout=0.0, token_dropout=False, **common)
    raise InputError(f"model family {spec.family!r} is not a Hugging Face family ({', '.join(HF_FAMILIES)})")


def model_kind(family: str) -> str:
    """MaskedLM's kind of a spec family: "esm1b" / "esm2" (fair-esm) or "hf" (Hugging Face)."""
    return "hf" if family in (*HF_FAMILIES, "hf") else family


def build_model(modality: str, preset: str = "tiny", seed: int = 0) -> MaskedLM:
    """A freshly initialised masked LM of a preset (MODEL_PRESETS: fair-esm RNA-FM / ESM-2, multimolecule
    ESM-C / RNA-FM)."""
    key = (modality, preset)
    if key not in MODEL_PRESETS:
        known = sorted({p for m, p in MODEL_PRESETS if m == modality})
        raise InputError(f"unknown model preset {preset!r} for {modality}; choose one of {', '.join(known)}")
    spec = MODEL_PRESETS[key]
    torch.manual_seed(seed)
    net = build_net(spec, modality)
    net.apply(_bert_init)
    return MaskedLM(net, model_kind(spec.family), modality, asdict(spec))


def _bert_init(module: nn.Module) -> None:
    """BERT / ESM-2 initialisation for training from scratch (normal, std 0.02; zero biases; unit LayerNorm):
    fair-esm's modules keep PyTorch's defaults, whose N(0, 1) token embeddings (tied to the LM head) start
    the MLM loss near 15 nats instead of ln(vocabulary)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:   # ESM-C's LayerNorms have no bias
            nn.init.zeros_(module.bias)
