"""Model families, one adapter each, registered by name as `corelib.influence.rules` registers layer rules (A.2).

| family   | architecture                                  | from                                   |
|----------|-----------------------------------------------|----------------------------------------|
| `esm1b`  | RNA-FM's layout (ESM-1b)                      | fair-esm; RNA-FM `.pth`, ESM-1b `.pt`  |
| `esm2`   | ESM-2                                         | fair-esm; ESM-2 `.pt`                  |
| `esmc`   | ESM-C (`EsmcForMaskedLM`)                     | transformers; an ESM-C model folder    |
| `hf-esm` | ESM / ESM-2 (`EsmForMaskedLM`)                | transformers; an ESM model folder      |
| `rnafm`  | RNA-FM (`RnaFmForMaskedLM`), optional extra   | multimolecule; an RNA-FM model folder  |
"""
from __future__ import annotations

from corelib.errors import InputError
from corelib.models.families.base import Family, ModelSpec, torch_load, torch_save
from corelib.models.families.fair_esm import Esm1b, Esm2
from corelib.models.families.hf import Esmc, HfEsm
from corelib.models.families.multimolecule import RnaFmHf

FAMILIES: dict[str, Family] = {f.name: f for f in (Esm1b(), Esm2(), Esmc(), HfEsm(), RnaFmHf())}


def get_family(name: str, source=None) -> Family:
    """The registered family of that name; an unknown one is an InputError listing the known ones (A.2)."""
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        where = f"{source}: " if source else ""
        raise InputError(f"{where}unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_class(class_name: str | None, source) -> Family:
    """The family whose Hugging Face masked-LM classes include `class_name` (a folder's `architectures`) (A.2)."""
    for family in FAMILIES.values():
        if class_name in family.hf_classes:
            return family
    known = ", ".join(c for f in FAMILIES.values() for c in f.hf_classes)
    raise InputError(f"{source}: a {class_name or 'model without architectures'} folder; corelib drives the "
                     f"masked LMs {known}")


__all__ = ["FAMILIES", "Family", "ModelSpec", "family_of_class", "get_family", "torch_load", "torch_save"]
