"""`python -m pipelines studio generate|import|judge|export|status`: one studio action, as the CLI and the Studio page
run it. Sets are made, read and exported in sets.py; models sample and judge them in models.py (torch, loaded only
for the actions that need a model).
"""

from __future__ import annotations

from pipelines.studio.sets import describe_left_out, export, import_pairs, open_set, summary_lines


def command(args) -> int:
    """Run one studio action; print what it did, and the set folder last."""
    if args.action == "generate":
        from pipelines.studio.models import generate_set

        labeling_set = generate_set(args.set, args.prompts, args.a, args.b, args.instruction, model=args.model,
                                    num=args.num, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                    top_p=args.top_p, seed=args.seed, device=args.device, runs_dir=args.runs_dir)
    elif args.action == "import":
        labeling_set = import_pairs(args.file, args.set, args.instruction, args.runs_dir, args.seed)
    else:
        labeling_set = open_set(args.set, args.runs_dir)
    if args.action == "judge":
        from pipelines.studio.models import judge_lines, judge_with_llm, judge_with_reward

        result = (judge_with_reward(labeling_set, args.reward, args.runs_dir, args.device) if args.reward else
                  judge_with_llm(labeling_set, args.llm, args.device))
        print("\n".join(judge_lines(labeling_set, result)))
    elif args.action == "export":
        result = export(labeling_set, args.out, args.labeler, args.agreed_only)
        print(f"exported {result['pairs']} pairs to {result['file']} (left out: {result['ties']} ties, "
              f"{result['skips']} skips, {result['disagreements']} disagreements)")
    else:
        print("\n".join(summary_lines(labeling_set)))
        left_out = describe_left_out(labeling_set)
        if left_out:
            print(left_out)
    print(labeling_set.path)
    return 0
