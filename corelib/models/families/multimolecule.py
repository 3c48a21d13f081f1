"""RNA-FM as a Hugging Face model (`RnaFmForMaskedLM` of the optional `multimolecule` package, installed with
`pip install 'corelib[rnafm-hf]'`) (A.2). Its masked-LM head applies its `decoder` weight functionally; corelib
runs the head through its `decoder` Linear instead (`head_logits`, the same computation), so the decoder's
forward hook sees it and per-sample gradients cover the output layer (influence/rules.py).
"""
from __future__ import annotations

from torch import nn

from corelib.errors import InputError
from corelib.models.families.fair_esm import MAX_POSITIONS
from corelib.models.families.hf import HfFamily

EXTRA = "pip install 'corelib[rnafm-hf]'"


def _multimolecule():
    try:
        import multimolecule
    except ImportError:
        raise InputError(f"RNA-FM as a Hugging Face model needs the optional package multimolecule ({EXTRA})") from None
    return multimolecule


def head_logits(head: nn.Module, hidden):
    """multimolecule's MaskedLMHead on final hidden states through its `decoder` Linear: the head's own forward
    computes F.linear(transform(dropout(h)), decoder.weight, bias) with bias = decoder.bias (tied) (A.2)."""
    logits = head.decoder(head.transform(head.dropout(hidden)))
    return head.activation(logits) if head.activation is not None else logits


class RnaFmHf(HfFamily):
    """multimolecule's RnaFmForMaskedLM: RNA-FM's network (12 x 640, learned positions) in transformers' form (A.2)."""

    name = "rnafm"
    hf_classes = ("RnaFmForMaskedLM",)
    backbone = "model"

    def model_class(self, name=None):
        """multimolecule's class (importing multimolecule registers it with transformers) (A.2)."""
        return getattr(_multimolecule(), name or self.hf_classes[0])

    def build(self, spec, modality):
        """RnaFmForMaskedLM of `spec` on corelib's vocabulary, as fair-esm builds RNA-FM: no dropout, no token
        dropout, positions for MAX_POSITIONS tokens (multimolecule numbers them from pad + 2) (A.2)."""
        from corelib.data.tokens import get_vocab

        mm, vocab = _multimolecule(), get_vocab(modality)
        config = mm.RnaFmConfig(hidden_size=spec.embed_dim, num_hidden_layers=spec.layers,
                                num_attention_heads=spec.heads, intermediate_size=spec.ffn_dim or 4 * spec.embed_dim,
                                max_position_embeddings=MAX_POSITIONS + vocab.pad + 2, hidden_dropout=0.0,
                                attention_dropout=0.0, token_dropout=False, attn_implementation="sdpa",
                                vocab_size=len(vocab), pad_token_id=vocab.pad, bos_token_id=vocab.cls,
                                eos_token_id=vocab.eos, unk_token_id=vocab.unk, mask_token_id=vocab.mask,
                                null_token_id=vocab.index.get("<null_1>", vocab.unk))
        return mm.RnaFmForMaskedLM(config)

    def prepare(self, net):
        """The head's bias must be its decoder's (tied), and no fused attention path (A.2)."""
        head = net.lm_head
        if getattr(head, "bias", None) is not None and head.decoder.bias is not head.bias:
            raise InputError(f"{type(net).__name__}: lm_head.bias is not its decoder's bias (untied head)")
        for module in net.modules():   # fused attention bypasses the q/k/v Linear modules' hooks
            if hasattr(module, "enable_torch_version"):
                module.enable_torch_version = False
        super().prepare(net)

    def logits(self, model, tokens):
        """The backbone, then the head through its decoder Linear (`head_logits`) (Section 3.2)."""
        hidden = self.encoder(model.net)(input_ids=tokens, attention_mask=self.attention_mask(model, tokens))
        return head_logits(model.net.lm_head, hidden.last_hidden_state)
