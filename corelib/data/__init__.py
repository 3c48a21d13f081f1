"""Data layer: FASTA, tokens, Debian sources, pools, labelled sets, manifests, clusters, external benchmark readers."""
from corelib.data.benchmarks import (
    BENCHMARKS,
    SPLITS,
    Benchmark,
    benchmark_folder,
    load_benchmark,
    read_crispr_on,
    read_distance_map,
    read_modification,
    read_ppi_affinity,
    read_rbp,
)
from corelib.data.build import build_dataset
from corelib.data.clusters import mmseqs_binary, mmseqs_clusters
from corelib.data.debian import (
    BLAST_PKGS,
    INFERNAL_DIR,
    INFERNAL_FAMILIES,
    PACKAGES,
    RRNA_DIR,
    fetch_packages,
)
from corelib.data.fasta import (
    MODALITIES,
    PROTEIN_LETTERS,
    PROTEIN_STANDARD,
    RNA_LETTERS,
    RNA_STANDARD,
    Record,
    check_fasta,
    gc_content,
    normalize,
    read_fasta,
)
from corelib.data.labelled import (
    COMPARTMENTS,
    LABELLED,
    MEMBRANE,
    PER_CLASS,
    PER_FAMILY_SS,
    STRUCT_CHAINS,
    STRUCTURE_DB,
    TYPE_CLASSES,
    WINDOW,
    build_labelled,
    ca_coordinates,
    contact_map,
    dssp3,
    heldout_sequences,
    leakage_report,
    load_labelled,
    near_duplicates,
    read_structure_db,
    split_of,
    to_dotbracket,
    wuss_pairs,
)
from corelib.data.manifests import (
    dataset_path,
    file_of,
    load_manifest,
    manifest_sources,
    manifests_dir,
    verify_datasets,
)
from corelib.data.pools import (
    DATASETS,
    join_pool,
    load_pool,
    pool_manifest,
    select_demo,
    summarize_pool,
    write_fasta_gz,
)
from corelib.data.sources import MAX_RESIDUES, clean_rows, id_key, source_readers
from corelib.data.store import TokenStore, pool_size, store_root, token_store
from corelib.data.tokens import (
    Vocab,
    count_pool,
    full_sequence_batches,
    gather_tokens,
    get_vocab,
    length_batches,
    mlm_batches,
    mlm_mask,
    pad_batch,
    residue_entropy,
    tokenize,
)

__all__ = ['TokenStore', 'pool_size', 'store_root', 'token_store', 'MODALITIES', 'RNA_LETTERS', 'PROTEIN_LETTERS', 'RNA_STANDARD', 'PROTEIN_STANDARD', 'Record', 'normalize', 'read_fasta', 'check_fasta', 'gc_content', 'Vocab', 'get_vocab', 'mlm_mask', 'pad_batch', 'length_batches', 'count_pool', 'gather_tokens', 'tokenize', 'mlm_batches', 'full_sequence_batches', 'residue_entropy', 'PACKAGES', 'BLAST_PKGS', 'RRNA_DIR', 'INFERNAL_DIR', 'INFERNAL_FAMILIES', 'fetch_packages', 'MAX_RESIDUES', 'id_key', 'clean_rows', 'source_readers', 'manifests_dir', 'load_manifest', 'manifest_sources', 'file_of', 'dataset_path', 'verify_datasets', 'DATASETS', 'select_demo', 'write_fasta_gz', 'pool_manifest', 'load_pool', 'summarize_pool', 'join_pool', 'mmseqs_binary', 'mmseqs_clusters', 'LABELLED', 'TYPE_CLASSES', 'COMPARTMENTS', 'MEMBRANE', 'PER_CLASS', 'PER_FAMILY_SS', 'STRUCT_CHAINS', 'WINDOW', 'STRUCTURE_DB', 'split_of', 'wuss_pairs', 'to_dotbracket', 'read_structure_db', 'dssp3', 'ca_coordinates', 'contact_map', 'heldout_sequences', 'build_labelled', 'load_labelled', 'near_duplicates', 'leakage_report', 'SPLITS', 'Benchmark', 'read_modification', 'read_crispr_on', 'read_distance_map', 'read_rbp', 'read_ppi_affinity', 'BENCHMARKS', 'benchmark_folder', 'load_benchmark', 'build_dataset']
