"""Bad input as a new user types it: every numeric option of every command refuses nan, inf, negative and huge
values with one line and exit code 2, and the cases found by hand fail cleanly, leaving nothing behind."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from contrafeat.cli import build_parser, main
from contrafeat.cli_reference import subcommand_parsers
from contrafeat.options import MAX_COUNT, Domain

pytestmark = pytest.mark.usefixtures("isolated_cache")

BAD_NUMBERS = ("nan", "inf", "-inf", "-1", "-0.5", "1e12", str(10 * MAX_COUNT))


def numeric_options() -> list[tuple[list[str], argparse.Action, list[str]]]:
    """(command words, action, the positionals before it) for every option or positional that takes a number."""
    found = []
    for command, parser in subcommand_parsers(build_parser(), "contrafeat"):
        words = command.split()[1:]
        positionals: list[str] = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if action.type in (int, float) or isinstance(action.type, Domain):
                found.append((words, action, list(positionals)))
            if not action.option_strings:
                positionals.append(action.dest)
    return found


def test_every_numeric_option_has_a_domain() -> None:
    bare = [
        f"{' '.join(words)} {(action.option_strings or [action.dest])[0]}"
        for words, action, _ in numeric_options()
        if action.choices is None and not isinstance(action.type, Domain)
    ]
    assert bare == []
    assert len(numeric_options()) > 60


@pytest.mark.parametrize(
    "words, action, before",
    numeric_options(),
    ids=[f"{' '.join(words)} {(action.option_strings or [action.dest])[0]}" for words, action, _ in numeric_options()],
)
def test_numeric_option_refuses_values_out_of_its_domain(words, action, before, capsys) -> None:
    refused = [value for value in BAD_NUMBERS if action.choices is not None or not action.type.accepts(_number(value))]
    assert refused, "every domain refuses some of nan, inf, negative and huge values"
    for value in refused:
        if action.option_strings:
            argv = [*words, f"{action.option_strings[0]}={value}"]
        else:
            argv = [*words, *["x"] * len(before), "--", value]
        code = main(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2, argv
        assert len(lines) == 1 and (action.option_strings or [action.dest])[0] in lines[0], (argv, lines)


def _number(text: str) -> float | int:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def test_domain_refuses_bools_floats_for_ints_and_non_finite_values() -> None:
    count = Domain(int, 1, 10, "an integer in 1..10")
    assert [count.accepts(value) for value in (1, 10, 0, 11, 2.0, True, float("nan"))] == [True, True, False, False, False, False, False]
    share = Domain(float, 0, 1, "a number in (0, 1]", open_low=True)
    assert [share.accepts(value) for value in (1, 0.5, 0, float("inf"), 2)] == [True, True, False, False, False]


def run_line(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_subspace_larger_than_w_is_refused_and_leaves_no_run_folder(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, lines = run_line(["discover", "--subspace-dim", "1000", "--out", str(run), "--no-progress"], capsys)
    assert code == 2
    assert lines[-1] == "contrafeat: error: --subspace-dim 1000: this generator's W has 64 dimensions; expected at most 64"
    assert not run.exists()


def test_a_discover_on_a_truncated_checkpoint_leaves_no_run_folder(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"\x80\x04\x95")
    run = tmp_path / "run"
    code, lines = run_line(["discover", "--checkpoint", str(broken), "--out", str(run), "--no-progress"], capsys)
    assert code == 2 and lines[-1].startswith(f"contrafeat: error: {broken}")
    assert not run.exists()


def test_an_existing_folder_is_kept_when_discover_fails(tmp_path: Path, capsys) -> None:
    run = tmp_path / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("keep me")
    code, _ = run_line(["discover", "--subspace-dim", "1000", "--out", str(run), "--no-progress"], capsys)
    assert code == 2 and (run / "notes.txt").read_text() == "keep me"


def test_a_yaml_file_that_does_not_parse_is_one_line(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("lr: [0.1,\nsteps: 3\n")
    code, lines = run_line(["discover", "--config", str(config), "--dry-run"], capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"contrafeat: error: --config {config}: not valid YAML at line 3, column 1")


def test_a_yaml_value_out_of_its_domain_names_the_option(tmp_path: Path, capsys) -> None:
    config = tmp_path / "nan.yaml"
    config.write_text("lr: .nan\n")
    code, lines = run_line(["discover", "--config", str(config), "--dry-run"], capsys)
    assert (code, lines) == (2, ["contrafeat: error: --lr nan: expected a positive number at most 1e6"])


def test_dry_run_prints_the_merged_configuration_and_writes_nothing(tmp_path: Path, capsys) -> None:
    assert main(["discover", "--method", "ganspace", "--num-directions", "4", "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "method: ganspace\n" in text and "num_directions: 4\n" in text and "steps: 0\n" in text and "attention: none\n" in text
    assert "renders_per_step: 0\n" in text
    assert not (tmp_path / "run").exists()


def test_directions_on_another_generator_are_refused_unless_forced(tiny_run: Path, capsys) -> None:
    code, lines = run_line(["traverse", str(tiny_run), "--checkpoint", "shapes3d-learned", "--samples", "1", "--frames", "2"], capsys)
    assert code == 2 and len(lines) == 1
    assert "these directions were found in generator" in lines[0] and "shapes3d-learned is generator" in lines[0] and "--force" in lines[0]
    code, lines = run_line(["traverse", str(tiny_run), "--checkpoint", "shapes3d-learned", "--samples", "1", "--frames", "2", "--force"], capsys)
    assert code == 0 and any(line.startswith("warning: these directions were found in generator") for line in lines)


@pytest.mark.parametrize(
    "words, renamed",
    [
        (["discover", "--step-scale", "2", "--checkpoint-every=3"], "--step-scale is now --strength-range; --checkpoint-every is now --save-every"),
        (["traverse", "run", "--step-multiplier", "2"], "--step-multiplier is now --strength-multiplier"),
        (["shapes3d", "train-world", "--out", "w.safetensors", "--checkpoint-every", "2"], "--checkpoint-every is now --save-every"),
    ],
)
def test_a_flag_under_its_older_name_is_refused_naming_its_new_one(words, renamed, capsys) -> None:
    assert main(words) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"; {renamed} (see contrafeat" in error
