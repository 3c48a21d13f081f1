"""Self-attention of fair-esm's transformer layers through `torch.nn.functional.scaled_dot_product_attention`.

fair-esm's own path (`esm/multihead_attention.py`) materialises (B x heads, T, T) scores in every layer;
its fused path (`F.multi_head_attention_forward`) bypasses the q/k/v `nn.Linear` modules, whose forward
hooks form the per-sample gradients (corelib/influence/hooks.py). The classes below keep q_proj / k_proj /
v_proj / out_proj as the module's own `nn.Linear` submodules, called on the same time-first (T, B, C)
activations with the same parameter names (checkpoints load unchanged), and hand only the attention core
to SDPA: q scaled by head_dim^-0.5 and then rotated (ESM-2's rotary embeddings) exactly as fair-esm does,
pad keys excluded through the key padding mask. When attention weights are asked for (need_weights /
need_head_weights, e.g. `return_contacts`), fair-esm's original computation runs, so attention maps stay
available.

`attend_padding` drops the key padding mask (the official bio-coreset model file sets it to None, so
padded positions are attended to); it applies to both paths.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from esm.modules import TransformerLayer, gelu
from esm.multihead_attention import MultiheadAttention
from torch import nn

from corelib.errors import InputError

ATTENTION_MODES = ("sdpa", "eager")


class SDPAMultiheadAttention(MultiheadAttention):
    """fair-esm's MultiheadAttention with its attention core in SDPA (same parameters and submodules)."""

    use_sdpa: bool = True
    attend_padding: bool = False

    def forward(self, query, key, value, key_padding_mask=None, incremental_state=None, need_weights=True,
                static_kv=False, attn_mask=None, before_softmax=False, need_head_weights=False):
        """Self-attention as `esm.multihead_attention.MultiheadAttention.forward`, with SDPA as its core."""
        if self.attend_padding:
            key_padding_mask = None
        if not (self.use_sdpa and self.self_attention_case(query, key, value) and incremental_state is None
                and not static_kv and attn_mask is None and not before_softmax and not need_weights
                and not need_head_weights and self.bias_k is None and not self.add_zero_attn):
            return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                                   incremental_state=incremental_state, need_weights=need_weights,
                                   static_kv=static_kv, attn_mask=attn_mask, before_softmax=before_softmax,
                                   need_head_weights=need_head_weights)
        return sdpa_attention(self, query, key_padding_mask), None

    @staticmethod
    def self_attention_case(query, key, value) -> bool:
        """True when query, key and value are one tensor (the transformer layers' self-attention)."""
        return key is query and value is query


def sdpa_attention(attn: MultiheadAttention, x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """fair-esm's self-attention of time-first x (T, B, C) with SDPA as the core (esm/multihead_attention.py):
    q/k/v/out through the module's own Linear layers, q * head_dim^-0.5 before the rotary embedding,
    pad keys (key_padding_mask True) receive no attention."""
    tgt_len, bsz, embed_dim = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim

    def split(t):  # (T, B, C) -> (B, H, T, D)
        return t.view(tgt_len, bsz, heads, head_dim).permute(1, 2, 0, 3)

    q = split(attn.q_proj(x) * attn.scaling)
    k = split(attn.k_proj(x))
    v = split(attn.v_proj(x))
    if attn.rot_emb is not None:
        q, k = attn.rot_emb(q, k)  # rotates along the T axis (dim -2), as on fair-esm's (B*H, T, D)
    mask = None
    if key_padding_mask is not None and key_padding_mask.dim() != 0:
        mask = ~key_padding_mask.to(torch.bool).view(bsz, 1, 1, -1)  # True = attend
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0,
                                         dropout_p=attn.dropout if attn.training else 0.0)
    out = out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim)
    return attn.out_proj(out)


class SDPATransformerLayer(TransformerLayer):
    """fair-esm's TransformerLayer asking its attention for weights only when head weights are wanted."""

    def forward(self, x, self_attn_mask=None, self_attn_padding_mask=None, need_head_weights=False):
        """`esm.modules.TransformerLayer.forward` with need_weights=need_head_weights (the weights it returns
        are read only then), so the attention may take its SDPA path."""
        residual = x
        x = self.self_attn_layer_norm(x)
        x, attn = self.self_attn(query=x, key=x, value=x, key_padding_mask=self_attn_padding_mask,
                                 need_weights=need_head_weights, need_head_weights=need_head_weights,
                                 attn_mask=self_attn_mask)
        x = residual + x
        residual = x
        x = self.final_layer_norm(x)
        x = gelu(self.fc1(x))
        x = self.fc2(x)
        x = residual + x
        return x, attn


def install(net: nn.Module) -> None:
    """Swap fair-esm's TransformerLayer / MultiheadAttention modules of `net` for the SDPA-capable subclasses
    above, in place (parameters, buffers and hooks are untouched)."""
    for module in net.modules():
        if type(module) is TransformerLayer:
            module.__class__ = SDPATransformerLayer
        elif type(module) is MultiheadAttention:
            module.__class__ = SDPAMultiheadAttention


def configure(net: nn.Module, attention: str | None = None, attend_padding: bool | None = None) -> None:
    """Set the attention path ('sdpa' or 'eager', fair-esm's own) and whether pad keys are attended to, on
    every attention module of `net` (installed by `install`)."""
    if attention is not None and attention not in ATTENTION_MODES:
        raise InputError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {attention!r}")
    for module in net.modules():
        if isinstance(module, SDPAMultiheadAttention):
            if attention is not None:
                module.use_sdpa = attention == "sdpa"
            if attend_padding is not None:
                module.attend_padding = bool(attend_padding)
