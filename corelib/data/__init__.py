"""Data layer: FASTA, tokens, Debian sources, pools, labelled sets, manifests, clusters, external benchmark readers."""
from corelib.data.build import build_dataset
from corelib.data.clusters import mmseqs_clusters
from corelib.data.fasta import MODALITIES, PROTEIN_LETTERS, RNA_LETTERS, read_fasta
from corelib.data.labelled import load_labelled
from corelib.data.manifests import dataset_path, file_of, load_manifest, manifest_sources, verify_datasets
from corelib.data.pools import join_pool, load_pool, summarize_pool
from corelib.data.store import TokenStore, token_store
from corelib.data.tokens import get_vocab, mlm_batches, mlm_mask, residue_entropy, tokenize

__all__ = [
    "MODALITIES",
    "PROTEIN_LETTERS",
    "RNA_LETTERS",
    "TokenStore",
    "build_dataset",
    "dataset_path",
    "file_of",
    "get_vocab",
    "join_pool",
    "load_labelled",
    "load_manifest",
    "load_pool",
    "manifest_sources",
    "mlm_batches",
    "mlm_mask",
    "mmseqs_clusters",
    "read_fasta",
    "residue_entropy",
    "summarize_pool",
    "token_store",
    "tokenize",
    "verify_datasets",
]
