"""The one CLI that the UI, the tests and `accelerate launch` all start.

    python -m pipelines STAGE   --config FILE [--set key=value ...] [--runs-dir DIR]   (each stage's command: sft,
                                reward, ppo, dpo, grpo, compare; `python -m pipelines STAGE --help` lists its keys)
    python -m pipelines resume  RUN_DIR [--set max_steps=N] [--checkpoint STEP]   (a failed or stopped run, from its
                                newest checkpoint or an earlier one)
    python -m pipelines score   --reward RUN_DIR --file FILE
    python -m pipelines demo    [--runs-dir DIR] [--preset quick|gpu|brevity|methods|hacking]
    python -m pipelines studio  generate|import|judge|export|status --set NAME ...   (the preference studio)

A training stage creates a run directory, reports progress with an ETA on stderr, prints the run directory as
its last line on stdout, and exits 0 (completed or stopped), 1 (failed) or 2 (bad input before a run started).

Training stages and `resume` also run under a launcher, data-parallel, with one run directory for all processes:
    accelerate launch --config_file sample_data/accelerate/ddp.yaml --num_processes N -m pipelines sft ...
    torchrun --nproc_per_node N -m pipelines ppo ...
(see pipelines/runtime/distributed.py). The other commands run in one process and say so under a launcher.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import textwrap
from pathlib import Path

from pipelines.config import TrainingConfig, describe_fields
from pipelines.data.formats import check_hub_sources
from pipelines.demo import presets
from pipelines.engine import (join_launched_job, quiet_libraries, resolve_run_fields, resume_stage, run_stage,
                              saved_device, setup_logging)
from pipelines.errors import WorkbenchError
from pipelines.runtime import distributed, joblock
from pipelines.runtime.runs import Run, RunState, default_runs_dir
from pipelines.stages import STAGES, generating_stages, training_stages


def stage_epilog(stage: str) -> str:
    rows = [f"  {f['name']:<28} {str(f['default'])[:22]:<22} {f['help']}"
            for f in describe_fields(STAGES[stage].config)]
    return "config keys (YAML or --set key=value), default, meaning:\n" + "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        p = sub.add_parser(stage, help=STAGES[stage].config.__doc__.strip().split("\n")[0],
                           epilog=stage_epilog(stage), formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", help="YAML recipe whose keys are config field names")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key")
        p.add_argument("--runs-dir", help="where run directories go (default: $RLHF_WORKBENCH_RUNS or runs/)")
        p.add_argument("--run-id", help=argparse.SUPPRESS)  # the UI picks the id so it can watch the folder
        p.add_argument("--debug", action="store_true", help="show tracebacks")
    p = sub.add_parser("resume", help="carry a failed or stopped training run on from its newest checkpoint, in the "
                                      "same run directory (or extend a finished one with a larger max_steps)")
    p.add_argument("run_dir", help="the run folder, e.g. runs/20261125-101500-sft")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change what may change on resume: " + ", ".join(TrainingConfig.resumable_changes))
    p.add_argument("--checkpoint", type=int, metavar="STEP",
                   help="go back to this checkpoint instead of the newest (the later ones, and what the run logged "
                        "after it, are dropped): the one a reward-hacking alarm named, say. With `--set max_steps="
                        "STEP` the run only saves the model as it was there")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p = sub.add_parser("score", help="score responses, or evaluate preference pairs, with a reward run")
    p.add_argument("--reward", required=True, help="reward run folder (or `latest`)")
    p.add_argument("--file", required=True, help="prompt/response records, or preference pairs")
    p.add_argument("--runs-dir")
    p.add_argument("--out", help="write scored records here (JSONL)")
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("inspect", help="validate a data file and print a JSON report (format, problems, lengths)")
    p.add_argument("--stage", required=True, choices=[s.id for s in training_stages()],
                   help="the stage whose data it is: its records are read as that stage reads them")
    p.add_argument("--file", required=True, help="a file, a `datasets` folder, or a Hub dataset "
                                                 "`owner/name[:config][:split]`")
    p.add_argument("--column-map", default="", help="rename fields first, e.g. `question=prompt,response_j=chosen`")
    p.add_argument("--model", default="default", help="tokenizer for the length statistics")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("audit", help="audit preference pairs before training: duplicates, contradictions, identical "
                                     "answers, how often the chosen answer is the longer one (a JSON report)")
    p.add_argument("--stage", required=True, choices=[s.id for s in training_stages() if s.data == "pairs"],
                   help="the stage whose pairs they are")
    p.add_argument("--file", required=True, help="a pairs file, a `datasets` folder, or a Hub dataset "
                                                 "`owner/name[:config][:split]`")
    p.add_argument("--eval-file", help="the held-out pairs: the prompts they share with --file are counted")
    p.add_argument("--column-map", default="", help="rename fields first, e.g. `question=prompt,response_j=chosen`")
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("judge-report", help="a reward run's report card (accuracy with its interval, length "
                                            "correlation, calibration, probes) as JSON")
    p.add_argument("run", help="a finished reward run folder, or `latest`")
    p.add_argument("--file", help="held-out pairs to use (default: the run's own held-out pairs)")
    p.add_argument("--runs-dir")
    p.add_argument("--save", action="store_true", help="also write it into the run's summary.json")
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("export", help="copy a run's adapter, or save the base with the adapter merged in")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--merged", action="store_true", help="merge the adapter into the base weights")
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("demo", help="the whole pipeline on sample_data, one stage after another")
    p.add_argument("--runs-dir")
    p.add_argument("--preset", choices=list(presets()), default="quick",
                   help="; ".join(f"{name}: {preset.about}" for name, preset in presets().items()))
    p.add_argument("--debug", action="store_true")
    p = sub.add_parser("studio", help="preference studio: make labeling sets, label them with an AI judge, export "
                                      "the labels as preference pairs for stage 2")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("generate", help="a set of pairs sampled from two models (or one model twice)")
    q.add_argument("--set", required=True, help="name of the new set (a folder under <runs>/studio/)")
    q.add_argument("--prompts", required=True, help="prompts file (`prompt` or `messages` records)")
    q.add_argument("--a", required=True, help="candidate A: `base`, a run folder of a stage that generates (SFT, PPO, "
                                              "DPO, GRPO), or `latest-<stage>`, e.g. `latest-sft`")
    q.add_argument("--b", required=True, help="candidate B, the same choices; the same as --a samples it twice")
    q.add_argument("--instruction", required=True, help="what the labeler judges, e.g. 'Which is more polite?'")
    q.add_argument("--model", default="default", help="base model when both candidates are `base`")
    q.add_argument("--num", type=int, default=40, help="how many prompts (from the top of the file)")
    q.add_argument("--max-new-tokens", type=int, default=48)
    q.add_argument("--temperature", type=float, default=0.8)
    q.add_argument("--top-p", type=float, default=1.0)
    q.add_argument("--seed", type=int, default=42)
    q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    q = actions.add_parser("import", help="a set from a file of pairs (prompt/response_a/response_b, or "
                                          "prompt/chosen/rejected)")
    q.add_argument("--set", required=True)
    q.add_argument("--file", required=True)
    q.add_argument("--instruction", required=True)
    q.add_argument("--seed", type=int, default=42)
    q = actions.add_parser("judge", help="label a set with an AI judge: a reward run, or an instruction model")
    q.add_argument("--set", required=True)
    who = q.add_mutually_exclusive_group(required=True)
    who.add_argument("--reward", help="a finished reward run folder, or `latest`")
    who.add_argument("--llm", help="an instruction model (`default`, a local folder or a Hub id), asked A or B in "
                                   "both orders")
    q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    q = actions.add_parser("export", help="write the labels as TRL preference pairs (prompt/chosen/rejected)")
    q.add_argument("--set", required=True)
    q.add_argument("--out", required=True, help="JSONL file to write")
    q.add_argument("--labeler", action="append", help="only these labelers (repeat; default: every human)")
    q.add_argument("--agreed-only", action="store_true", help="one pair per item, only where labelers agree")
    q = actions.add_parser("status", help="progress, agreement and position bias of a set")
    q.add_argument("--set", required=True)
    for q in actions.choices.values():
        q.add_argument("--runs-dir", help="runs folder holding studio/ (default: $RLHF_WORKBENCH_RUNS or runs/)")
        q.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def inspect_command(stage: str, file: str, model: str, max_length: int, column_map: str = "") -> int:
    from pipelines.data.formats import inspect_file
    from pipelines.model.loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(model))
    columns = [c for c in column_map.split(",") if c.strip()]

    def progress(done: int, total: int) -> None:
        """`progress DONE TOTAL` (records tokenized) on stderr for large files: the Data page draws its bar from
        them, and a terminal user sees the work move."""
        if total >= 10_000:
            print(f"progress {done} {total}", file=sys.stderr, flush=True)

    report = inspect_file(STAGES[stage].data, file, tokenizer, max_length, column_map=columns, progress=progress)
    print(json.dumps(report, ensure_ascii=False))
    return 0


def fail(message: str) -> int:
    """Exit 2 with the message (said once under a launcher: by rank 0; every rank exits 2)."""
    if distributed.is_main():
        # paths and commands stay whole on one line, so they can be copied
        print(textwrap.fill(f"error: {message}", width=110, break_long_words=False, break_on_hyphens=False),
              file=sys.stderr)
    return 2


def job_runs_dir(args: argparse.Namespace) -> Path | None:
    """The runs folder whose one-job lock a command takes (pipelines/runtime/joblock.py), or None for the light
    commands (inspect, and the studio's import, export and status) that run beside a job."""
    default = Path(getattr(args, "runs_dir", None) or default_runs_dir())
    if args.command in STAGES or args.command == "demo":
        return default
    if args.command == "resume":
        return Path(args.run_dir).parent
    if args.command == "export":
        return Path(args.run).parent
    if args.command == "score":
        return Path(args.reward).parent if Path(args.reward).is_dir() else default
    if args.command == "judge-report":
        return Path(args.run).parent if Path(args.run).is_dir() else default
    if args.command == "studio" and args.action in ("generate", "judge"):
        return default
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    quiet_libraries()
    trainers = [s.id for s in training_stages()]
    if distributed.launched() and args.command not in (*trainers, "resume"):
        return fail(f"`{args.command}` runs in one process, but this is process {distributed.rank()} of "
                    f"{distributed.world_size()} started by a launcher. Fix: run `python -m pipelines {args.command} "
                    "...` without `accelerate launch` / `torchrun`; only the training stages (" +
                    ", ".join(trainers) + ") and `resume` run on several processes.")
    args.argv = ["python", "-m", "pipelines", *(sys.argv[1:] if argv is None else [str(a) for a in argv])]
    return dispatch(args)


def one_job(args: argparse.Namespace):
    """The runs folder's one-job lock for this command (pipelines/runtime/joblock.py), taken once its input is
    checked, so that bad input leaves nothing behind; nothing for the light commands."""
    runs_dir = job_runs_dir(args)
    return joblock.held(runs_dir, args.argv) if runs_dir is not None else contextlib.nullcontext()


def refused(args: argparse.Namespace, exc: WorkbenchError) -> int:
    """Exit 2 with the message; a run the workbench watches (`--run-id`) and that never started says it failed."""
    if args.debug:
        raise exc
    run_id = getattr(args, "run_id", None)
    if run_id and distributed.is_main() and not (Path(args.runs_dir or default_runs_dir()) / run_id /
                                                  "status.json").exists():
        Run.create(args.command, "", args.runs_dir, run_id=run_id).set_status(RunState.FAILED, error=str(exc))
    return fail(str(exc))


def dispatch(args: argparse.Namespace) -> int:
    try:
        distributed.check_engine()
        if args.command == "score":
            from pipelines.stages.reward.train import score_command

            with one_job(args):
                return score_command(args.reward, args.file, args.runs_dir, args.out)
        if args.command == "inspect":
            return inspect_command(args.stage, args.file, args.model, args.max_length, args.column_map)
        if args.command == "audit":
            from pipelines.data.audit import audit_file
            from pipelines.data.formats import parse_column_map

            columns = parse_column_map([c for c in args.column_map.split(",") if c.strip()])
            print(json.dumps(audit_file(args.file, args.eval_file, columns), ensure_ascii=False))
            return 0
        if args.command == "judge-report":
            from pipelines.stages.reward.train import report_command

            with one_job(args):
                return report_command(args.run, args.file, args.runs_dir, args.save)
        if args.command == "export":
            from pipelines.model.loading import export_run

            run = Run(args.run)
            generating = generating_stages()
            if args.merged and run.adapter_dir.is_dir() and run.stage not in [s.id for s in generating]:
                return fail(f"Merged export is for models that generate ({', '.join(s.title for s in generating)}); "
                            f"export this `{run.stage}` run's adapter alone (without `--merged`).")
            with one_job(args):
                print(export_run(run, Path(args.out), args.merged))
            return 0
        if args.command == "demo":
            from pipelines.demo import run_demo

            with one_job(args):
                return run_demo(args.runs_dir, args.preset, args.debug)
        if args.command == "studio":
            from pipelines.studio.commands import command as studio_command

            with one_job(args):
                return studio_command(args)
        if args.command == "resume":
            with one_job(args):
                join_launched_job(saved_device(args.run_dir))
                run, summary = resume_stage(args.run_dir, args.set, args.debug, args.checkpoint)
            distributed.finish(ok=bool(summary))
            if distributed.is_main():
                print(run.path)
            return 0 if summary else 1
        config = resolve_run_fields(STAGES[args.command].config.load(args.config, args.set), args.runs_dir)
        check_hub_sources(config)
        if Path(getattr(config, "model", "") or "").is_dir():  # a broken local model folder: refused before a run
            from pipelines.model.loading import resolve_model

            resolve_model(config.model)
    except WorkbenchError as exc:
        return refused(args, exc)
    try:
        with one_job(args):
            join_launched_job(config.device)
            run, summary = run_stage(config, args.runs_dir, args.run_id, args.debug)
    except WorkbenchError as exc:  # busy, a device that is not there, a run id that is taken: nothing started
        return refused(args, exc)
    distributed.finish(ok=bool(summary))
    if distributed.is_main():
        print(run.path)
    return 0 if summary else 1
