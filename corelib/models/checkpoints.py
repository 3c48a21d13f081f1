"""Local checkpoints (A.2): our .pt, RNA-FM .pth, fair-esm .pt and Hugging Face folders; nothing downloads."""
from __future__ import annotations

import argparse
import re
from dataclasses import asdict
from pathlib import Path

import torch

from corelib.data.tokens import get_vocab
from corelib.errors import InputError
from corelib.models.masked_lm import MaskedLM, ModelSpec, build_model, build_net

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
        model = MaskedLM(build_net(spec, modality), spec.family, modality, asdict(spec))
        return _load_state(model, data["model"], path)
    if "args" in data and "model" in data:  # fairseq v1: RNA-FM and ESM-1b
        args = {re.sub(r"^encoder_", "", k): v for k, v in vars(data["args"]).items()}
        state = {_PREFIX.sub("", k): v for k, v in data["model"].items()}
        spec = ModelSpec("esm1b", args["layers"], args["embed_dim"], args["attention_heads"], args["ffn_embed_dim"])
        net = build_net(spec, modality)
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
        return _load_state(MaskedLM(build_net(spec, modality), "esm2", modality, asdict(spec)), state, path)
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
    from corelib.files import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"corelib_spec": model.spec, "modality": model.modality, "model": model.net.state_dict(), **extra}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def get_model(modality: str, preset: str = "tiny", checkpoint=None, seed: int = 0) -> MaskedLM:
    """The model a stage starts from: a local checkpoint if given, else a fresh preset model."""
    return load_checkpoint(checkpoint, modality) if checkpoint else build_model(modality, preset, seed)
