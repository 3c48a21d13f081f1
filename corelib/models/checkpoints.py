"""Local checkpoints (A.2): our .pt, RNA-FM .pth, fair-esm .pt and Hugging Face folders; nothing downloads."""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict
from pathlib import Path

import torch

from corelib.data.tokens import get_vocab
from corelib.errors import InputError
from corelib.models.masked_lm import (
    HF_FAMILIES,
    MaskedLM,
    ModelSpec,
    build_model,
    build_net,
    is_multimolecule,
    model_kind,
)

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
        if "hf_config" in data:  # a Hugging Face masked LM: its class and whole config, on corelib's vocabulary
            net = _hf_from_config(data["hf_config"], data.get("hf_class", ""), path)
            _check_vocab(net.config, modality, path)
        elif spec.family in ("esm1b", "esm2", *HF_FAMILIES):
            net = build_net(spec, modality)
        else:
            raise InputError(f"{path}: a {spec.family!r} model without the Hugging Face config to rebuild it")
        model = MaskedLM(net, model_kind(spec.family), modality, asdict(spec))
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


def _register(model_type: str | None) -> None:
    """Make a model type known to transformers' Auto classes: multimolecule's (rnafm, ...) register when the
    package is imported."""
    from transformers import CONFIG_MAPPING

    if model_type and model_type not in CONFIG_MAPPING:
        try:
            import multimolecule  # noqa: F401
        except ImportError:
            pass


def _hf_class(name: str, path: Path):
    """The Hugging Face model class of that name, from transformers or multimolecule. By name, not by model
    type: both ship an "esmc" type (transformers' EsmcForMaskedLM, multimolecule's EsmCForMaskedLM), and
    importing multimolecule re-registers the type for its own classes."""
    import transformers

    if hasattr(transformers, name):
        return getattr(transformers, name)
    try:
        import multimolecule
    except ImportError:
        multimolecule = None
    if multimolecule is not None and hasattr(multimolecule, name):
        return getattr(multimolecule, name)
    raise InputError(f"{path}: unknown Hugging Face model class {name!r} (neither transformers nor multimolecule has it)")


def _hf_from_config(config: dict, class_name: str, path: Path):
    """A freshly built Hugging Face masked LM of a class and a config dict (as `config.to_dict()` wrote it)."""
    cls = _hf_class(class_name, path)
    try:
        return cls(cls.config_class.from_dict(dict(config)))
    except Exception as exc:
        raise InputError(f"{path}: cannot build a {class_name} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120]})") from None


def _folder_tokens(path: Path) -> list[str] | None:
    """The token of each id in a model folder's tokenizer files (vocab.txt, else tokenizer.json), or None."""
    if (path / "vocab.txt").exists():
        return (path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    if (path / "tokenizer.json").exists():
        try:
            vocab = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
        except (ValueError, KeyError, TypeError):
            return None
        if isinstance(vocab, dict):
            return [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    return None


def _check_vocab(config, modality: str, path: Path, tokens: list[str] | None = None) -> None:
    """The model must embed corelib's token ids: same vocabulary size, same special-token ids in its config,
    and, when the folder ships a tokenizer, the same token at every id. corelib never remaps embedding rows
    (a different pad id also moves learned positions), so any difference is refused."""
    vocab = get_vocab(modality)
    why = f"corelib feeds its own {modality} token ids and does not remap embedding rows"
    if config.vocab_size != len(vocab):
        raise InputError(f"{path}: vocabulary of {config.vocab_size} tokens, expected the {len(vocab)}-token "
                         f"{modality} vocabulary ({why})")
    ids = {"pad_token_id": vocab.pad, "mask_token_id": vocab.mask, "bos_token_id": vocab.cls,
           "cls_token_id": vocab.cls, "eos_token_id": vocab.eos, "unk_token_id": vocab.unk}
    for key, want in ids.items():
        got = getattr(config, key, None)
        if isinstance(got, int) and got != want:
            raise InputError(f"{path}: {key} {got} in its config, but corelib's {modality} vocabulary has "
                             f"{vocab.tokens[want]!r} at {want} ({why})")
    if tokens is not None and list(tokens) != list(vocab.tokens):
        i = next((i for i, (a, b) in enumerate(zip(tokens, vocab.tokens)) if a != b), min(len(tokens), len(vocab)))
        theirs = repr(tokens[i]) if i < len(tokens) else "nothing"
        raise InputError(f"{path}: its tokenizer has {theirs} at id {i} where corelib's {modality} vocabulary has "
                         f"{vocab.tokens[i] if i < len(vocab) else 'nothing'!r} ({why})")


def _load_hf(path: Path, modality: str) -> MaskedLM:
    from transformers import AutoConfig, AutoModelForMaskedLM

    if not (path / "config.json").exists():
        raise InputError(f"{path}: not a Hugging Face model folder (no config.json)")
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}: config.json is not JSON ({str(exc).splitlines()[0][:120]})") from None
    arch = next((a for a in raw.get("architectures") or [] if "MaskedLM" in a or "PreTraining" in a), None)
    cls = _hf_class(arch, path) if arch else None   # else the masked LM transformers maps the model type to
    try:
        if cls is None:
            _register(raw.get("model_type"))
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        else:
            config = cls.config_class.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise InputError(f"{path}: cannot read its config.json ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120]})") from None
    _check_vocab(config, modality, path, _folder_tokens(path))
    try:
        net = (cls or AutoModelForMaskedLM).from_pretrained(path, config=config, local_files_only=True)
    except Exception as exc:
        raise InputError(f"{path}: cannot load a masked LM ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    family = config.model_type if config.model_type in HF_FAMILIES and is_multimolecule(net) else "hf"
    spec = {"family": family, "layers": config.num_hidden_layers, "embed_dim": config.hidden_size,
            "heads": config.num_attention_heads, "ffn_dim": getattr(config, "intermediate_size", 0) or 0}
    return MaskedLM(net, "hf", modality, spec)


def save_checkpoint(model: MaskedLM, path, **extra) -> Path:
    """Save weights plus the architecture (`load_checkpoint` rebuilds it): the spec, and for Hugging Face
    models their config (multimolecule ESM-C / RNA-FM, or a loaded folder's model); written atomically."""
    from corelib.files import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"corelib_spec": model.spec, "modality": model.modality, "model": model.net.state_dict(), **extra}
    if model.kind == "hf":
        state["hf_class"], state["hf_config"] = type(model.net).__name__, model.net.config.to_dict()
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def get_model(modality: str, preset: str = "tiny", checkpoint=None, seed: int = 0) -> MaskedLM:
    """The model a stage starts from: a local checkpoint if given, else a fresh preset model."""
    return load_checkpoint(checkpoint, modality) if checkpoint else build_model(modality, preset, seed)
