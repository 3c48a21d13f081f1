"""What a model family answers (A.2): the one interface every architecture corelib drives implements, so that no
module outside `corelib.models.families` branches on a family's name.

Layer numbering, the same for every family: layer 0 is the input of the first transformer block (the token
embedding with whatever the family adds before the blocks: positions, scaling, token dropout, its embedding
LayerNorm); layer i (1 <= i < n) is the output of block i; layer n is the output of block n after the encoder's
final LayerNorm (fair-esm's `emb_layer_norm_after`, ESM-C's `norm`), i.e. the states the LM head reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from corelib.errors import InputError


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one model (A.2): its family (a `FAMILIES` key) and size."""

    family: str
    layers: int
    embed_dim: int
    heads: int
    ffn_dim: int = 0   # ESM-2: 4 x embed_dim; ESM-C: 0 = its SwiGLU width (8/3 x embed_dim, rounded up to 256)


def torch_load(path: Path):
    """A local torch file, tensors and argparse namespaces only (weights_only); an unreadable, empty or truncated
    file is one InputError naming it (A.2)."""
    import argparse

    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # noqa: BLE001 - torch raises many types for a damaged file
        first = (str(exc).splitlines() or [""])[0][:120] or "empty or truncated file"
        raise InputError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {first})") from None


def torch_save(obj, path) -> Path:
    """`torch.save` written atomically (A.2), through a file handle: a write the machine refuses (a full disk) then
    reaches `atomic_write` as the OSError it is (torch writing to a path reports only "unexpected pos"), and is one
    line naming `path`, with no temporary file left."""
    from corelib.files import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)

    return atomic_write(path, write)


class Family:
    """One model family (A.2): how corelib builds, runs, reads and saves it (module docstring for the layers)."""

    name = ""
    time_first: tuple[str, ...] = ()   # MaskedLM submodule prefixes whose activations are (T, B, C)
    hf_classes: tuple[str, ...] = ()   # Hugging Face masked-LM classes a model folder of this family names
    optional_keys: frozenset = frozenset()   # state-dict keys a checkpoint may lack (unused heads)

    # ------------------------------------------------------------------ building and running
    def build(self, spec: ModelSpec, modality: str) -> nn.Module:
        """A freshly initialised network of `spec` on corelib's vocabulary of `modality` (A.2)."""
        raise NotImplementedError

    def prepare(self, net: nn.Module) -> None:
        """Make a built or loaded network ready for corelib: hookable attention, no fused paths (A.2)."""

    def logits(self, model, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of the masked LM `model` (a MaskedLM) for tokens (B, T) (Section 3.2)."""
        raise NotImplementedError

    def states(self, model, tokens: torch.Tensor, layers: list[int], attention: bool = False
               ) -> tuple[dict[int, torch.Tensor], torch.Tensor | None]:
        """({layer: (B, T, C)} for `layers` numbered as the module docstring says, and when `attention` the
        attention maps (B, n, heads, T, T) of every block, pad keys given no weight) (Section 4.2)."""
        raise NotImplementedError

    def set_attention(self, net: nn.Module, mode: str) -> None:
        """Use attention core `mode`: "sdpa" or "eager" (the family's own unfused computation) (A.2)."""
        raise NotImplementedError

    def set_attend_padding(self, net: nn.Module, value: bool) -> None:
        """Whether pad keys are attended to (the official bio-coreset model passes no padding mask) (A.2)."""

    # ------------------------------------------------------------------ checkpoints
    def reads(self, data: dict) -> bool:
        """True when a loaded torch file is in this family's native layout (e.g. a fair-esm .pt) (A.2)."""
        return False

    def from_native(self, data: dict, modality: str, source) -> tuple[nn.Module, ModelSpec, dict]:
        """(network, spec, state dict) of a native torch file this family `reads` (A.2)."""
        raise NotImplementedError

    def record(self, net: nn.Module) -> dict:
        """What `save_checkpoint` stores beside the weights to rebuild `net` exactly (A.2)."""
        return {}

    def rebuild(self, spec: ModelSpec, record: dict, modality: str, source) -> nn.Module:
        """The network a corelib checkpoint describes: its spec and `record` (A.2)."""
        return self.build(spec, modality)

    def from_folder(self, path: Path, modality: str, config) -> tuple[nn.Module, ModelSpec]:
        """(network, spec) of a Hugging Face model folder of one of `hf_classes` (A.2)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<family {self.name}>"
