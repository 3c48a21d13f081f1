"""Masked-LM builders (RNA-FM = ESM-1b layout, ESM-2 for proteins) and model presets (A.2)."""
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

    family: str        # "esm1b" (RNA-FM layout) or "esm2"
    layers: int
    embed_dim: int
    heads: int
    ffn_dim: int = 0   # ESM-2 uses 4 x embed_dim

# RNA-FM: 12 layers, 640 dim, 20 heads, FFN 5120, learned positions (A.2). Protein: ESM-2 stands in for
# ESM-C (EvolutionaryScale's package cannot be installed beside fair-esm); "paper" = ESM-2 650M, the
# size closest to ESM-C 600M.
MODEL_PRESETS = {
    ("rna", "tiny"): ModelSpec("esm1b", 2, 64, 4, 256),
    ("rna", "small"): ModelSpec("esm1b", 4, 128, 8, 512),
    ("rna", "paper"): ModelSpec("esm1b", 12, 640, 20, 5120),
    ("protein", "tiny"): ModelSpec("esm2", 2, 64, 4),
    ("protein", "small"): ModelSpec("esm2", 4, 128, 8),
    ("protein", "paper"): ModelSpec("esm2", 33, 1280, 20),
}

MAX_POSITIONS = 1024


class MaskedLM(nn.Module):
    """One interface over fair-esm models and Hugging Face masked LMs: tokens (B, T) -> logits (B, T, V).

    `time_first` lists module-name prefixes whose activations are laid out (T, B, C) (fair-esm's
    transformer layers); per-sample gradients need to know where the batch axis is.

    `attention` ("sdpa", the default, or "eager") picks the attention core of fair-esm models: SDPA, or
    fair-esm's own unfused computation; both keep q/k/v/out as hooked `nn.Linear` modules, and attention
    maps (need_head_weights / return_contacts) always come from fair-esm's computation (models/attention.py).
    `attend_padding=True` passes no key padding mask to the layers, so pad positions are attended to, as the
    official bio-coreset model file does (compat scoring).
    """

    def __init__(self, net: nn.Module, kind: str, modality: str, spec: dict, attention: str = "sdpa",
                 attend_padding: bool = False):
        super().__init__()
        self.net, self.kind, self.modality, self.spec = net, kind, modality, spec
        self.vocab = get_vocab(modality)
        self.time_first = ("net.layers.", "net.emb_layer_norm_after") if kind in ("esm1b", "esm2") else ()
        for module in net.modules():  # fused attention bypasses the q/k/v Linear modules' hooks
            if hasattr(module, "enable_torch_version"):
                module.enable_torch_version = False
        if kind in ("esm1b", "esm2"):
            install_attention(net)
        self._attention = self._attend_padding = None
        self.attention, self.attend_padding = attention, attend_padding

    @property
    def attention(self) -> str:
        """The attention core of fair-esm models: "sdpa" or "eager" (fair-esm's own computation)."""
        return self._attention

    @attention.setter
    def attention(self, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise InputError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {mode!r}")
        configure_attention(self.net, attention=mode)
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
        return None if self.attend_padding else (tokens != self.vocab.pad).long()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of the masked LM for tokens (B, T)."""
        if self.kind == "hf":
            return self.net(input_ids=tokens, attention_mask=self._hf_mask(tokens)).logits
        return self.net(tokens)["logits"]

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, C) before the LM head, for downstream heads."""
        if self.kind == "hf":
            out = self.net(input_ids=tokens, attention_mask=self._hf_mask(tokens), output_hidden_states=True)
            return out.hidden_states[-1]
        n = len(self.net.layers)
        return self.net(tokens, repr_layers=[n])["representations"][n]


def _esm_alphabet(modality: str):
    if modality == "rna":
        import fm

        return fm.Alphabet.from_architecture("ESM-1b", "rna")
    import esm

    return esm.Alphabet.from_architecture("ESM-1b")


def build_net(spec: ModelSpec, modality: str) -> nn.Module:
    """A fresh fair-esm network of a spec: ProteinBertModel (ESM-1b / RNA-FM layout) or ESM2 (A.2)."""
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


def build_model(modality: str, preset: str = "tiny", seed: int = 0) -> MaskedLM:
    """A freshly initialised masked LM of a preset size (RNA-FM layout for RNA, ESM-2 for protein)."""
    key = (modality, preset)
    if key not in MODEL_PRESETS:
        known = sorted({p for _, p in MODEL_PRESETS})
        raise InputError(f"unknown model preset {preset!r} for {modality}; choose one of {', '.join(known)}")
    spec = MODEL_PRESETS[key]
    torch.manual_seed(seed)
    net = build_net(spec, modality)
    net.apply(_bert_init)
    return MaskedLM(net, spec.family, modality, asdict(spec))


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
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
