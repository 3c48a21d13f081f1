"""Hugging Face masked LMs of transformers (A.2): ESM-C (`EsmcForMaskedLM`, the paper's protein model, in the
format users now get its weights) and ESM / ESM-2 (`EsmForMaskedLM`), driven batch-first with corelib's token
ids and an attention mask; SDPA attention, the eager path when attention maps are asked for.
"""
from __future__ import annotations

import math

import torch

from corelib.data.tokens import get_vocab
from corelib.errors import InputError
from corelib.models.families.base import Family, ModelSpec

MAX_POSITIONS = 1024
ESMC_VOCAB = 64    # rows of ESM-C's embedding and LM head: its 33 sequence tokens and unused ones


class HfFamily(Family):
    """A transformers masked LM whose encoder sits in attribute `backbone` and returns `last_hidden_state`
    after its final LayerNorm and `hidden_states` (embedding output, then each block's output) (A.2)."""

    backbone = ""

    def model_class(self, name: str | None = None):
        """The masked-LM class (`name`, one of `hf_classes`; default the first) (A.2)."""
        import transformers

        return getattr(transformers, name or self.hf_classes[0])

    def prepare(self, net):
        """SDPA unless a model was saved asking for another core (A.2)."""
        if getattr(net.config, "_attn_implementation", None) not in ("sdpa", "eager"):
            self.set_attention(net, "sdpa")

    def attention_mask(self, model, tokens: torch.Tensor) -> torch.Tensor:
        """1 where a key may be attended to: every position with `attend_padding`, else the non-pad ones (A.2)."""
        if model.attend_padding:
            return torch.ones_like(tokens)
        return (tokens != model.vocab.pad).long()

    def encoder(self, net):
        """The encoder module (the `backbone` attribute) (A.2)."""
        return getattr(net, self.backbone)

    def logits(self, model, tokens):
        """The model's own masked-LM forward (Section 3.2)."""
        return model.net(input_ids=tokens, attention_mask=self.attention_mask(model, tokens)).logits

    def states(self, model, tokens, layers, attention=False):
        """Layers 0..n-1 from `hidden_states`, layer n from `last_hidden_state` (after the final LayerNorm);
        attention maps from the eager core (SDPA returns none), pad rows and columns zeroed (Section 4.2)."""
        net, n = model.net, model.n_layers
        before = net.config._attn_implementation
        if attention:
            self.set_attention(net, "eager")
        try:
            mask = self.attention_mask(model, tokens)
            out = self.encoder(net)(input_ids=tokens, attention_mask=mask,
                                    output_hidden_states=any(k < n for k in layers), output_attentions=attention)
        finally:
            self.set_attention(net, before)
        found = {k: out.last_hidden_state if k == n else out.hidden_states[k] for k in layers}
        if not attention:
            return found, None
        maps = torch.stack(out.attentions, 1)
        keep = (tokens != model.vocab.pad).to(maps.dtype)
        return found, maps * (keep[:, None, None, :, None] * keep[:, None, None, None, :])

    def set_attention(self, net, mode):
        """transformers' attention implementation, read at every forward (A.2)."""
        if mode not in ("sdpa", "eager"):
            raise InputError(f"attention must be one of sdpa, eager, got {mode!r}")
        net.config._attn_implementation = mode

    def record(self, net):
        """The class name and the whole config (`config.to_dict()`) (A.2)."""
        return {"hf_class": type(net).__name__, "hf_config": net.config.to_dict()}

    def rebuild(self, spec, record, modality, source):
        """The class and config a corelib checkpoint recorded, freshly built (A.2)."""
        name = record.get("hf_class")
        if name not in self.hf_classes:
            raise InputError(f"{source}: a {self.name} model of class {name!r}; this corelib builds "
                             f"{', '.join(self.hf_classes)}")
        cls = self.model_class(name)
        try:
            return cls(cls.config_class.from_dict(dict(record["hf_config"])))
        except Exception as exc:   # noqa: BLE001 - a damaged or foreign config
            raise InputError(f"{source}: cannot build a {name} from its recorded config ({type(exc).__name__}: "
                             f"{(str(exc).splitlines() or [''])[0][:120]})") from None

    def from_folder(self, path, modality, config):
        """`from_pretrained` of the folder, local files only (A.2)."""
        cls = self.model_class(config.architectures[0] if config.architectures else None)
        net = cls.from_pretrained(path, config=config, local_files_only=True)
        return net, self.spec_of(net)

    def spec_of(self, net) -> ModelSpec:
        """The spec of a loaded network, from its config (A.2)."""
        c = net.config
        return ModelSpec(self.name, c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
                         getattr(c, "intermediate_size", 0) or 0)


def swiglu_width(embed_dim: int) -> int:
    """ESM-C's feed-forward width: 8/3 x embed_dim rounded up to a multiple of 256 (960 -> 2560, 1152 -> 3072) (A.2)."""
    return 256 * math.ceil(8 * embed_dim / 3 / 256)


class Esmc(HfFamily):
    """ESM-C (Hayes et al. 2025) as transformers' `EsmcForMaskedLM`: pre-LayerNorm blocks with QK-LayerNorm,
    rotary positions and SwiGLU, a 64-row vocabulary whose ids 0-30 and 32 are fair-esm's (A.2)."""

    name = "esmc"
    hf_classes = ("EsmcForMaskedLM",)
    backbone = "esmc"

    def build(self, spec, modality):
        """An `EsmcForMaskedLM` of `spec` laid out as the released checkpoints are: ESM_VOCAB rows, corelib's
        special-token ids (the same as ESM-C's), SDPA (A.2)."""
        from transformers import EsmcConfig, EsmcForMaskedLM

        vocab = get_vocab(modality)
        config = EsmcConfig(vocab_size=ESMC_VOCAB, hidden_size=spec.embed_dim, num_hidden_layers=spec.layers,
                            num_attention_heads=spec.heads, intermediate_size=spec.ffn_dim or swiglu_width(spec.embed_dim),
                            pad_token_id=vocab.pad, bos_token_id=vocab.cls, eos_token_id=vocab.eos,
                            mask_token_id=vocab.mask, attn_implementation="sdpa")
        return EsmcForMaskedLM(config)


class HfEsm(HfFamily):
    """ESM-2 / ESM-1b as transformers' `EsmForMaskedLM` (e.g. a facebook/esm2 folder) (A.2)."""

    name = "hf-esm"
    hf_classes = ("EsmForMaskedLM",)
    backbone = "esm"

    def build(self, spec, modality):
        """An `EsmForMaskedLM` laid out as fair-esm's ESM-2 (rotary, token dropout, no dropout) on corelib's
        vocabulary (A.2)."""
        from transformers import EsmConfig, EsmForMaskedLM

        vocab = get_vocab(modality)
        config = EsmConfig(vocab_size=len(vocab), hidden_size=spec.embed_dim, num_hidden_layers=spec.layers,
                           num_attention_heads=spec.heads, intermediate_size=spec.ffn_dim or 4 * spec.embed_dim,
                           position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                           pad_token_id=vocab.pad, mask_token_id=vocab.mask, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0, max_position_embeddings=MAX_POSITIONS + 2,
                           layer_norm_eps=1e-5, attn_implementation="sdpa")
        return EsmForMaskedLM(config)
