"""Local checkpoints (A.2): our `.pt`, RNA-FM's `.pth`, fair-esm's `.pt` and Hugging Face model folders, each
read by the family it belongs to (`corelib.models.families`); nothing downloads."""
from __future__ import annotations

import json
from pathlib import Path

from corelib.errors import InputError
from corelib.models.families import FAMILIES, ModelSpec, family_of_class, get_family, torch_load, torch_save
from corelib.models.masked_lm import MaskedLM, build_model
from corelib.models.vocabulary import check_vocabulary, folder_tokens


def _load_state(model: MaskedLM, state: dict, source) -> MaskedLM:
    """Load a state dict that must match the network key for key and shape for shape (the family's unused heads
    aside) (A.2)."""
    own = model.net.state_dict()
    missing = sorted(set(own) - set(state) - model.family.optional_keys)
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise InputError(f"{source}: checkpoint does not match the {model.family.name} architecture "
                         f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                         f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})")
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise InputError(f"{source}: tensor {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
                         f"expected {tuple(own[bad[0]].shape)}")
    model.net.load_state_dict(state, strict=False)
    return model


def load_checkpoint(path, modality: str) -> MaskedLM:
    """A masked LM from a local file or folder (A.2): our own `.pt`, RNA-FM's `.pth` (fairseq layout, e.g.
    RNA-FM_pretrained.pth), a fair-esm `.pt` (ESM-1b / ESM-2), or a Hugging Face masked-LM folder (ESM-C, ESM,
    RNA-FM); every one must hold corelib's token at each id corelib feeds (`corelib.models.vocabulary`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    if path.is_dir():
        return _load_folder(path, modality)
    data = torch_load(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a model checkpoint (a {type(data).__name__})")
    if "corelib_spec" in data:   # written by save_checkpoint
        return _load_own(data, modality, path)
    family = next((f for f in FAMILIES.values() if f.reads(data)), None)
    if family is None:
        raise InputError(f"{path}: unrecognised checkpoint layout (keys: {', '.join(sorted(map(str, data))[:5])})")
    net, spec, state = family.from_native(data, modality, path)   # built on corelib's alphabet: shapes must match
    return _load_state(MaskedLM(net, family, modality, spec), state, path)


def _load_own(data: dict, modality: str, path: Path) -> MaskedLM:
    try:
        spec = ModelSpec(**data["corelib_spec"])
    except TypeError:
        raise InputError(f"{path}: its corelib_spec {data['corelib_spec']!r} is not a model spec") from None
    if data.get("modality") != modality:
        raise InputError(f"{path}: a {data.get('modality')} model, but --modality {modality} was given")
    family = get_family(spec.family, path)
    net = family.rebuild(spec, data, modality, path)
    config = getattr(net, "config", None)
    if config is not None:   # a Hugging Face network rebuilt from its recorded config
        check_vocabulary(path, modality, config.vocab_size, config)
    return _load_state(MaskedLM(net, family, modality, spec), data["model"], path)


def _load_folder(path: Path, modality: str) -> MaskedLM:
    if not (path / "config.json").exists():
        raise InputError(f"{path}: not a Hugging Face model folder (no config.json)")
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}: config.json is not JSON ({str(exc).splitlines()[0][:120]})") from None
    arch = next((a for a in raw.get("architectures") or [] if "MaskedLM" in a), None)
    family = family_of_class(arch, path)
    cls = family.model_class(arch)
    try:
        config = cls.config_class.from_pretrained(path, local_files_only=True)
    except Exception as exc:   # noqa: BLE001 - transformers raises many types for a foreign config
        raise InputError(f"{path}: cannot read its config.json ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:120]})") from None
    check_vocabulary(path, modality, config.vocab_size, config, folder_tokens(path))
    try:
        net, spec = family.from_folder(path, modality, config)
    except Exception as exc:   # noqa: BLE001 - missing or damaged weight files
        raise InputError(f"{path}: cannot load a masked LM ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:120]})") from None
    return MaskedLM(net, family, modality, spec)


def save_checkpoint(model: MaskedLM, path, **extra) -> Path:
    """Save weights, the spec and what the family needs to rebuild the network (`load_checkpoint` reads it),
    written atomically (A.2)."""
    state = {"corelib_spec": model.spec, "modality": model.modality, "model": model.net.state_dict(),
             **model.family.record(model.net), **extra}
    return torch_save(state, path)


def get_model(modality: str, preset: str = "tiny", checkpoint=None, seed: int = 0) -> MaskedLM:
    """The model a stage starts from: a local checkpoint if given, else a fresh preset model (A.2)."""
    return load_checkpoint(checkpoint, modality) if checkpoint else build_model(modality, preset, seed)

