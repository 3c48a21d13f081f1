"""Every numeric flag of every verb is checked when the command line is parsed: zero (where zero makes no
sense), negative and non-numeric values are one line on stderr and exit status 2, before any work."""
from __future__ import annotations

import argparse

import pytest

from corelib.cli import Number, build_parser, main

# The minimal valid command line of each verb (the flag under test is appended to it).
REQUIRED = {
    ("data", "check"): ["x.fa", "--modality", "rna"],
    ("data", "build"): [],
    ("data", "verify"): [],
    ("data", "leakage"): [],
    ("select",): ["--scores", "s", "--method", "cci", "--out", "o", "--budget", "5"],
    ("score",): ["--fasta", "x.fa", "--modality", "rna", "--out", "o"],
    ("pretrain",): ["--fasta", "x.fa", "--modality", "rna", "--out", "o"],
    ("experiment",): [],
    ("diagnose",): ["--scores", "s"],
    ("evaluate",): ["--checkpoint", "m.pt", "--fasta", "x.fa", "--modality", "rna"],
    ("run-notebooks",): [],
}
# Flags for which 0 is a meaningful value (written from what each quantity means, not read from the code).
ZERO_OK = {"--mask-seed", "--finetune-warmup-fraction", "--pretrain-warmup-fraction", "--sample", "--seed", "--hard-cutoff", "--save-every", "--finetune-weight-decay", "--pretrain-weight-decay",
           "--finetune-warmup-steps", "--pretrain-warmup-steps", "--scoring-damping", "--selection-hard-cutoff"}


def _verbs(parser: argparse.ArgumentParser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _verbs(sub, (*path, name))


def _numeric_flags():
    for path, parser in _verbs(build_parser()):
        for action in parser._actions:
            if action.option_strings and isinstance(action.type, Number):
                flag = action.option_strings[0]
                if path == ("select",) and flag in ("--budget", "--rate"):
                    yield path, flag, ["--scores", "s", "--method", "cci", "--out", "o"]
                else:
                    yield path, flag, REQUIRED[path]


FLAGS = list(_numeric_flags())


def test_every_verb_is_known_and_has_numeric_flags_under_test():
    assert {path for path, _ in _verbs(build_parser())} == set(REQUIRED)
    assert {p for p, _, _ in FLAGS} >= {("select",), ("score",), ("pretrain",), ("experiment",), ("data", "check")}
    assert len(FLAGS) > 40


def test_no_numeric_flag_bypasses_the_checks():
    for path, parser in _verbs(build_parser()):
        for action in parser._actions:
            assert action.type not in (int, float), (path, action.option_strings)


@pytest.mark.parametrize("path, flag, base", FLAGS, ids=[f"{' '.join(p)} {f}" for p, f, _ in FLAGS])
def test_bad_numbers_are_refused_while_parsing(path, flag, base, capsys):
    for value in ("-1", "-0.5", "abc", "nan", "" if flag != "--scoring-damping" else "x"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([*path, *base, flag, value])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and flag in err, (flag, value, err)
    if flag in ZERO_OK:
        build_parser().parse_args([*path, *base, flag, "0"])
    else:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([*path, *base, flag, "0"])
        assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_the_reported_cases_fail_before_any_work(cli, tmp_path):
    status, out, err = cli("pretrain", "--fasta", "rna_demo", "--modality", "rna", "--out", tmp_path / "p",
                           "--epochs", "-3")
    assert status == 2 and err.count("\n") == 1 and "must be >= 1" in err and "Traceback" not in err
    status, out, err = cli("score", "--fasta", "rna_demo", "--modality", "rna", "--out", tmp_path / "s",
                           "--damping", "-1")
    assert status == 2 and err.count("\n") == 1 and "must be >= 0" in err
    assert not (tmp_path / "p").exists() and not (tmp_path / "s").exists()


def test_an_unknown_model_preset_is_refused_before_any_work(tmp_path, capsys):
    status = main(["pretrain", "--fasta", "rna_demo", "--modality", "rna", "--out", str(tmp_path / "p"),
                   "--model", "huge"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "unknown model preset 'huge'" in err
    assert not (tmp_path / "p").exists()


def test_config_flags_reach_the_preset():
    from corelib.cli import _preset_from

    args = build_parser().parse_args(["experiment", "--selection-budget", "12", "--pretrain-lr", "0.003",
                                      "--limit", "40", "--seed", "2", "--downstream-epochs", "none"])
    p = _preset_from(args)
    assert (p.selection.budget, p.pretrain.lr, p.data.pool_limit, p.seed, p.downstream.epochs) == (12, 0.003, 40, 2,
                                                                                                 None)
    assert p.finetune.lr == 1e-5   # untouched fields keep the preset's values
