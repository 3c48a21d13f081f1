"""The official bio-coreset scorer, reimplemented for the benchmark: torch.func vmap(jacrev) of an unmasked,
pad-inclusive loss over each sequence padded to 1024, w.r.t. lm_head.dense.weight."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _official_logits(net, tokens):
    """fair-esm ESM-1b forward without its `if not padding_mask.any()` branch, which torch.func.vmap
    cannot trace (the official script ran an older stack); numerically the same forward."""
    padding_mask = tokens.eq(net.padding_idx)
    x = net.embed_scale * net.embed_tokens(tokens) + net.embed_positions(tokens)
    if net.emb_layer_norm_before is not None:
        x = net.emb_layer_norm_before(x)
    x = (x * (1 - padding_mask.unsqueeze(-1).type_as(x))).transpose(0, 1)
    for layer in net.layers:
        x, _ = layer(x, self_attn_padding_mask=padding_mask)
    return net.lm_head(net.emb_layer_norm_after(x).transpose(0, 1))


class _Wrapper(torch.nn.Module):
    """The fair-esm net behind the vmap-traceable forward, for functional_call."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return _official_logits(self.net, x)


def official_scores(model, tokens, inv_fisher, batch_size=20, width=1024):
    """The official scorer, reimplemented: vmap(jacrev) of an unmasked, pad-inclusive loss over each
    sequence padded to `width`, w.r.t. lm_head.dense.weight; returns -sum(g^2 * inv_fisher) (Eq. 11, negated)."""
    from torch.func import functional_call, jacrev, vmap

    wrapper = _Wrapper(model.net)
    name = "net.lm_head.dense.weight"
    weight = {name: model.net.lm_head.dense.weight.detach()}

    def single(params, x):
        logits = functional_call(wrapper, params, (x.unsqueeze(0),))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), x.view(-1))

    out = []
    for start in range(0, len(tokens), batch_size):
        rows = tokens[start : start + batch_size]
        x = torch.full((len(rows), width), model.vocab.pad, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, : len(r)] = torch.from_numpy(r.astype(np.int64)[:width])
        with torch.no_grad():  # jacrev still differentiates w.r.t. `weight`; nothing else keeps a graph
            grads = vmap(jacrev(single), in_dims=(None, 0))(weight, x.to(inv_fisher.device))[name]
        out.append(-(grads.flatten(1).square() * inv_fisher.flatten()).sum(1))
    return torch.cat(out)
