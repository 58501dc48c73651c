"""NaN and infinity in every numeric option (float or int) of every command: one `error:` line, exit code 2.

The options are found by walking the real parsers (``t2i-bench`` and ``t2i-audit``), so an option added
later is checked too.
"""

from __future__ import annotations

import argparse

import pytest

from bench.cli import build_parser as bench_parser
from bench.cli import parse_float_list


def _audit_parser():
    from audit.cli import build_parser

    return build_parser()


def _numeric_options(parser: argparse.ArgumentParser):
    """(sub-command path, option string, required arguments) for every numeric option."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        required = []
        for action in parser._actions:
            if not action.option_strings and action.nargs != 0 and action.dest != "help":
                required.append("RUN" if action.nargs in (None, 1) else "RUN")
                if action.nargs in ("+", 2):
                    required.append("RUN2")
            elif action.required:
                required += [action.option_strings[0], "X"]
        for action in parser._actions:
            if action.option_strings and action.type in (float, int, parse_float_list):
                yield [], action.option_strings[-1], required
        return
    for name, sub in subs[0].choices.items():
        for path, option, required in _numeric_options(sub):
            yield [name, *path], option, required


CASES = [("t2i-bench", path, option, required) for path, option, required in _numeric_options(bench_parser())] + \
        [("t2i-audit", path, option, required) for path, option, required in _numeric_options(_audit_parser())]


def test_every_command_has_numeric_options_to_check():
    assert len(CASES) >= 10, CASES
    assert {"--guidance", "--threshold-cosine"} <= {option for _, _, option, _ in CASES}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("prog, path, option, required", CASES,
                         ids=[f"{c[0]} {' '.join(c[1])} {c[2]}" for c in CASES])
def test_non_finite_numbers_are_refused_in_one_line(prog, path, option, required, value, capsys):
    parser = bench_parser() if prog == "t2i-bench" else _audit_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([*path, *required, f"{option}={value}"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and "\n" not in err, err
    assert option in err and ("not a finite number" in err or "invalid int value" in err), err
