"""The docs tell the truth: the numbers README.md and docs/*.md quote are read from the code, every link resolves,
the README stays a front door, and the schema page names every key a record has.

How a page quotes a number so that it is checked here (the pages follow these forms):
- a named constant: `NAME` = VALUE, e.g. `STRAGGLER_SPREAD` = 10%; NAME must be a module constant of one of
  CONSTANT_MODULES (an unknown name fails, so a renamed constant cannot leave a stale quote behind);
- a flag's default: `--flag` VALUE or `--flag` (default VALUE), e.g. `--min-val-acc` 78%: the default of that flag
  in the command the page documents (PAGE_COMMANDS; the sweep's, bench.scaling, unless listed). A flag given with
  an example value is written in one span instead: `--epochs 2`.
VALUE with % is a percent (of a fraction when the flag or constant holds one); with x or nothing, the number itself.
A few facts have their own phrase (PHRASES): the parameter count, the quick CPU run, the GPU check's targets.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import fields
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
OWNED_ELSEWHERE = ("docs/reliability.md", "docs/trust.md", "docs/gpu-session.md", "docs/prediction.md")
"""Pages the README's index links to that other changes bring; a link to them need not resolve yet."""
README_MAX_LINES = 150
QUICK_START_BY_LINE = 40
"""The Quick start's commands must be on the first screen."""
CONSTANT_MODULES = ("bench.explain.scaling_model", "bench.explain.noise", "bench.explain.plausibility",
                    "bench.explain.interconnects", "bench.explain.prediction", "bench.explain.replay",
                    "bench.records.results", "bench.scaling", "mgpu_core.host_memory")
PAGE_COMMANDS = {"compare.md": ("bench.compare", "bench.scaling"), "trust.md": ("bench.scaling", "bench.compare")}
"""Whose flags a page quotes (by file name); any other page quotes the sweep's (bench.scaling)."""
NUMBER = r"(\d[\d,]*(?:\.\d+)?)\s?(%|x\b)?"
COMMAND_WORDS = ("python", "torchrun", "pytest", "pip", "tox", "sbatch", "srun")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def text(page: Path) -> str:
    return page.read_text()


def number(digits: str) -> float:
    return float(digits.replace(",", ""))


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


# -- named constants ----------------------------------------------------------------------------------------------

def code_constants() -> dict[str, float]:
    """Every numeric module constant (UPPER_CASE int or float) of CONSTANT_MODULES."""
    found = {}
    for module_name in CONSTANT_MODULES:
        module = importlib.import_module(module_name)
        for key, value in vars(module).items():
            if key.isupper() and isinstance(value, int | float) and not isinstance(value, bool):
                found[key] = value
    return found


def quoted_constants(page: Path) -> list[tuple[str, float, str | None]]:
    return [(m[1], number(m[2]), m[3]) for m in re.finditer(rf"`([A-Z][A-Z0-9_]+)`\s*=\s*{NUMBER}", text(page))]


def test_every_named_constant_quoted_is_the_codes():
    constants = code_constants()
    wrong = []
    for page in pages():
        for const, value, unit in quoted_constants(page):
            if const not in constants:
                wrong.append(f"{name(page)}: `{const}` is no numeric constant of {', '.join(CONSTANT_MODULES)}")
            elif not close(value / 100 if unit == "%" else value, constants[const]):
                wrong.append(f"{name(page)}: `{const}` = {value:g}{unit or ''}, the code says {constants[const]!r}")
    assert not wrong, "\n".join(wrong)


def test_every_verdict_threshold_and_the_schema_version_are_quoted():
    from bench.explain import scaling_model
    thresholds = {k for k, v in vars(scaling_model).items() if k.isupper() and isinstance(v, float)}
    assert len(thresholds) >= 6  # the six verdict thresholds, at least
    required = {DOCS / "scaling-model.md": thresholds, DOCS / "results-schema.md": {"SCHEMA_VERSION"},
                DOCS / "compare.md": {"MIN_VALUES_FOR_INTERVAL"}, README: {"GPU_EPOCHS"}}
    for page, names in required.items():
        missing = names - {const for const, _, _ in quoted_constants(page)}
        assert not missing, f"{name(page)} does not quote {', '.join(sorted(missing))} as `NAME` = VALUE"


# -- flag defaults ------------------------------------------------------------------------------------------------

class _Built(Exception):
    pass


def command_parser(module_name: str) -> argparse.ArgumentParser:
    """The parser a command's main() builds, taken as it starts parsing (nothing runs)."""
    def capture(self, *args, **kwargs):
        raise _Built(self)

    main = importlib.import_module(module_name).main
    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture):
        try:
            main([])
        except _Built as built:
            return built.args[0]
    raise AssertionError(f"{module_name}.main() returned without parsing arguments")


def flag_defaults(module_name: str) -> dict[str, tuple[float, bool]]:
    """flag -> (default as a number, whether the flag takes a percent and holds a fraction)."""
    found = {}
    for action in command_parser(module_name)._actions:
        default = action.default
        if isinstance(default, tuple) and len(default) == 1:
            default = default[0]
        if isinstance(default, int | float) and not isinstance(default, bool):
            for flag in action.option_strings:
                found[flag] = (default, getattr(action.type, "__name__", "") == "percent")
    return found


def quoted_flags(page: Path) -> list[tuple[str, float, str | None]]:
    pattern = rf"`(--[a-z][a-z0-9-]*)`\s+(?:\(default\s+)?{NUMBER}"
    return [(m[1], number(m[2]), m[3]) for m in re.finditer(pattern, text(page))]


def test_every_flag_default_quoted_is_the_commands():
    defaults = {module: flag_defaults(module) for module in {"bench.scaling", "bench.compare"}}
    wrong = []
    for page in pages():
        commands = PAGE_COMMANDS.get(page.name, ("bench.scaling",))
        for flag, value, unit in quoted_flags(page):
            known = next((defaults[c][flag] for c in commands if flag in defaults[c]), None)
            if known is None:
                wrong.append(f"{name(page)}: `{flag}` {value:g} reads as a default, but {' or '.join(commands)} "
                             "has no such numeric flag (write an example value inside the span: `--flag N`)")
                continue
            default, fraction = known
            shown = value / 100 if unit == "%" and fraction else value
            if not close(shown, default):
                wrong.append(f"{name(page)}: `{flag}` {value:g}{unit or ''}, its default is {default!r}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_quotes_the_goal_and_the_batch():
    quoted = {flag for flag, _, _ in quoted_flags(README)}
    assert {"--min-time-cut", "--min-val-acc", "--batch-size"} <= quoted
    assert {"--min-change", "--alpha"} <= {flag for flag, _, _ in quoted_flags(DOCS / "compare.md")}


# -- facts with a phrase of their own ------------------------------------------------------------------------------

def phrase_values(pattern: str) -> dict[Path, list[tuple[str, ...]]]:
    return {page: found for page in pages() if (found := re.findall(pattern, text(page)))}


def test_the_parameter_count_quoted_is_simplecnns():
    from mgpu_core.model import SimpleCNN
    from mgpu_core.models import parameter_count
    count = parameter_count(SimpleCNN())
    found = phrase_values(r"(\d{1,3}(?:,\d{3})+) parameters")
    assert README in found and DOCS / "models.md" in found
    assert all(number(v) == count for values in found.values() for v in values), (found, count)


def test_the_quick_cpu_run_quoted_is_the_sweeps():
    from bench.scaling import CPU_QUICK
    found = phrase_values(r"(\d+) epochs? on ([\d,]+) (?:training )?samples")
    assert README in found
    for page, values in found.items():
        for epochs, samples in values:
            assert (int(epochs), number(samples)) == (CPU_QUICK["epochs"], CPU_QUICK["train_samples"]), name(page)


GPU_TARGETS = {"epoch_s": r"fast-path epoch <= ([\d.]+) s", "vs_dataloader": r"fast path >= ([\d.]+)x the DataLoader",
               "ddp_over_pct": r"ddp x1 <= ([\d.]+)% over single"}


def _gpu_check_lines(fast_s: float, dataloader_s: float, ddp_s: float) -> list[str]:
    """The target lines bench.gpu_check prints for these median epoch times (single fast path, single DataLoader
    pipeline, ddp x1 fast path)."""
    from bench import gpu_check

    def result(epoch_s: float) -> dict:
        return {"epochs": [{"time_s": epoch_s, "samples_per_s": 50_000 / epoch_s}], "compile_s": 0.0,
                "evals": [{"accuracy": 0.8}]}
    rows = [("single", gpu_check.FAST, result(fast_s), None),
            ("single", gpu_check.BASELINE, result(dataloader_s), None),
            ("ddp", gpu_check.FAST, result(ddp_s), None)]
    return [line for line in gpu_check.report(rows, "Test GPU").splitlines() if line.startswith("- ")]


def test_the_gpu_targets_quoted_are_the_ones_the_gpu_check_applies():
    page = text(DOCS / "performance.md")
    quoted = {}
    for key, pattern in GPU_TARGETS.items():
        match = re.search(pattern, page)
        assert match, f"docs/performance.md does not state the GPU target {pattern!r}"
        quoted[key] = float(match[1])
    epoch, ratio, over = quoted["epoch_s"], quoted["vs_dataloader"], quoted["ddp_over_pct"] / 100
    inside = (epoch * 0.99, epoch * 0.99 * ratio * 1.01, epoch * 0.99 * (1 + over * 0.9))
    outside = (epoch * 1.01, epoch * 1.01 * ratio * 0.99, epoch * 1.01 * (1 + over * 1.1))
    assert all("PASS" in line for line in _gpu_check_lines(*inside)), _gpu_check_lines(*inside)
    assert all("FAIL" in line for line in _gpu_check_lines(*outside)), _gpu_check_lines(*outside)


def test_the_gpu_peaks_table_is_the_models():
    from mgpu_core.models import PEAK_TFLOPS
    section = markdown_section(text(DOCS / "models.md"), "## What is recorded about a model")
    rows = [[c.strip().strip("`").replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip("|"))]
            for line in section.splitlines() if line.startswith("| ") and not line.startswith("| GPU")]
    quoted = [(fragment, {p: float(v) for p, v in (("bf16", bf16), ("fp32", fp32)) if v != "-"})
              for fragment, bf16, fp32 in rows]
    assert quoted == [(fragment, dict(peaks)) for fragment, peaks in PEAK_TFLOPS]


# -- the README as a front door ------------------------------------------------------------------------------------

def markdown_section(page_text: str, heading: str) -> str:
    """From `heading` (a whole line) to the next heading of the same or a higher level."""
    lines = page_text.splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    fenced = False  # a shell comment inside a code block is no heading
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[end]):
            return "\n".join(lines[start + 1:end])
    return "\n".join(lines[start + 1:])


def code_blocks(page_text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", page_text, flags=re.S | re.M)


def commands_of(block: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_is_a_front_door():
    readme = text(README)
    lines = readme.splitlines()
    assert len(lines) <= README_MAX_LINES
    start = lines.index("## Quick start")
    quick = markdown_section(readme, "## Quick start")
    commands = [c for block in code_blocks(quick) for c in commands_of(block)]
    setup = commands_of(code_blocks(quick)[0])
    assert len(setup) <= 2 and setup[0].startswith("python3.11 -m venv")
    for command in ("python -m bench.scaling --gpus 1,2,4", "pytest", "pytest tests/unit"):
        assert command in commands, f"the Quick start lacks {command!r}"
        assert readme.index(command, readme.index("## Quick start")) < len("\n".join(lines[:QUICK_START_BY_LINE]))
    assert start < 20 and (ROOT / "tests" / "unit").is_dir()
    assert not re.search(r"\b(now|today's|no longer)\b", readme, flags=re.I), "change-log voice in the README"


def test_the_readme_example_table_has_seven_columns():
    tables = [line for line in markdown_section(text(README), "## What lands in `reports/`").splitlines()
              if line.startswith("|")]
    assert tables and all(line.count("|") - 1 == 7 for line in tables)


def test_the_readme_sets_up_and_tests_as_ci_does():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    quick = [c for block in code_blocks(markdown_section(text(README), "## Quick start")) for c in commands_of(block)]
    ci_tests = [line for line in ci if line.split(" ")[0] == "pytest"]
    assert ci_tests and all(line in quick for line in ci_tests), (ci_tests, quick)
    ci_install = [line for line in ci if line.startswith("pip install")]
    assert ci_install and all(line in quick for line in ci_install), (ci_install, quick)


# -- links and commands ---------------------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def links(page: Path) -> list[str]:
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text(page)) if "://" not in target]


def test_every_link_resolves():
    broken = []
    for page in pages():
        for target in links(page):
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            relative = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)
            if not resolved.exists():
                if relative not in OWNED_ELSEWHERE:
                    broken.append(f"{name(page)}: {target}")
            elif anchor and anchor not in {slug(h) for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)}:
                broken.append(f"{name(page)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_indexes_every_docs_page():
    linked = {str((ROOT / t.partition("#")[0]).relative_to(ROOT)) for t in links(README) if t.startswith("docs/")}
    pages_here = {f"docs/{p.name}" for p in DOCS.glob("*.md")}
    assert pages_here <= linked, f"not in the README's index: {sorted(pages_here - linked)}"
    assert set(OWNED_ELSEWHERE) <= linked


def test_no_command_points_beside_the_checkout():
    """../shared exists only beside this repository's checkouts; a user's commands must not need it."""
    offending = []
    for page in [*pages(), *DOCS.glob("*.sbatch")]:
        page_text = text(page)
        spans = code_blocks(page_text) if page.suffix == ".md" else [page_text]
        spans += [s for s in re.findall(r"`([^`\n]+)`", page_text) if s.split(" ")[0] in COMMAND_WORDS]
        offending += [f"{name(page)}: {s.strip()[:80]}" for s in spans if "../shared" in s]
    assert not offending, "\n".join(offending)


# -- the record schema ----------------------------------------------------------------------------------------------

SCHEMA = DOCS / "results-schema.md"


def documented_keys(heading: str) -> set[str]:
    """The backticked names in the first column of the tables of one section of the schema page (its own tables,
    not those of its sub-sections)."""
    section = markdown_section(text(SCHEMA), heading).split("\n###")[0]
    return {key for line in section.splitlines() if line.startswith("| `")
            for key in re.findall(r"`([^`]+)`", line.split("|")[1])}


def dict_keys_in(function) -> set[str]:
    """The string keys of every dict literal in a function's source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {k.value for node in ast.walk(tree) if isinstance(node, ast.Dict)
            for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


def test_the_schema_page_names_every_key_of_a_results_record():
    from bench.records.results import make_record
    from mgpu_core.config import TrainConfig
    record = make_record(cfg=TrainConfig(), devices=1, trial=0, scaling="weak", device_type="cpu", status="skipped",
                         provenance={}, target_val_acc=0.78, error="why")
    documented = documented_keys("## results.jsonl")
    assert documented == set(record), (f"undocumented: {sorted(set(record) - documented)}; "
                                       f"documented but not in a record: {sorted(documented - set(record))}")


def test_the_schema_page_names_every_key_of_the_nested_objects():
    from bench.run.provenance import collect
    from mgpu_core.image_arrays import ImageArrays
    from mgpu_core.trainer import EpochRecord, EvalRecord, RunResult
    images = np.zeros((2, 32, 32, 3), np.uint8)
    data = ImageArrays("synthetic", "synthetic(seed=0)", tuple("ab"), images, np.zeros(2, np.int64), images,
                       np.zeros(2, np.int64))
    assert documented_keys("### `dataset`") == set(data.describe())
    result_keys = {f.name for f in fields(RunResult)} | {"final_val_acc"}
    assert documented_keys("### `result`") == result_keys
    result_section = markdown_section(text(SCHEMA), "### `result`")
    for row, record_type in (("| `epochs` |", EpochRecord), ("| `evals` |", EvalRecord)):
        line = next(line for line in result_section.splitlines() if line.startswith(row))
        assert {f.name for f in fields(record_type)} <= set(re.findall(r"`([^`]+)`", line)), row
    provenance = collect("fp32", 0, ["python"])
    assert documented_keys("### `provenance`") == set(provenance)
    topology_row = next(line for line in markdown_section(text(SCHEMA), "### `provenance`").splitlines()
                        if line.startswith("| `topology` |"))
    assert set(provenance["topology"]) <= set(re.findall(r"`([^`]+)`", topology_row))


def test_the_schema_page_names_every_key_of_a_comm_record():
    """A comm record is the dict each rank measures, the launcher's additions and the sweep's `extra`."""
    from bench import comm
    from bench.records.comm import comm_record
    from bench.run import sweep
    from mgpu_core import collectives
    added = {kw.arg for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(comm.run_count))))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "comm_record" for kw in node.keywords
             if kw.arg}
    produced = (dict_keys_in(collectives.measure) | dict_keys_in(collectives.prediction_inputs)
                | dict_keys_in(comm_record) | added)
    calls = [node for node in ast.walk(ast.parse(inspect.getsource(sweep))) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "run_count"]
    extras = {k.value for call in calls for kw in call.keywords if kw.arg == "extra" and isinstance(kw.value, ast.Dict)
              for k in kw.value.keys}
    assert calls and extras, "the sweep passes no extra= to run_count: say where a comm record's study comes from"
    documented = documented_keys("## comm.jsonl")
    assert documented == produced | extras, (f"undocumented: {sorted(produced | extras - documented)}; "
                                             f"documented but not produced: {sorted(documented - produced - extras)}")


@pytest.mark.parametrize("page", ["models.md", "strategies.md", "scaling-model.md", "compare.md", "multi-node.md",
                                  "performance.md", "results-schema.md", "measurements.md", "architecture.md"])
def test_the_docs_pages_exist(page):
    assert (DOCS / page).is_file()
