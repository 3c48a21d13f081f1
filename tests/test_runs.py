"""What a run guarantees (docs/runs.md), by injecting the faults: an output path that is a file, cannot be created
or cannot be written; a full disk during a write; empty and truncated files of every kind a run reads; two runs
into one folder; a coreset from another pool; a --model that contradicts the checkpoint. Each is one line on stderr
and exit status 2, with no traceback and no temporary file left, and a run interrupted by the fault then repeated
ends with the result of an uninterrupted one."""
from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from corelib.cli import main
from corelib.data import load_pool
from corelib.models import build_model, load_checkpoint, save_checkpoint
from corelib.selection import read_scores

ENV = dict(os.environ, PYTHONUNBUFFERED="1")   # the threads of the in-process runs (corelib.cpu.cpu_threads)
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers
def _fasta(path: Path, n: int, modality: str = "rna") -> Path:
    pool = load_pool(f"{modality}_demo", modality, limit=n)
    path.write_text("".join(f">{i} source={s}\n{q}\n" for i, s, q in zip(pool["id"], pool["source"], pool["seq"])))
    return path


def _score_args(f) -> list:
    return ["score", "--fasta", f["fasta"], "--modality", "rna", "--checkpoint", f["ckpt"], "--subset-size", 8,
            "--max-tokens", 66, "--shard-size", 8, "--quiet", "--device", "cpu"]


def _select_args(f) -> list:
    return ["select", "--scores", f["scores"], "--method", "topk", "--budget", 8]


def _pretrain_args(f) -> list:
    return ["pretrain", "--fasta", f["fasta"], "--modality", "rna", "--coreset", f["coreset"], "--epochs", 2,
            "--max-tokens", 66, "--save-every", 1, "--quiet", "--device", "cpu"]


def _run(*args) -> tuple[int, str]:
    """`python -m corelib ARGS` in a subprocess: (status, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "corelib", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=600)
    return proc.returncode, proc.stderr


def one_line(status, err: str, *names) -> None:
    """Exit status 2, exactly one line on stderr, no traceback, naming each of `names`."""
    assert status == 2, (status, err)
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for name in names:
        assert str(name) in err, (name, err)


def no_leftovers(folder: Path) -> None:
    """No temporary file and no lock file anywhere under `folder`."""
    left = [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp") or p.name == ".lock"]
    assert not left, left


def _mtimes(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in Path(folder).rglob("*") if p.is_file()}


def _weights(path: Path) -> dict:
    return load_checkpoint(path, "rna").state_dict()


def _same_weights(a: Path, b: Path) -> bool:
    x, y = _weights(a), _weights(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _chattr(flag: str, path: Path) -> bool:
    return shutil.which("chattr") is not None and subprocess.run(
        ["chattr", "-R", flag, str(path)], capture_output=True).returncode == 0


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@contextlib.contextmanager
def read_only(folder: Path, monkeypatch):
    """`folder` and everything under it made unwritable: chmod for a normal user; for root (whom chmod does not
    stop) the immutable attribute where the file system has one, else os and open calls that raise EROFS for any
    write under it (as read-only media would)."""
    folder = Path(folder)
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(0o500 if p.is_dir() else 0o400)
        try:
            yield "chmod"
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if os.environ.get("CORELIB_TEST_SIMULATE_RO") != "1" and _chattr("+i", folder):
        try:
            yield "chattr"
        finally:
            _chattr("-i", folder)
        return

    root = str(folder.resolve())

    def inside(path) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(root)
        except TypeError:   # a file descriptor
            return False

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    def guard(real, is_write):
        def call(path, *args, **kwargs):
            if inside(path) and is_write(*args, **kwargs):
                refuse(path)
            return real(path, *args, **kwargs)
        return call

    writes_open = lambda mode="r", *a, **k: any(c in mode for c in "wax+")  # noqa: E731
    monkeypatch.setattr(os, "open", guard(os.open, lambda flags, *a, **k: bool(flags & _WRITE_FLAGS)))
    monkeypatch.setattr(builtins, "open", guard(builtins.open, writes_open))
    monkeypatch.setattr(io, "open", guard(io.open, writes_open))
    for name in ("mkdir", "unlink", "remove", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), lambda *a, **k: True))
    for name in ("replace", "rename"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda src, dst, _real=real, **k: refuse(dst) if inside(dst) or inside(src)
                            else _real(src, dst, **k))
    try:
        yield "simulated"
    finally:
        monkeypatch.undo()


# ----------------------------------------------------------------------------- one finished run of each stage
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread in this process, as in the subprocesses (OMP_NUM_THREADS=1): the same reductions, so a run
    here and one in a subprocess give the same bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished score folder, coreset and pretraining folder of a 24-sequence RNA pool (the references every
    interrupted run is compared with), made through the command line."""
    tmp = tmp_path_factory.mktemp("finished")
    f = {"fasta": _fasta(tmp / "pool.fa", 24), "ckpt": save_checkpoint(build_model("rna", "tiny", seed=3),
                                                                       tmp / "tiny.pt")}
    f["scores"], f["coreset"], f["model"] = tmp / "scores", tmp / "coreset", tmp / "model"
    assert main([str(a) for a in [*_score_args(f), "--out", f["scores"]]]) == 0
    assert main([str(a) for a in [*_select_args(f), "--out", f["coreset"]]]) == 0
    assert main([str(a) for a in [*_pretrain_args(f), "--out", f["model"]]]) == 0
    f["tmp"] = tmp
    return f


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- output paths
def _verb_argv(verb: str, f: dict, out: Path) -> list:
    """A command of each writing verb whose output goes to `out` (a folder, or the JSON file of evaluate)."""
    return {"score": lambda: [*_score_args(f), "--out", out],
            "select": lambda: [*_select_args(f), "--out", out],
            "pretrain": lambda: [*_pretrain_args(f), "--out", out],
            "evaluate": lambda: ["evaluate", "--checkpoint", f["ckpt"], "--fasta", f["fasta"], "--modality", "rna",
                                 "--json", out, "--device", "cpu"],
            "data build": lambda: ["data", "build", "rna_demo", "--out", out]}[verb]()


VERBS = ["score", "select", "pretrain", "evaluate", "data build"]


@pytest.mark.parametrize("verb", VERBS)
def test_an_existing_file_as_output_is_one_line(cli, finished, tmp_path, verb):
    target = tmp_path / "taken"
    target.write_text("a file the user keeps\n")
    out = target if verb != "evaluate" else tmp_path   # evaluate --json: a folder where a file should be
    status, _, err = cli(*_verb_argv(verb, finished, out))
    one_line(status, err, out)
    assert target.read_text() == "a file the user keeps\n"
    no_leftovers(tmp_path)


@pytest.mark.parametrize("verb", VERBS)
def test_an_output_path_that_cannot_be_created_is_one_line(cli, finished, verb):
    out = Path("/proc/corelib-test/out") / ("x.json" if verb == "evaluate" else "")
    status, _, err = cli(*_verb_argv(verb, finished, out))
    one_line(status, err, "/proc/corelib-test")


@pytest.mark.parametrize("verb", VERBS)
def test_an_unwritable_output_folder_is_one_line(cli, finished, tmp_path, monkeypatch, verb):
    folder = tmp_path / "ro"
    folder.mkdir()
    out = folder / "x.json" if verb == "evaluate" else folder
    with read_only(folder, monkeypatch):
        status, _, err = cli(*_verb_argv(verb, finished, out))
        assert list(folder.iterdir()) == []
    one_line(status, err, folder)


def test_the_experiment_grid_opens_its_folder_the_same_way(cli, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "smoke" / "experiment").mkdir(parents=True)
    (runs / "smoke" / "experiment" / "rna").write_text("not a folder\n")
    monkeypatch.setenv("CORELIB_RUNS", str(runs))
    status, _, err = cli("experiment", "--preset", "smoke", "--modality", "rna", "--quiet", "--device", "cpu")
    one_line(status, err, runs / "smoke" / "experiment" / "rna", "not a folder")


# ----------------------------------------------------------------------------- finished folders are read
def test_a_finished_folder_reruns_on_read_only_media(cli, finished, tmp_path, monkeypatch):
    f = dict(finished)
    for key in ("scores", "coreset", "model"):
        f[key] = _copy(finished[key], tmp_path / key)
    before = _mtimes(tmp_path)
    with read_only(tmp_path, monkeypatch):
        for argv in (_score_args(f) + ["--out", f["scores"]], _select_args(f) + ["--out", f["coreset"]],
                     _pretrain_args(f) + ["--out", f["model"]]):
            status, _, err = cli(*argv)
            assert status == 0 and err == "", (argv[0], err)
    assert _mtimes(tmp_path) == before   # nothing rewritten
    pd.testing.assert_frame_equal(read_scores(f["scores"])[0], read_scores(finished["scores"])[0])


def test_a_finished_folder_of_other_settings_is_refused(cli, finished, tmp_path):
    scores = _copy(finished["scores"], tmp_path / "scores")
    status, _, err = cli(*_score_args(finished), "--out", scores, "--scope", "linear")
    one_line(status, err, scores, "other settings (scope)")
    coreset = _copy(finished["coreset"], tmp_path / "coreset")
    status, _, err = cli("select", "--scores", finished["scores"], "--method", "topk", "--budget", 9, "--out", coreset)
    one_line(status, err, coreset, "holds a coreset with other settings (budget")
    model = _copy(finished["model"], tmp_path / "model")
    status, _, err = cli(*_pretrain_args(finished), "--out", model, "--pretrain-lr", 0.01)
    one_line(status, err, model, "pretrain.lr")


# ----------------------------------------------------------------------------- a full disk
def test_a_full_disk_while_writing_a_shard_is_one_line_and_the_rerun_finishes_the_same(cli, finished, tmp_path,
                                                                                       monkeypatch):
    real = pd.DataFrame.to_parquet

    def full_disk(self, path, *args, **kwargs):
        if "shard_000001" in str(path):
            Path(path).write_bytes(b"PAR1 half a shard")   # the disk fills up part way through the file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, path, *args, **kwargs)

    out = tmp_path / "scores"
    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    status, _, err = cli(*_score_args(finished), "--out", out)
    monkeypatch.undo()
    one_line(status, err, out / "shards" / "shard_000001.parquet", "No space left on device")
    no_leftovers(out)
    kept = (out / "shards" / "shard_000000.parquet").stat().st_mtime_ns
    assert not (out / "scores.parquet").exists()
    status, _, err = cli(*_score_args(finished), "--out", out)
    assert status == 0, err
    assert (out / "shards" / "shard_000000.parquet").stat().st_mtime_ns == kept   # finished work is not redone
    pd.testing.assert_frame_equal(read_scores(out)[0], read_scores(finished["scores"])[0])


def _file_size_limit(limit: int):
    def apply():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))   # Python ignores SIGXFSZ: writes fail, EFBIG
    return apply


def test_a_checkpoint_write_refused_by_the_disk_is_one_line_and_the_rerun_trains_the_same(finished, tmp_path):
    out = tmp_path / "model"
    argv = [sys.executable, "-m", "corelib", *map(str, _pretrain_args(finished)), "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600,
                          preexec_fn=_file_size_limit(64 * 1024))   # torch writes checkpoint.pt through a handle
    one_line(proc.returncode, proc.stderr, out / "checkpoint.pt", "File too large")
    no_leftovers(out)
    assert not (out / "model.pt").exists()
    status, err = _run(*_pretrain_args(finished), "--out", out)
    assert status == 0, err
    assert _same_weights(out / "model.pt", finished["model"] / "model.pt")


# ----------------------------------------------------------------------------- damaged files a run is given
def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])


@pytest.mark.parametrize("how", ["empty", "truncated"])
@pytest.mark.parametrize("kind", ["checkpoint", "fasta", "indices.npy", "coreset manifest.json", "scores.parquet",
                                  "scores.json", "run.json"])
def test_a_damaged_input_is_refused_in_one_line(cli, finished, tmp_path, kind, how):
    f = dict(finished)
    if kind == "checkpoint":
        f["ckpt"] = tmp_path / "model.pt"
        shutil.copy(finished["ckpt"], f["ckpt"])
        damaged, argv = f["ckpt"], lambda: [*_score_args(f), "--out", tmp_path / "out"]
    elif kind == "fasta":
        f["fasta"] = tmp_path / "pool.fa.gz"
        import gzip

        f["fasta"].write_bytes(gzip.compress(finished["fasta"].read_bytes(), mtime=0))
        damaged, argv = f["fasta"], lambda: [*_score_args(f), "--out", tmp_path / "out"]
    elif kind in ("indices.npy", "coreset manifest.json"):
        f["coreset"] = _copy(finished["coreset"], tmp_path / "coreset")
        damaged = f["coreset"] / kind.split()[-1]
        argv = lambda: [*_pretrain_args(f), "--out", tmp_path / "out"]  # noqa: E731
    elif kind in ("scores.parquet", "scores.json"):
        f["scores"] = _copy(finished["scores"], tmp_path / "scores")
        damaged, argv = f["scores"] / kind, lambda: [*_select_args(f), "--out", tmp_path / "out"]
    else:
        out = _copy(finished["scores"], tmp_path / "scores")
        damaged, argv = out / "run.json", lambda: [*_score_args(f), "--out", out]
    _damage(damaged, how)
    if kind == "fasta" and how == "empty":
        damaged.unlink()   # a FASTA path that does not exist (an empty FASTA has its own test in test_scoring)
    status, _, err = cli(*argv())
    one_line(status, err, damaged)
    no_leftovers(tmp_path)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_zero_byte_checkpoint_names_what_is_wrong():
    from corelib.errors import InputError
    from corelib.models.families import torch_load

    path = Path(os.devnull)
    with pytest.raises(InputError, match="empty or truncated file"):
        torch_load(path)


@pytest.mark.parametrize("how", ["empty", "truncated"])
@pytest.mark.parametrize("kind", ["shard", "fisher.pt", "finetuned.pt"])
def test_a_damaged_intermediate_is_recomputed_with_one_warning(cli, finished, tmp_path, kind, how):
    out = _copy(finished["scores"], tmp_path / "scores")
    for name in ("scores.parquet", "scores.json"):   # the run was stopped before its merge
        (out / name).unlink()
    later = {"shard": [], "fisher.pt": ["shards"], "finetuned.pt": ["shards", "fisher.pt"]}[kind]
    for name in later:   # ... and before anything made after the damaged file
        shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    damaged = out / "shards" / "shard_000001.parquet" if kind == "shard" else out / kind
    _damage(damaged, how)
    status, _, err = cli(*_score_args(finished), "--out", out)
    assert status == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and str(damaged) in lines[0], err
    no_leftovers(out)
    pd.testing.assert_frame_equal(read_scores(out)[0], read_scores(finished["scores"])[0])


@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_a_damaged_training_checkpoint_restarts_the_run_with_one_warning(cli, finished, tmp_path, how):
    out = _copy(finished["model"], tmp_path / "model")
    (out / "model.pt").unlink()
    (out / "history.csv").unlink()
    _damage(out / "checkpoint.pt", how)
    status, _, err = cli(*_pretrain_args(finished), "--out", out)
    assert status == 0, err
    assert len(err.splitlines()) == 1 and err.startswith("warning: ") and "checkpoint.pt" in err, err
    assert _same_weights(out / "model.pt", finished["model"] / "model.pt")
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv").drop(columns="seconds"),
                                  pd.read_csv(finished["model"] / "history.csv").drop(columns="seconds"))


# ----------------------------------------------------------------------------- two runs into one folder
HOLD = ("import sys, time\nfrom pathlib import Path\nfrom corelib.rundir import open_run\n"
        "with open_run(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(float(sys.argv[2]))\n"
        "    (Path(sys.argv[1]).parent / 'released').touch()\n")


@contextlib.contextmanager
def held(folder: Path, seconds: float):
    """Another process holding `folder` (as a run writing it would) for `seconds`, then touching `released` beside
    it just before it lets go."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env=dict(ENV, PYTHONPATH=str(ROOT)), cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.wait(timeout=120)


def test_a_second_run_into_a_busy_folder_is_one_line_naming_the_holder(cli, finished, tmp_path):
    out = tmp_path / "coreset"
    with held(out, 60) as holder:
        status, _, err = cli(*_select_args(finished), "--out", out)
        one_line(status, err, out, "busy", f"pid {holder.pid}", "(-c ")   # the holder's pid and command line
        assert not (out / "indices.npy").exists()
        holder.kill()


def test_a_run_asked_to_wait_waits_for_the_holder_and_then_runs(cli, finished, tmp_path):
    out = tmp_path / "coreset"
    with held(out, 3):
        status, _, err = cli(*_select_args(finished), "--out", out, "--wait")
        assert (tmp_path / "released").exists()   # it ran only once the holder was done
    assert status == 0 and len(err.splitlines()) == 1 and err.startswith("warning: ") and "busy" in err, err
    assert (out / "indices.npy").read_bytes() == (finished["coreset"] / "indices.npy").read_bytes()
    no_leftovers(out)


def test_two_runs_started_together_into_one_folder_train_once(finished, tmp_path):
    out = tmp_path / "model"
    args = [a for a in map(str, _pretrain_args(finished)) if a != "--quiet"]   # a run that trains shows its bar
    argv = [sys.executable, "-m", "corelib", *args, "--out", str(out)]
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for status, err in results:   # each either trained, found it finished, or was told the folder is busy
        assert status == 0 or (status == 2 and err.count("\n") == 1 and "busy: pid" in err), err
    assert sum("pretrain rna" in err for _, err in results) == 1, results   # one of them trained, once
    assert _same_weights(out / "model.pt", finished["model"] / "model.pt")
    no_leftovers(out)


def test_nested_opens_of_one_folder_by_one_process_share_the_lock(tmp_path):
    from corelib.rundir import open_run

    with open_run(tmp_path / "x"):
        with open_run(tmp_path / "x"):
            assert (tmp_path / "x" / ".lock").exists()
        assert (tmp_path / "x" / ".lock").exists()
    assert not (tmp_path / "x" / ".lock").exists()


# ----------------------------------------------------------------------------- coresets know their pool
def test_a_coreset_from_the_other_modalitys_pool_is_refused_naming_both_pools(cli, finished, tmp_path):
    protein = _fasta(tmp_path / "protein.fa", 24, "protein")
    out = tmp_path / "model"
    status, _, err = cli("pretrain", "--fasta", protein, "--modality", "protein", "--coreset", finished["coreset"],
                         "--epochs", 1, "--out", out, "--quiet")
    one_line(status, err, finished["coreset"], finished["fasta"], protein, "rna pool", "protein pool")
    assert not out.exists()


def test_a_coreset_from_another_pool_of_the_same_modality_is_refused(cli, finished, tmp_path):
    other = _fasta(tmp_path / "other.fa", 30)   # the same first 24 records and 6 more: another pool
    status, _, err = cli("pretrain", "--fasta", other, "--modality", "rna", "--coreset", finished["coreset"],
                         "--epochs", 1, "--out", tmp_path / "model", "--quiet")
    one_line(status, err, finished["coreset"], other, "sha256")


def test_a_coreset_records_its_pool(finished):
    from corelib.files import sha256_file

    manifest = json.loads((finished["coreset"] / "manifest.json").read_text())
    pool = load_pool("rna_demo", "rna", limit=24)
    assert Path(manifest["pool"].pop("fasta")).resolve() == finished["fasta"].resolve()
    assert manifest["pool"] == {"sha256": sha256_file(finished["fasta"]),
                                "bytes": finished["fasta"].stat().st_size, "modality": "rna", "sequences": 24,
                                "first": [0, pool["id"][0]], "last": [23, pool["id"][23]]}


def test_an_older_coreset_without_its_pool_still_loads_with_one_warning(cli, finished, tmp_path):
    coreset = _copy(finished["coreset"], tmp_path / "coreset")
    manifest = json.loads((coreset / "manifest.json").read_text())
    del manifest["pool"]
    (coreset / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "model"
    status, _, err = cli(*_pretrain_args(dict(finished, coreset=coreset)), "--out", out)
    assert status == 0 and len(err.splitlines()) == 1 and err.startswith("warning: ") and str(coreset) in err, err
    assert _same_weights(out / "model.pt", finished["model"] / "model.pt")


# ----------------------------------------------------------------------------- settings say what ran
def test_a_model_that_contradicts_the_checkpoint_is_refused(cli, finished, tmp_path):
    out = tmp_path / "scores"
    status, _, err = cli(*_score_args(finished), "--out", out, "--model", "small")
    one_line(status, err, finished["ckpt"], "--model small", "(--model tiny)")
    assert not (out / "run.json").exists()


def test_without_model_the_record_is_the_checkpoints(cli, finished, tmp_path):
    small = save_checkpoint(build_model("rna", "small", seed=1), tmp_path / "small.pt")
    out = tmp_path / "scores"
    status, _, err = cli(*_score_args(dict(finished, ckpt=small)), "--out", out, "--no-finetune")
    assert status == 0, err
    assert json.loads((out / "run.json").read_text())["model"] == "small"
    meta = read_scores(out)[1]
    assert meta["model"] == "small" and meta["model_spec"]["layers"] == 4 and meta["model_spec"]["embed_dim"] == 128


def test_a_run_that_failed_before_any_work_does_not_block_the_corrected_command(cli, finished, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"")
    out = tmp_path / "scores"
    status, _, err = cli(*_score_args(dict(finished, ckpt=bad)), "--out", out)
    one_line(status, err, bad)
    assert not (out / "run.json").exists()
    status, _, err = cli(*_score_args(finished), "--out", out)
    assert status == 0, err
    pd.testing.assert_frame_equal(read_scores(out)[0], read_scores(finished["scores"])[0])


def test_a_failed_write_removes_its_temporary_file_and_names_the_final_path(tmp_path):
    from corelib.errors import InputError
    from corelib.files import atomic_write, save_npy

    def full(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(InputError, match=r"x\.npy: cannot write it: No space left on device"):
        atomic_write(tmp_path / "x.npy", full)
    save_npy(tmp_path / "y.npy", np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.npy"]
    with pytest.raises(ZeroDivisionError):   # a programmer's error is not turned into an InputError
        atomic_write(tmp_path / "z.txt", lambda tmp: (tmp.write_text("x"), 1 / 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.npy"]


def test_read_only_simulation_refuses_writes(tmp_path, monkeypatch):
    """The root fallback of `read_only` (simulated read-only media) refuses what a read-only mount refuses."""
    monkeypatch.setenv("CORELIB_TEST_SIMULATE_RO", "1")
    (tmp_path / "f").write_text("x")
    if os.geteuid() != 0:
        pytest.skip("the simulation is the fallback for root only")
    with read_only(tmp_path, monkeypatch) as how:
        assert how == "simulated"
        for attempt in (lambda: (tmp_path / "g").write_text("y"), lambda: os.mkdir(tmp_path / "d"),
                        lambda: os.replace(tmp_path / "f", tmp_path / "h"), lambda: os.open(tmp_path / "i", os.O_CREAT)):
            with pytest.raises(OSError) as exc:
                attempt()
            assert exc.value.errno == errno.EROFS
        assert (tmp_path / "f").read_text() == "x"

