"""Every command's --help says what it does, shows its defaults, gives examples that parse, and lists exit codes."""

from __future__ import annotations

import argparse
import shlex

import pytest


def _parsers():
    from bench.__main__ import build_parser as bench_parser
    from compressor.cli import build_parser as device_parser
    from export.cli import build_parser as export_parser

    for prog, top in (
        ("compressor", device_parser()),
        ("python -m export", export_parser()),
        ("python -m bench", bench_parser()),
    ):
        yield prog, None, top
        sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        for name, parser in sub.choices.items():
            yield prog, name, parser


PARSERS = list(_parsers())
IDS = [f"{prog} {name or ''}".strip() for prog, name, _ in PARSERS]


@pytest.mark.parametrize("prog,name,parser", PARSERS, ids=IDS)
def test_help_lists_examples_and_exit_codes(prog, name, parser):
    text = parser.format_help()
    assert "examples:" in text, text
    codes = text.split("exit codes:", 1)
    assert len(codes) == 2, f"{prog} {name}: no exit codes in --help"
    listed = {line.split()[0] for line in codes[1].splitlines() if line.strip() and line.split()[0].isdigit()}
    assert {"0", "1", "2", "130"} <= listed, listed


@pytest.mark.parametrize("prog,name,parser", PARSERS, ids=IDS)
def test_every_help_example_parses_with_the_command_it_shows(prog, name, parser):
    """An example that the parser refuses (a renamed flag, a missing argument) fails here."""
    examples = parser.epilog.split("examples:", 1)[1].split("\n\n", 1)[0].strip().splitlines()
    assert examples
    for example in examples:
        words = shlex.split(example)
        assert " ".join(words[: len(prog.split())]) == prog, example
        args = words[len(prog.split()) :]
        if name is not None:
            assert args[0] == name, f"an example of {name} runs {args[0]}: {example}"
            args = args[1:]
        try:
            parser.parse_args(args)
        except SystemExit as e:
            pytest.fail(f"{example!r} does not parse (exit {e.code})")


@pytest.mark.parametrize(
    "prog,name,parser", [p for p in PARSERS if p[1]], ids=[i for i, p in zip(IDS, PARSERS) if p[1]]
)
def test_every_command_says_what_it_does_and_shows_its_defaults(prog, name, parser):
    text = parser.format_help()
    assert parser.description, f"{prog} {name}: no one-line purpose"
    for action in parser._actions:
        if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            continue
        assert action.help, f"{prog} {name} {action.option_strings[0]}: no help"
        shown = parser._get_formatter()._expand_help(action) if action.help else ""
        assert "default" in shown, f"{prog} {name} {action.option_strings[0]}: default {action.default!r} not shown"
    assert "%(default)" not in text


def test_compressor_version_prints_the_package_version(capsys):
    from compressor import __version__
    from compressor.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"compressor {__version__}"
