"""The vocabulary contract between corelib and a model (A.2): corelib feeds its own token ids and never remaps
embedding rows, so a model is accepted when it has corelib's token at every id corelib feeds.

The ids corelib feeds are <cls>, <pad>, <eos>, <unk>, <mask> and the residue letters a validated FASTA can
hold (`corelib.data.fasta.RNA_LETTERS` / `PROTEIN_LETTERS`). Extra rows (ESM-C's 64-row embedding) and ids
corelib never feeds (fair-esm's <null_1> at 31 where ESM-C's tokenizer has the chain break `|`) are allowed; a
vocabulary smaller than the largest fed id, a special-token id in the model's config that differs from ours, or a
tokenizer with another token at a fed id is refused in one line.
"""
from __future__ import annotations

import json
from pathlib import Path

from corelib.data.fasta import PROTEIN_LETTERS, RNA_LETTERS
from corelib.data.tokens import get_vocab
from corelib.errors import InputError

SPECIALS = ("<cls>", "<pad>", "<eos>", "<unk>", "<mask>")
CONFIG_IDS = {"pad_token_id": "<pad>", "mask_token_id": "<mask>", "bos_token_id": "<cls>", "cls_token_id": "<cls>",
              "eos_token_id": "<eos>", "unk_token_id": "<unk>"}
WHY = "corelib feeds its own {modality} token ids and does not remap embedding rows"


def fed_ids(modality: str) -> dict[int, str]:
    """{id: token} of every id corelib feeds a model of a modality (module docstring, A.2)."""
    vocab = get_vocab(modality)
    letters = RNA_LETTERS if modality == "rna" else PROTEIN_LETTERS
    return {vocab.index[t]: t for t in (*SPECIALS, *sorted(letters))}


def folder_tokens(path: Path) -> list[str] | None:
    """The token of each id in a model folder's tokenizer files (vocab.txt, else tokenizer.json), or None (A.2)."""
    if (path / "vocab.txt").exists():
        return (path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    if (path / "tokenizer.json").exists():
        try:
            vocab = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
        except (ValueError, KeyError, TypeError):
            return None
        if isinstance(vocab, dict):
            out = [""] * (max(vocab.values()) + 1) if vocab else []
            for token, i in vocab.items():
                out[i] = token
            return out
    return None


def check_vocabulary(source, modality: str, size: int, config=None, tokens: list[str] | None = None) -> None:
    """Refuse a model whose vocabulary does not hold corelib's token at every fed id (module docstring, A.2):
    `size` rows of its embedding, the special-token ids of its `config` (any object or dict), the tokens of its
    tokenizer files when it ships some. `source` names the checkpoint in the one-line error."""
    fed = fed_ids(modality)
    why = WHY.format(modality=modality)
    top = max(fed)
    if size <= top:
        raise InputError(f"{source}: vocabulary of {size} tokens, but corelib feeds {modality} ids up to {top} "
                         f"({fed[top]!r}) ({why})")
    ours = get_vocab(modality).index
    for key, token in CONFIG_IDS.items():
        got = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if isinstance(got, int) and got != ours[token]:
            raise InputError(f"{source}: {key} {got} in its config, but corelib's {modality} vocabulary has "
                             f"{token!r} at {ours[token]} ({why})")
    if tokens is None:
        return
    for i, token in sorted(fed.items()):
        theirs = tokens[i] if i < len(tokens) else None
        if theirs != token:
            raise InputError(f"{source}: its tokenizer has {'nothing' if theirs is None else repr(theirs)} at id {i} "
                             f"where corelib's {modality} vocabulary has {token!r} ({why})")
