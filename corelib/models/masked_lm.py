"""One masked-LM interface over every model family (`corelib.models.families`), and the model presets (A.2)."""
from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from corelib.data.tokens import get_vocab
from corelib.errors import InputError
from corelib.models.attention import ATTENTION_MODES
from corelib.models.families import Family, ModelSpec, get_family

# RNA-FM: 12 layers, 640 dim, 20 heads, FFN 5120, learned positions (A.2), in fair-esm's layout ("paper") or as
# multimolecule's RnaFmForMaskedLM ("rnafm-hf", optional extra). Protein: ESM-C (Hayes et al. 2025) as
# transformers' EsmcForMaskedLM; "paper" = ESM-C 600M (36 layers, 1152 dim, 18 heads, SwiGLU 3072), "esmc-300m"
# the smaller release (30 / 960 / 15, 2560). ESM-2 stays available ("tiny", "small", "esm2-650m").
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


class MaskedLM(nn.Module):
    """One interface over the model families (A.2): tokens (B, T) -> logits (B, T, V); the states of chosen
    layers, numbered the same for every family (`corelib.models.families.base`), and attention maps.

    `time_first` lists submodule-name prefixes whose activations are laid out (T, B, C) (fair-esm's transformer
    layers); per-sample gradients need to know where the batch axis is. `attention` ("sdpa", the default, or
    "eager", the family's own unfused computation) picks the attention core; attention maps always come from the
    unfused one. `attend_padding=True` lets every position attend to pad keys, as the official bio-coreset model
    file does (compat scoring).
    """

    def __init__(self, net: nn.Module, family: Family | str, modality: str, spec: dict | ModelSpec,
                 attention: str = "sdpa", attend_padding: bool = False):
        super().__init__()
        self.net, self.family, self.modality = net, get_family(family), modality
        self.spec = asdict(spec) if isinstance(spec, ModelSpec) else dict(spec)
        self.vocab = get_vocab(modality)
        self.time_first = self.family.time_first
        self.family.prepare(net)
        self._attention = self._attend_padding = None
        self.attention, self.attend_padding = attention, attend_padding

    @property
    def n_layers(self) -> int:
        """Transformer blocks of the model (A.2)."""
        return int(self.spec["layers"])

    @property
    def attention(self) -> str:
        """The attention core: "sdpa" or "eager" (A.2)."""
        return self._attention

    @attention.setter
    def attention(self, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise InputError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {mode!r}")
        self.family.set_attention(self.net, mode)
        self._attention = mode

    @property
    def attend_padding(self) -> bool:
        """True: no key padding mask, pad positions are attended to (the official bio-coreset model file)."""
        return self._attend_padding

    @attend_padding.setter
    def attend_padding(self, value: bool) -> None:
        self.family.set_attend_padding(self.net, bool(value))
        self._attend_padding = bool(value)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of the masked LM for tokens (B, T) (Section 3.2)."""
        return self.family.logits(self, tokens)

    def states(self, tokens: torch.Tensor, layers, attention: bool = False):
        """States of `layers` stacked (B, len(layers), T, C) (layer 0 = the input of block 1, layer n = after
        the final LayerNorm) and, with `attention`, every block's maps (B, n, heads, T, T) (Section 4.2)."""
        layers = [int(k) for k in layers]
        bad = [k for k in layers if not 0 <= k <= self.n_layers]
        if bad:
            raise InputError(f"layer {bad[0]} of a {self.n_layers}-layer model; layers are 0..{self.n_layers}")
        found, maps = self.family.states(self, tokens, layers, attention)
        return torch.stack([found[k] for k in layers], 1), maps

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, C), the LM head's input (layer n), for downstream heads (Appendix B)."""
        return self.states(tokens, [self.n_layers])[0][:, 0]


def model_name(model: MaskedLM, given: str | None = None, source=None, prefer: str | None = None) -> str:
    """The model preset a loaded model is recorded under (A.2): `given`, which must describe its architecture (else
    an InputError naming both), or when None the preset of its architecture (`prefer` when it is one of several
    with it; "family:LxD" when none has it)."""
    spec = model.spec
    if given is None and prefer is not None and asdict(MODEL_PRESETS.get((model.modality, prefer), ModelSpec(
            "", 0, 0, 0))) == spec:
        return prefer
    if given is not None:
        want = MODEL_PRESETS.get((model.modality, given))
        if want is None or asdict(want) != spec:
            have = next((n for (m, n), s in MODEL_PRESETS.items() if m == model.modality and asdict(s) == spec), None)
            raise InputError(f"{source}: a {_describe(spec)} model{f' (--model {have})' if have else ''}, but "
                             f"--model {given} is {_describe(asdict(want)) if want else 'unknown'}; drop --model "
                             f"(the checkpoint says what runs) or give the one that matches")
        return given
    return next((n for (m, n), s in MODEL_PRESETS.items() if m == model.modality and asdict(s) == spec),
                f"{spec['family']}:{spec['layers']}x{spec['embed_dim']}")


def _describe(spec: dict) -> str:
    return f"{spec['family']} {spec['layers']}-layer {spec['embed_dim']}-dim"


def build_model(modality: str, preset: str = "tiny", seed: int = 0) -> MaskedLM:
    """A freshly initialised masked LM of a preset (MODEL_PRESETS), BERT-initialised from `seed` (A.2, A.3)."""
    key = (modality, preset)
    if key not in MODEL_PRESETS:
        known = sorted({p for m, p in MODEL_PRESETS if m == modality})
        raise InputError(f"unknown model preset {preset!r} for {modality}; choose one of {', '.join(known)}")
    spec = MODEL_PRESETS[key]
    family = get_family(spec.family)
    torch.manual_seed(seed)
    net = family.build(spec, modality)
    net.apply(bert_init)
    return MaskedLM(net, family, modality, spec)


def bert_init(module: nn.Module) -> None:
    """BERT / ESM-2 initialisation for training from scratch (normal, std 0.02; zero biases; unit LayerNorm):
    fair-esm's modules keep PyTorch's defaults, whose N(0, 1) token embeddings (tied to the LM head) start
    the MLM loss near 15 nats instead of ln(vocabulary) (A.3)."""
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
