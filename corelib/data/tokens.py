"""The RNA-FM / ESM vocabularies, cropping, deterministic MLM masks (Section 3.2's m masked tokens), batching."""
from __future__ import annotations

import collections
import functools
from dataclasses import dataclass

import numpy as np

from corelib.data.fasta import PROTEIN_STANDARD, RNA_STANDARD, read_fasta
from corelib.errors import InputError


# ----------------------------------------------------------------------------- vocabularies
@dataclass(frozen=True)
class Vocab:
    """A token vocabulary in the exact order of RNA-FM's / fair-esm's Alphabet (so checkpoints load)."""

    modality: str
    tokens: tuple[str, ...]

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    @property
    def pad(self) -> int:
        return self.index["<pad>"]

    @property
    def cls(self) -> int:
        return self.index["<cls>"]

    @property
    def eos(self) -> int:
        return self.index["<eos>"]

    @property
    def mask(self) -> int:
        return self.index["<mask>"]

    @property
    def unk(self) -> int:
        return self.index["<unk>"]

    @functools.cached_property
    def standard_ids(self) -> np.ndarray:
        """Ids of the standard residues, used for the 10% random replacement of MLM masking."""
        letters = RNA_STANDARD if self.modality == "rna" else PROTEIN_STANDARD
        return np.array([self.index[c] for c in letters], dtype=np.int64)

    @functools.cached_property
    def _table(self) -> np.ndarray:
        table = np.full(256, self.unk, dtype=np.int64)
        for tok, i in self.index.items():
            if len(tok) == 1:
                table[ord(tok)] = i
        return table

    def encode(self, seq: str, max_tokens: int | None = None) -> np.ndarray:
        """<cls> + residues (cropped to max_tokens - 2, keeping the 5'/N-terminal part) + <eos>."""
        if max_tokens is not None:
            seq = seq[: max_tokens - 2]
        body = self._table[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
        return np.concatenate(([self.cls], body, [self.eos])).astype(np.int64)

    def __len__(self) -> int:
        return len(self.tokens)


@functools.cache
def get_vocab(modality: str) -> Vocab:
    """RNA: `fm.Alphabet.from_architecture('ESM-1b', 'rna')`; protein: fair-esm `Alphabet('ESM-1b')`."""
    if modality == "rna":
        import fm

        return Vocab("rna", tuple(fm.Alphabet.from_architecture("ESM-1b", "rna").all_toks))
    if modality == "protein":
        import esm

        return Vocab("protein", tuple(esm.Alphabet.from_architecture("ESM-1b").all_toks))
    raise InputError(f"unknown modality {modality!r}; choose rna or protein")


# ----------------------------------------------------------------------------- masking and batching
def masked_count(n_tokens: int, mask_prob: float = 0.15) -> int:
    """m, the number of positions `mlm_mask` predicts in a sequence of n_tokens (incl. <cls>/<eos>)."""
    return max(1, int(round(mask_prob * (n_tokens - 2))))


def mlm_mask(tokens: np.ndarray, index: int, seed: int, vocab: Vocab, mask_prob: float = 0.15, draw: int = 0,
             mask_only: bool = False):
    """BERT masking (15%; 80% <mask>, 10% random residue, 10% kept) keyed by (seed, sequence index, draw).

    Returns (inputs, labels) with labels = -100 where no prediction is made; <cls>/<eos> are never
    chosen. The same sequence gets the same mask whatever batch it is in (A.5 masking); draw 0 is the
    mask keyed by (seed, index) alone, further draws are independent masks of the same sequence.
    `mask_only`: every chosen position becomes <mask> (evaluation: no visible residue to copy), the same
    positions as the 80/10/10 mask of the same key.
    """
    rng = np.random.default_rng([seed, index] if draw == 0 else [seed, index, draw])
    n_res = len(tokens) - 2
    n_mask = masked_count(len(tokens), mask_prob)
    pos = 1 + np.sort(rng.choice(n_res, size=n_mask, replace=False))
    roll = rng.random(n_mask)
    rand_tok = vocab.standard_ids[rng.integers(0, len(vocab.standard_ids), size=n_mask)]
    inputs = tokens.copy()
    labels = np.full_like(tokens, -100)
    labels[pos] = tokens[pos]
    if mask_only:
        inputs[pos] = vocab.mask
        return inputs, labels
    inputs[pos[roll < 0.8]] = vocab.mask
    swap = (roll >= 0.8) & (roll < 0.9)
    inputs[pos[swap]] = rand_tok[swap]
    return inputs, labels


WINDOW_SALT = 7717   # keys the random windows apart from the masks of the same (seed, index)


def window(tokens: np.ndarray, max_tokens: int, start: int = 0) -> np.ndarray:
    """A crop of a full token array to `max_tokens`: <cls> + residues[start : start + max_tokens - 2] + <eos>
    (start 0 is the first window, as `Vocab.encode` crops); a sequence that fits is returned whole (A.5)."""
    if len(tokens) <= max_tokens:
        return tokens
    body = tokens[1 + start : 1 + start + max_tokens - 2]
    return np.concatenate([tokens[:1], body, tokens[-1:]])


def window_start(n_residues: int, max_tokens: int, seed: int, index: int) -> int:
    """A seeded random window start in [0, n_residues - (max_tokens - 2)], keyed by (seed, index) (A.5)."""
    room = n_residues - (max_tokens - 2)
    if room <= 0:
        return 0
    return int(np.random.default_rng([seed, index, WINDOW_SALT]).integers(0, room + 1))


def random_windows(tokens: list[np.ndarray], indices, max_tokens: int, seed: int) -> list[np.ndarray]:
    """Each full token array cropped to a seeded random window of `max_tokens` keyed by (seed, pool index):
    pretraining's crops (a new seed each epoch) and the fixed evaluation windows (A.5)."""
    return [window(t, max_tokens, window_start(len(t) - 2, max_tokens, seed, int(i))) for t, i in zip(tokens, indices)]


def pad_batch(rows: list[np.ndarray], pad_value: int) -> np.ndarray:
    """Right-pad 1-D token arrays to the longest row (a batch of similar lengths pads little)."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), pad_value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def length_batches(lengths, batch_size: int, seed: int | None = None, window: int = 64,
                   max_tokens: int | None = None) -> list[np.ndarray]:
    """Length-bucketed batches: sort by length inside windows of `window` batches, then cut.

    With a seed the pool order and the batch order are shuffled reproducibly (training); without,
    batches follow the pool order window by window (scoring). Every index appears exactly once.
    `max_tokens`: a token budget instead of a sequence count: each batch holds as many sequences as fit in
    `max_tokens` padded tokens (count x its longest length; a longer sequence is a batch of its own), and
    `batch_size` only sets the sorting window.
    """
    lengths = np.asarray(lengths)
    order = np.arange(len(lengths))
    rng = np.random.default_rng(seed) if seed is not None else None
    if rng is not None:
        order = rng.permutation(order)
    span = batch_size * window
    batches = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        if max_tokens is None:
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        else:
            batches.extend(_token_cuts(chunk, lengths[chunk], max_tokens))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _token_cuts(chunk: np.ndarray, sorted_lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Cut indices sorted by length into runs whose count x last (longest) length stays within max_tokens."""
    out, start = [], 0
    while start < len(chunk):
        # sorted ascending, so a run [start, stop) pads to sorted_lengths[stop - 1]
        fits = (np.arange(1, len(chunk) - start + 1) * sorted_lengths[start:]) <= max_tokens
        stop = start + max(1, int(np.argmin(fits)) if not fits.all() else len(fits))
        out.append(chunk[start:stop])
        start = stop
    return out


# ----------------------------------------------------------------------------- tensors for the model
def count_pool(fasta, modality: str, limit: int | None = None) -> int:
    """Number of records (validating the whole file on the way)."""
    n = 0
    for _ in read_fasta(fasta, modality):
        n += 1
        if limit is not None and n >= limit:
            break
    return n


def gather_tokens(fasta, modality: str, wanted, max_tokens: int) -> list[np.ndarray]:
    """Token arrays of the pool indices in `wanted` (sorted), streamed from the FASTA."""
    wanted = np.asarray(wanted)
    out, k = [], 0
    for i, rec in enumerate(read_fasta(fasta, modality)):
        if k == len(wanted):
            break
        if i == wanted[k]:
            out.extend(tokenize([rec.seq], modality, max_tokens))
            k += 1
    return out


def tokenize(seqs, modality: str, max_tokens: int | None) -> list[np.ndarray]:
    """Token arrays (uint8, <cls> ... <eos>, cropped to max_tokens unless None) for a list of sequences."""
    vocab = get_vocab(modality)
    return [vocab.encode(s, max_tokens).astype(np.uint8) for s in seqs]


def mlm_batches(tokens: list[np.ndarray], indices, batch_size: int, vocab: Vocab, mask_seed: int,
                order_seed: int | None = None, mask_prob: float = 0.15, draw: int = 0, mask_only: bool = False,
                crop: int | None = None, max_tokens_per_batch: int | None = None):
    """Yield (inputs, labels, pool indices) tensors: length-bucketed batches (of `batch_size` sequences, or of
    as many as fit in `max_tokens_per_batch` padded tokens), masks keyed by (mask_seed, pool index, draw).
    `tokens[k]` belongs to pool index `indices[k]`. `crop`: each longer sequence is cut to a random window of
    that many tokens keyed by (mask_seed, pool index) (A.5); `mask_only`: every predicted position is <mask>
    (evaluation)."""
    import torch

    indices = np.asarray(indices)
    if crop is not None:
        tokens = random_windows(tokens, indices, crop, mask_seed)
    for batch in length_batches([len(t) for t in tokens], batch_size, seed=order_seed,
                                max_tokens=max_tokens_per_batch):
        pairs = [mlm_mask(tokens[k].astype(np.int64), int(indices[k]), mask_seed, vocab, mask_prob, draw, mask_only)
                 for k in batch]
        yield (torch.from_numpy(pad_batch([p[0] for p in pairs], vocab.pad)),
               torch.from_numpy(pad_batch([p[1] for p in pairs], -100)), indices[batch])


def full_sequence_batches(tokens: list[np.ndarray], indices, batch_size: int, vocab: Vocab, width: int = 1024):
    """Compat (official bio-coreset): unmasked inputs padded to `width`, every position a label, pad
    included, in pool order."""
    import torch

    indices = np.asarray(indices)
    for start in range(0, len(tokens), batch_size):
        rows = [t.astype(np.int64)[:width] for t in tokens[start : start + batch_size]]
        padded = np.full((len(rows), width), vocab.pad, dtype=np.int64)
        for i, r in enumerate(rows):
            padded[i, : len(r)] = r
        x = torch.from_numpy(padded)
        yield x, x.clone(), indices[start : start + batch_size]


def residue_entropy(seqs) -> float:
    """Entropy (nats) of the residue frequencies of a set of sequences: the MLM loss of a model that
    predicts every masked residue from those frequencies alone."""
    counts = collections.Counter()
    for s in seqs:
        counts.update(s)
    p = np.array(list(counts.values()), dtype=np.float64)
    p /= p.sum()
    return float(-(p * np.log(p)).sum())
