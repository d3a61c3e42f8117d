"""`ftevals`: the command line. Every subcommand after `run` works from files alone, with no model.

    ftevals run [PATHS...] [-- PYTEST_ARGS]   run suites through pytest (default: suites/)
    ftevals report RESULTS                    re-render the HTML report from a results file
    ftevals summary RESULTS [--markdown]      the decision card, verdicts and gates as text or markdown
    ftevals export RESULTS --out F            a results file as a table: CSV, JSONL or Parquet
    ftevals compare A [B]                     one run re-scored, or two runs / adapter versions, paired
    ftevals packet RESULTS --out DIR          blinded rubric packets for human raters
    ftevals ratings PACKET_DIR SHEETS...      import returned sheets: agreement, win rates; merge into results
    ftevals judge calibrate RESULTS --out F   judge-human agreement per criterion -> a calibration file
    ftevals ab RESULTS OUTCOMES ...           production A/B outcomes beside the offline verdict
    ftevals models pull-default|list|inspect  the embedded default model and adapters
    ftevals data validate|split|import-logs|contamination   datasets

Errors print as one `ftevals: error: ...` block (file:line where it applies) and exit 2; a gate or
comparison that fails exits 1.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, FtevalsError
from .settings import RUN_FLAGS, option

if TYPE_CHECKING:  # pragma: no cover
    from .results import Comparison


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in args_list:
        i = args_list.index("--")
        args_list, passthrough = args_list[:i], args_list[i + 1 :]
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.passthrough = passthrough
    try:
        return int(args.func(args) or 0)
    except FtevalsError as exc:
        print(f"ftevals: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftevals: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftevals",
        description="Evaluate fine-tuned LLMs (base vs LoRA adapters) side by side; gate CI on the verdicts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `ftevals COMMAND --help` for a command's options. Docs: README.md and docs/.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"ftevals {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("run", help="run suites through pytest (default: suites/)",
                       description="Run evaluation suites with pytest. Options after `--` go to pytest unchanged, "
                                   "e.g. `ftevals run -- -k banking77 --ftevals-limit 20`.")
    p.add_argument("paths", nargs="*", default=["suites"], help="suite files or folders (default: suites)")
    # The same declarations (choices, checks, help) as the pytest options they are passed on as.
    for flag, pytest_flag in RUN_FLAGS.items():
        p.add_argument(flag, **{**option(pytest_flag).kwargs, "default": None})
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="re-render the HTML report from a results file (no model needed)")
    p.add_argument("results", help="results.json written by a run")
    p.add_argument("--out", help="output HTML path (default: report.html next to the results file)")
    p.add_argument("--prices", help="JSON file: {model: {input_per_1k_tokens, output_per_1k_tokens}} for cost columns")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("summary", help="the verdicts and gates of a results file, as text or markdown (CI pages)")
    p.add_argument("results", help="results.json written by a run")
    p.add_argument("--markdown", action="store_true",
                   help="markdown (e.g. ftevals summary reports/results.json --markdown >> $GITHUB_STEP_SUMMARY)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("export", help="a results file as a table: CSV, JSONL or Parquet (pandas underneath)")
    p.add_argument("results", help="results.json written by a run")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", choices=("csv", "jsonl", "parquet"), help="default: the --out suffix")
    p.add_argument("--table", choices=("examples", "metrics"), default="examples",
                   help="examples: one row per suite, example and model (default); metrics: per suite, model, metric")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="compare two results files with per-example paired statistics",
                       description="Compare run B against run A (the reference) on the examples both evaluated: "
                                   "per-example flips, paired bootstrap CIs and McNemar's test, a verdict per metric, "
                                   "adjusted for multiple comparisons as the run adjusted its own (its results file "
                                   "records the method). With A alone, re-score it: every model against its suite's "
                                   "reference, as the run compared them.")
    p.add_argument("a", help="reference results file (e.g. the current production adapter's run)")
    p.add_argument("b", nargs="?", help="candidate results file (leave it out to re-score A alone)")
    p.add_argument("--model-a", help="model in A to compare (default: every model present in both)")
    p.add_argument("--model-b", help="model in B to compare against --model-a (default: same name)")
    p.add_argument("--suite", action="append", help="only these suites (repeatable)")
    p.add_argument("--resamples", type=int, help="bootstrap resamples (default: what run A used, else 2000)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default: what run A used, else 0)")
    p.add_argument("--fail-on-regression", action="store_true", help="exit 1 if any metric regressed significantly")
    p.add_argument("--json", help="also write the comparisons to this JSON file")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("packet", help="build blinded rubric packets for human raters from a results file")
    p.add_argument("results")
    p.add_argument("--out", required=True, help="output folder (rater files and a separate answer key)")
    p.add_argument("--n", type=int, default=30, help="examples per suite (default 30)")
    p.add_argument("--raters", type=int, default=3, help="number of raters (default 3)")
    p.add_argument("--raters-per-item", type=int, default=2, help="raters per item (default 2, for agreement)")
    p.add_argument("--suite", action="append", help="only these suites (repeatable)")
    p.add_argument("--model", action="append", help="only these models (repeatable; the reference is always kept)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing packet folder")
    p.set_defaults(func=cmd_packet)

    p = sub.add_parser("ratings", help="import returned rating sheets: agreement, win rates; merge into results")
    p.add_argument("packet_dir")
    p.add_argument("sheets", nargs="+", help="filled CSV or JSONL sheets")
    p.add_argument("--results", help="merge the human results into this results file and re-render its report")
    p.add_argument("--partial", action="store_true", help="accept sheets that do not cover every assigned item")
    p.set_defaults(func=cmd_ratings)

    p = sub.add_parser("judge", help="the LLM judge: calibrate it against imported human ratings")
    jsub = p.add_subparsers(metavar="ACTION")
    q = jsub.add_parser("calibrate", help="judge-human agreement per rubric criterion -> a calibration file",
                        description="Compare the judge's verdicts in a results file with the human ratings merged "
                                    "into it (ftevals ratings ... --results) and write the calibration file that "
                                    "lets the suite's judge gates count (docs/judge.md).")
    q.add_argument("results", help="results.json with the suite's judge verdicts and merged human ratings")
    q.add_argument("--suite", help="the suite (default: the one suite that has both)")
    q.add_argument("--out", required=True, help="where to write it, e.g. suites/baselines/SUITE.judge-calibration.json")
    q.set_defaults(func=cmd_judge_calibrate)

    p = sub.add_parser("ab", help="online A/B outcomes of two models, tested unpaired, beside the offline verdict")
    p.add_argument("results", help="results.json of the offline run")
    p.add_argument("outcomes", help='JSONL: one production request per line, e.g. {"arm": "base", "resolved": true}')
    p.add_argument("--suite", required=True, help="the suite whose models the arms are")
    p.add_argument("--treatment", required=True, help="the arm (model) under test")
    p.add_argument("--control", help="the other arm (default: the suite's reference)")
    p.add_argument("--outcome", action="append", default=[], help="outcome field to test (repeatable; default: all)")
    p.add_argument("--lower-is-better", action="append", default=[], help="an outcome where less is better")
    p.add_argument("--arm-field", default="arm")
    p.add_argument("--out", help="write the results with the A/B here (default: update RESULTS) and re-render its report")
    p.set_defaults(func=cmd_ab)

    p = sub.add_parser("models", help="the embedded default model and adapters")
    msub = p.add_subparsers(metavar="ACTION")
    q = msub.add_parser("pull-default", help="convert the embedded SmolLM2-135M-Instruct once into the cache")
    q.add_argument("--force", action="store_true", help="convert again even if a verified copy exists")
    q.set_defaults(func=cmd_models_pull)
    q = msub.add_parser("list", help="show the default model and the adapters found in a folder")
    q.add_argument("--adapters", default="adapters", help="folder of adapters (default: adapters)")
    q.set_defaults(func=cmd_models_list)
    q = msub.add_parser("inspect", help="validate an adapter folder against a base model")
    q.add_argument("adapter", help="adapter folder, or ORG/NAME[@REVISION] in the local Hugging Face cache")
    q.add_argument("--base", default="default",
                   help="base model folder or ORG/NAME[@REVISION] in the local Hugging Face cache (default: the embedded model)")
    q.set_defaults(func=cmd_models_inspect)

    p = sub.add_parser("data", help="validate, split and check datasets")
    dsub = p.add_subparsers(metavar="ACTION")
    q = dsub.add_parser("validate", help="check dataset files; every bad row is reported as file:line")
    q.add_argument("files", nargs="+")
    q.add_argument("--labels", help="JSON list of allowed labels")
    q.add_argument("--column", action="append", default=[], metavar="FIELD=COLUMN",
                   help="CSV column mapping, repeatable, as a suite's columns= (e.g. prompt=text, reference=category)")
    q.add_argument("--system-prompt", help="system prompt before every row's question, as a suite's system_prompt=")
    q.add_argument("--prompt-template", metavar="TEXT",
                   help="the user turn as a template over each row's fields, as a suite's prompt_template= "
                        "(e.g. 'Message: {text}\\nIntent:'); the first example's prompt is shown")
    q.set_defaults(func=cmd_data_validate)
    q = dsub.add_parser("split", help="deterministic train/validation/test split (stable under reordering)")
    q.add_argument("file")
    q.add_argument("--out", required=True, help="output folder for train.jsonl, validation.jsonl, test.jsonl")
    q.add_argument("--ratios", default="80/10/10", help="percentages, default 80/10/10")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_data_split)
    q = dsub.add_parser("import-logs", help="production logs (OpenAI chat format) -> a deduplicated, validated eval set")
    q.add_argument("logs", help="JSONL: one logged request and response per line")
    q.add_argument("--out", required=True, help="the eval JSONL to write")
    q.add_argument("--redact", action="store_true", help="replace e-mail addresses and phone numbers")
    q.add_argument("--train", action="append", default=[], help="training file to check for overlap (repeatable)")
    q.add_argument("--sample", type=int, help="keep a seeded sample of N requests")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--threshold", type=float, default=0.8, help="near-duplicate Jaccard threshold (default 0.8)")
    q.set_defaults(func=cmd_data_import_logs)

    q = dsub.add_parser("contamination", help="exact and near-duplicate overlap between training and eval files")
    q.add_argument("--train", action="append", required=True, help="fine-tuning file (repeatable)")
    q.add_argument("--eval", required=True, help="evaluation file")
    q.add_argument("--threshold", type=float, default=0.8, help="n-gram Jaccard similarity for a near duplicate")
    q.add_argument("--ngram", type=int, default=3)
    q.add_argument("--max-rate", type=float, help="exit 1 when the contaminated share exceeds this")
    q.set_defaults(func=cmd_data_contamination)
    return parser


# ---------------------------------------------------------------------------------------------
# run / report


def cmd_run(args: argparse.Namespace) -> int:
    cmd = [sys.executable, "-m", "pytest", *args.paths]
    for flag, pytest_flag in RUN_FLAGS.items():
        value = getattr(args, flag.lstrip("-"))
        if value is not None and value != "":
            cmd += [pytest_flag, str(value)]
    cmd += args.passthrough
    print("ftevals: " + shlex.join(cmd[2:]), file=sys.stderr)
    return subprocess.call(cmd)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report
    from .results import load
    from .summary import summary_lines

    results = load(args.results)
    prices = _read_json(args.prices) if args.prices else None
    out = Path(args.out) if args.out else Path(args.results).with_name("report.html")
    path = write_report(results, out, prices=prices) if prices else write_report(results, out)
    # The same tables the pytest run printed, rebuilt from the file alone.
    for line in summary_lines(results):
        print(line)
    print(f"report: {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# compare


def cmd_summary(args: argparse.Namespace) -> int:
    from .results import load

    results = load(args.results)
    if args.markdown:
        from .ci_summary import markdown_summary

        print(markdown_summary(results), end="")
        return 0
    from .summary import summary_lines

    for line in summary_lines(results):
        print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .results import load
    from .results.frames import export

    path = export(load(args.results), args.out, table=args.table, fmt=args.format)
    print(f"{args.table}: {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .rescore import compare_results, rescore_results
    from .results import load

    if args.b is None:
        if args.model_a or args.model_b:
            raise ConfigError("--model-a and --model-b pair models across two results files; re-scoring one file "
                              "compares every model with its suite's reference: drop them, or give a second file")
        comparisons = rescore_results(load(args.a), suites=args.suite, resamples=args.resamples, seed=args.seed)
    else:
        comparisons = compare_results(load(args.a), load(args.b), model_a=args.model_a, model_b=args.model_b,
                                      suites=args.suite, resamples=args.resamples, seed=args.seed)
    regressed = False
    for suite, rows in comparisons.items():
        print(f"{suite}:")
        for c in rows:
            print(_comparison_line(c))
            regressed |= c.verdict == "regressed"
    if args.json:
        from .fsutil import atomic_write_text

        as_json = {suite: [c.to_dict() for c in rows] for suite, rows in comparisons.items()}
        atomic_write_text(Path(args.json), json.dumps(as_json, indent=1) + "\n")
    return 1 if (regressed and args.fail_on_regression) else 0


def _comparison_line(c: Comparison) -> str:
    from .numbers import ci, level, num, p_clause, signed

    mark = {"improved": "+", "regressed": "!", "no_significant_change": "="}[c.verdict]
    line = (f"  [{mark}] {c.model} vs {c.reference} {c.metric}: {num(c.model_value)} vs {num(c.reference_value)} "
            f"({signed(c.delta)}, {level(c.alpha)} {ci(c.ci_low, c.ci_high, sign=True)}, n={c.n}) "
            f"{c.verdict.replace('_', ' ')}")
    if c.kind == "binary":
        line += f"; {len(c.regressions)} regressions, {len(c.fixes)} fixes"
    if c.p_adjusted is not None:
        # The verdict reads the adjusted p-value: say so, or a "no significant change" at p=0.02 puzzles.
        line += f"; {c.adjustment}-adjusted {p_clause(c.p_adjusted)} over {c.family_size} comparisons"
    return line


# ---------------------------------------------------------------------------------------------
# packets / ratings


def cmd_packet(args: argparse.Namespace) -> int:
    from .packets import build_packets
    from .results import load

    results = load(args.results)
    manifest = build_packets(results, args.out, suites=args.suite, n_per_suite=args.n, raters=args.raters,
                             raters_per_item=args.raters_per_item, seed=args.seed, models=args.model,
                             overwrite=args.overwrite)
    print(manifest.summary())
    return 0


def cmd_ratings(args: argparse.Namespace) -> int:
    from .packets import import_ratings, merge_into_results

    human = import_ratings(args.packet_dir, args.sheets, partial=args.partial)
    print(human.summary())
    if args.results:
        from .report import write_report
        from .results import load, save

        merged = merge_into_results(load(args.results), human)
        save(args.results, merged)
        report = write_report(merged, Path(args.results).with_name("report.html"))
        print(f"merged into {args.results}; report: {report}")
    return 0


def cmd_judge_calibrate(args: argparse.Namespace) -> int:
    from .errors import ResultsError
    from .judge.calibration import write_calibration
    from .results import load
    from .suite import JUDGE_MIN_ALPHA, JUDGE_MIN_ITEMS

    results = load(args.results)
    name = args.suite
    if name is None:
        both = [s.name for s in results.suites if s.judge is not None and s.human is not None]
        if len(both) != 1:
            raise ResultsError(f"{args.results}: {len(both)} suites have both judge verdicts and human ratings "
                               f"({', '.join(both) or 'none'}); name one with --suite")
        name = both[0]
    doc = write_calibration(results, name, args.out)
    print(f"judge {doc['identity']['model']} ({doc['identity']['prompt_version']}) on suite {name}, "
          f"{len(doc['raters'])} raters:")
    for criterion, fig in doc["criteria"].items():
        def f(x: float | None) -> str:
            return "n/a" if x is None else f"{x:+.2f}"
        ok = fig["alpha"] is not None and fig["alpha"] >= JUDGE_MIN_ALPHA and fig["n_items"] >= JUDGE_MIN_ITEMS
        print(f"  {criterion}: alpha {f(fig['alpha'])} (raters among themselves {f(fig['alpha_humans'])}), "
              f"quadratic kappa {f(fig['kappa_quadratic'])}, n={fig['n_items']} items"
              f" -> {'may gate' if ok else 'may not gate'} at the default floor")
    print(f"wrote {args.out}: commit it beside the suite's baseline")
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    from .abtest import analyse, attach, lines
    from .report import write_report
    from .results import load, save

    results = load(args.results)
    suite = next((s for s in results.suites if s.name == args.suite), None)
    control = args.control or (suite.reference if suite is not None else "base")
    alpha = suite.comparisons[0].alpha if suite is not None and suite.comparisons else 0.05
    ab = analyse(Path(args.outcomes), control=control, treatment=args.treatment, outcomes=args.outcome,
                 lower_is_better=args.lower_is_better, arm_field=args.arm_field, alpha=alpha)
    merged = attach(results, args.suite, ab)
    out = Path(args.out or args.results)
    save(out, merged)
    for line in lines(next(s.ab for s in merged.suites if s.name == args.suite)):  # type: ignore[arg-type]
        print(line)
    print(f"results: {out}; report: {write_report(merged, out.with_name('report.html'))}")
    return 0


# ---------------------------------------------------------------------------------------------
# models


def cmd_models_pull(args: argparse.Namespace) -> int:
    from .models import pull_default_model

    folder = pull_default_model(force=args.force, log=lambda m: print(m, file=sys.stderr))
    print(f"default model: {folder.path} ({folder.fingerprint})")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from .models import default_model_dir, read_manifest
    from .training import read_provenance

    manifest = read_manifest(default_model_dir())
    state = f"{default_model_dir()} ({manifest['fingerprint']})" if manifest else "not converted yet (ftevals models pull-default)"
    print(f"default: SmolLM2-135M-Instruct: {state}")
    root = Path(args.adapters)
    for folder in sorted(root.glob("*/adapter_config.json")) if root.is_dir() else []:
        prov = read_provenance(folder.parent) or {}
        cfg = json.loads(folder.read_text())
        print(f"adapter {folder.parent.name}: {folder.parent} rank={cfg.get('r')} targets={cfg.get('target_modules')}"
              + (f" trained on {prov.get('n_examples')} examples in {prov.get('train_seconds')} s" if prov else ""))
    return 0


def cmd_models_inspect(args: argparse.Namespace) -> int:
    from .hubcache import describe_model_folder
    from .models import inspect_adapter, resolve_base

    base = resolve_base(args.base)
    info = inspect_adapter(args.adapter, base)
    # A base from the hub cache is named by its repo id and snapshot commit too: which revision it fits.
    print(f"{info.path}: LoRA rank {info.rank}, alpha {info.alpha}, targets {', '.join(info.target_modules)}; "
          f"trained on {info.base_model_name_or_path or '?'}; fits {describe_model_folder(base.path)}; "
          f"fingerprint {info.fingerprint}")
    # What some engines cannot serve as a LoRA (docs/models.md), shown so it is not a surprise later.
    extras = [f"modules_to_save {', '.join(info.modules_to_save)}"] if info.modules_to_save else []
    extras += [f"LoRA on {', '.join(info.embedding_modules)}"] if info.embedding_modules else []
    extras += list(info.features)
    if extras:
        print(f"  also: {'; '.join(extras)}")
    return 0


# ---------------------------------------------------------------------------------------------
# data


def cmd_data_validate(args: argparse.Namespace) -> int:
    from .data import find_duplicates, load_dataset
    from .prompts import PromptTemplate

    labels = _read_json(args.labels) if args.labels else None
    template = None
    if args.prompt_template is not None:
        # A shell passes "\n" literally; a template on the command line means a newline by it.
        text = args.prompt_template.replace("\\n", "\n")
        template = PromptTemplate.parse(text, owner="--prompt-template", labels=labels)
    columns = {}
    for item in args.column:
        field, eq, column = item.partition("=")
        if not eq or not field.strip() or not column.strip():
            raise ConfigError(f"--column {item!r} is not FIELD=COLUMN (e.g. --column prompt=text)")
        columns[field.strip()] = column.strip()
    for f in args.files:
        ds = load_dataset(f, labels=labels, columns=columns or None, system_prompt=args.system_prompt,
                          prompt_template=template)
        dupes = find_duplicates(ds)
        print(f"{f}: {len(ds)} examples, fingerprint {ds.fingerprint}" + (f", {len(dupes)} duplicate inputs" if dupes else ""))
        if template is not None and ds.examples:
            first = ds.examples[0]
            print(f"  first prompt ({first.source}): {first.user_text!r}")
        for a, b in dupes[:20]:
            print(f"  duplicate input: {a} == {b}")
    return 0


def cmd_data_split(args: argparse.Namespace) -> int:
    from .data import load_dataset, split_dataset, write_jsonl
    from .errors import ConfigError

    try:
        ratios = [float(x) / 100 for x in args.ratios.split("/")]
    except ValueError:
        raise ConfigError(f"--ratios {args.ratios!r}: expected percentages like 80/10/10") from None
    parts = split_dataset(load_dataset(args.file), ratios, seed=args.seed)
    out = Path(args.out)
    for name, ds in parts.items():
        write_jsonl(out / f"{name}.jsonl", ds.to_records())
        print(f"{out / f'{name}.jsonl'}: {len(ds)} examples")
    return 0


def cmd_data_import_logs(args: argparse.Namespace) -> int:
    from .logs_import import import_logs

    report = import_logs(Path(args.logs), Path(args.out), redacting=args.redact, train_files=[Path(t) for t in args.train],
                         sample=args.sample, seed=args.seed, threshold=args.threshold)
    for line in report.lines():
        print(line)
    for problem in report.problems[:20]:
        print(f"  {problem}")
    if len(report.problems) > 20:
        print(f"  ... and {len(report.problems) - 20} more dropped rows")
    print(f"eval set: {args.out}")
    return 0


def cmd_data_contamination(args: argparse.Namespace) -> int:
    from .contamination import check_contamination
    from .data import load_dataset

    ev = load_dataset(args.eval)
    train = [(f, load_dataset(f).examples) for f in args.train]
    report = check_contamination(ev.examples, train, threshold=args.threshold, ngram=args.ngram)
    print(f"{args.eval}: {report.exact} exact and {report.near} near duplicates of training rows "
          f"({report.rate:.2%} of {report.n_eval})")
    for m in report.matches[:50]:
        print(f"  {m.kind:5} {m.eval_id} ~ {m.train_id} ({m.train_file}, overlap {m.overlap:.2f})")
    if args.max_rate is not None and report.rate > args.max_rate:
        print(f"ftevals: contamination {report.rate:.2%} exceeds --max-rate {args.max_rate:.2%}", file=sys.stderr)
        return 1
    return 0


def _read_json(path: str) -> Any:
    from .errors import ConfigError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read JSON ({exc})") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
