"""Debian packages as the data source: `apt-get download` + `dpkg -x` into the cache, and their paths."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from corelib.config import cache_dir
from corelib.errors import InputError

# Debian package -> version the committed demo files were built from (a newer one is used with a warning).
PACKAGES = {
    "ncbi-rrna-data": "6.1.20170106+dfsg1-10",
    "ncbi-blast+": "2.12.0+ds-3+b1",
    "liblmdb0": None, "libmbedtls14": None, "libmbedcrypto7": None, "libmbedx509-1": None,
    "infernal": "1.1.4-1",
    "vsearch-examples": "2.22.1-1",
    "metastudent-data": "2.0.1-8",
    "mmseqs2-examples": "14-7e284+ds-1",
    "mmseqs2": None, "libgzstream0": None,
    "promod3-data": "3.2.1+ds-6",
}

BLAST_PKGS = ["ncbi-blast+", "liblmdb0", "libmbedtls14", "libmbedcrypto7", "libmbedx509-1"]

RRNA_DIR = "usr/share/ncbi/data"

INFERNAL_DIR = "usr/share/doc/infernal/examples/testsuite"


# Stockholm file -> (family, Rfam accession) for the infernal test-suite alignments used in the RNA pool.
INFERNAL_FAMILIES = {
    "tRNA.sto": ("tRNA", "RF00005"), "tRNA1415G.sto": ("tRNA", "RF00005"),
    "rnaseP-eubact.sto": ("RNaseP", "RF00010"), "RNaseP.sto": ("RNaseP", "RF00010"),
    "srp-euk.sto": ("SRP", "RF00017"), "Plant_SRP.sto": ("SRP", "RF01855"),
    "Vault.sto": ("Vault", "RF00006"), "snR75.sto": ("snR75", "RF01185"),
}


# ----------------------------------------------------------------------------- Debian packages
def fetch_packages(names, root: Path | None = None) -> dict[str, str]:
    """`apt-get download` + `dpkg -x` each package into the cache; returns {package: version}."""
    root = root or cache_dir() / "debian"
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    versions = {}
    for name in names:
        found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            _apt_download(name, PACKAGES.get(name), debs)
            found = sorted(debs.glob(f"{name}_*.deb"))
        deb = found[-1]
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                                 capture_output=True, text=True).stdout.strip()
        pinned = PACKAGES.get(name)
        if pinned and version != pinned:
            print(f"warning: {name} {version} differs from {pinned} used for the committed files; "
                  f"the build may not match byte for byte")
        target = root / "root" / name
        if not (target / ".unpacked").exists():
            target.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
            (target / ".unpacked").write_text(version)
        versions[name] = version
    return versions


def _apt_download(name: str, version: str | None, debs: Path) -> None:
    if shutil.which("apt-get") is None:
        raise InputError(f"apt-get not found: building {name!r} needs a Debian/Ubuntu machine")
    attempts = ([f"{name}={version}"] if version else []) + [name]
    for _ in range(2):
        for spec in attempts:
            if subprocess.run(["apt-get", "download", spec], cwd=debs, capture_output=True).returncode == 0:
                return
        if os.geteuid() == 0:  # stale or missing package lists: refresh once, then retry
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        else:
            break
    raise InputError(f"apt-get download {name} failed; run 'sudo apt-get update' and try again")


def _blastdbcmd(db: Path, fmt: str) -> list[str]:
    roots = cache_dir() / "debian" / "root"
    root = roots / "ncbi-blast+"
    libs = [f"{root}/usr/lib/ncbi-blast+"] + [f"{roots / p}/usr/lib/x86_64-linux-gnu" for p in BLAST_PKGS]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(libs))
    out = subprocess.run([str(root / "usr/bin/blastdbcmd"), "-db", str(db), "-entry", "all", "-outfmt", fmt],
                         check=True, capture_output=True, text=True, env=env)
    return out.stdout.splitlines()
