"""Masked-LM builders (RNA-FM = ESM-1b layout, ESM-2 for proteins) and local checkpoint loading (A.2).

Nothing here downloads: a user's RNA-FM `.pth`, fair-esm `.pt` or Hugging Face masked-LM folder is read
from disk, and a missing or mismatched file is an InputError (one line).
"""
from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .data import get_vocab
from .errors import InputError


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
    """

    def __init__(self, net: nn.Module, kind: str, modality: str, spec: dict):
        super().__init__()
        self.net, self.kind, self.modality, self.spec = net, kind, modality, spec
        self.vocab = get_vocab(modality)
        self.time_first = ("net.layers.", "net.emb_layer_norm_after") if kind in ("esm1b", "esm2") else ()
        for module in net.modules():  # fused attention bypasses the q/k/v Linear modules' hooks
            if hasattr(module, "enable_torch_version"):
                module.enable_torch_version = False

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.kind == "hf":
            return self.net(input_ids=tokens, attention_mask=(tokens != self.vocab.pad).long()).logits
        return self.net(tokens)["logits"]

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, C) before the LM head, for downstream heads."""
        if self.kind == "hf":
            out = self.net(input_ids=tokens, attention_mask=(tokens != self.vocab.pad).long(), output_hidden_states=True)
            return out.hidden_states[-1]
        n = len(self.net.layers)
        return self.net(tokens, repr_layers=[n])["representations"][n]


def _esm_alphabet(modality: str):
    if modality == "rna":
        import fm

        return fm.Alphabet.from_architecture("ESM-1b", "rna")
    import esm

    return esm.Alphabet.from_architecture("ESM-1b")


def _build_net(spec: ModelSpec, modality: str) -> nn.Module:
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
    net = _build_net(spec, modality)
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


# ----------------------------------------------------------------------------- checkpoints
_PREFIX = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")


def _torch_load(path: Path):
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120]})") from None


def _load_state(model: MaskedLM, state: dict, path: Path) -> MaskedLM:
    expected = set(model.net.state_dict())
    optional = {"contact_head.regression.weight", "contact_head.regression.bias"}
    missing = sorted(expected - set(state) - optional)
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise InputError(f"{path}: checkpoint does not match the {model.kind} architecture "
                         f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                         f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})")
    bad = [k for k, v in state.items() if v.shape != model.net.state_dict()[k].shape]
    if bad:
        raise InputError(f"{path}: tensor {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
                         f"expected {tuple(model.net.state_dict()[bad[0]].shape)}")
    model.net.load_state_dict(state, strict=False)
    return model


def load_checkpoint(path, modality: str) -> MaskedLM:
    """A masked LM from a local file or folder: our own `.pt`, RNA-FM's `.pth` (fairseq layout, e.g.
    RNA-FM_pretrained.pth), a fair-esm `.pt` (ESM-1b/ESM-2), or a Hugging Face masked-LM directory."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    if path.is_dir():
        return _load_hf(path, modality)
    data = _torch_load(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a model checkpoint (a {type(data).__name__})")
    if "corelib_spec" in data:  # written by save_checkpoint
        spec = ModelSpec(**data["corelib_spec"])
        if data.get("modality") != modality:
            raise InputError(f"{path}: a {data.get('modality')} model, but --modality {modality} was given")
        model = MaskedLM(_build_net(spec, modality), spec.family, modality, asdict(spec))
        return _load_state(model, data["model"], path)
    if "args" in data and "model" in data:  # fairseq v1: RNA-FM and ESM-1b
        args = {re.sub(r"^encoder_", "", k): v for k, v in vars(data["args"]).items()}
        state = {_PREFIX.sub("", k): v for k, v in data["model"].items()}
        spec = ModelSpec("esm1b", args["layers"], args["embed_dim"], args["attention_heads"], args["ffn_embed_dim"])
        net = _build_net(spec, modality)
        net.args.token_dropout = bool(args.get("token_dropout", False))
        if not any(k.startswith("emb_layer_norm_before") for k in state):
            net.emb_layer_norm_before = None
        for key in ("embed_tokens.weight", "lm_head.weight"):  # tied; zeroed as RNA-FM's and fair-esm's
            if key in state:                                  # own loaders do (token dropout)
                state[key][net.mask_idx] = 0
        return _load_state(MaskedLM(net, "esm1b", modality, asdict(spec)), state, path)
    if "cfg" in data and "model" in data:  # fair-esm v2: ESM-2
        cfg = data["cfg"]["model"]
        get = cfg.get if isinstance(cfg, dict) else lambda k: getattr(cfg, k)
        spec = ModelSpec("esm2", get("encoder_layers"), get("encoder_embed_dim"), get("encoder_attention_heads"))
        state = {_PREFIX.sub("", k): v for k, v in data["model"].items()}
        regression = path.with_name(path.stem + "-contact-regression.pt")
        if regression.exists():  # fair-esm keeps the contact head beside the model
            state.update({_PREFIX.sub("", k): v for k, v in _torch_load(regression)["model"].items()})
        return _load_state(MaskedLM(_build_net(spec, modality), "esm2", modality, asdict(spec)), state, path)
    raise InputError(f"{path}: unrecognised checkpoint layout (keys: {', '.join(sorted(data)[:5])})")


def _load_hf(path: Path, modality: str) -> MaskedLM:
    from transformers import AutoModelForMaskedLM

    if not (path / "config.json").exists():
        raise InputError(f"{path}: not a Hugging Face model folder (no config.json)")
    try:
        net = AutoModelForMaskedLM.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise InputError(f"{path}: cannot load a masked LM ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    vocab = get_vocab(modality)
    if net.config.vocab_size != len(vocab):
        raise InputError(f"{path}: vocabulary of {net.config.vocab_size} tokens, expected the {len(vocab)}-token "
                         f"{modality} vocabulary")
    spec = {"family": "hf", "layers": net.config.num_hidden_layers, "embed_dim": net.config.hidden_size,
            "heads": net.config.num_attention_heads, "ffn_dim": net.config.intermediate_size}
    return MaskedLM(net, "hf", modality, spec)


def save_checkpoint(model: MaskedLM, path, **extra) -> Path:
    """Save weights plus the architecture (`load_checkpoint` rebuilds it); written atomically."""
    if model.kind == "hf":
        raise InputError("save Hugging Face models with their own save_pretrained")
    from .files import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"corelib_spec": model.spec, "modality": model.modality, "model": model.net.state_dict(), **extra}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def get_model(modality: str, preset: str = "tiny", checkpoint=None, seed: int = 0) -> MaskedLM:
    """The model a stage starts from: a local checkpoint if given, else a fresh preset model."""
    return load_checkpoint(checkpoint, modality) if checkpoint else build_model(modality, preset, seed)
