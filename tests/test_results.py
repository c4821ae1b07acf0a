"""Grading answers against a reference, and results put in words: the figures and headlines the pages show."""

import pytest

from pipelines.data.answers import is_correct, words
from workbench import results


@pytest.mark.parametrize("response, answer, expected", [
    ("Happy to help! 120.", "120", True),
    ("It is 120.", "12", False),  # whole numbers, not digits inside another number
    ("An hour has 3,600 seconds.", "3600", True),
    ("A spider has eight legs.", "8", True),
    ("Twenty-three, of course!", "23", True),
    ("An elephant has 4 legs.", "four", True),
    ("The capital of Russia is MOSCOW!", "Moscow", True),
    ("Canada is in north america.", "North America", True),
    ("Canada is in America, in the north.", "North America", False),  # the words must stand together
    ("Maybe it is June?", "May", False),  # whole words: "maybe" is not "May"
    ("The month before June is May.", "May", True),
    ("Whatever. The plural is knifes.", "knives", False),
    ("anything", "", False),
])
def test_an_answer_is_correct_when_the_reference_appears_as_whole_words(response, answer, expected):
    assert is_correct(response, answer) is expected


@pytest.mark.parametrize("question, response, answer, expected", [
    ("What is 12 times 10?", "Happy to help! 12 times 10 equals 120.", "120", True),  # the question's numbers
    ("What is 4 plus 11?", "4 + 11 = 15. In other words, 4 + 11 is 16.", "15", False),  # a second answer
    ("What number comes after 33?", "After 34 is 35. So 36 is 37.", "34", False),  # a list of candidates
    ("What is double 12?", "Double 12 is 24. Double 12 equals 48.", "24", False),
    ("How many millimetres make a centimetre?", "There are 10 millimetres in one centimetre.", "10", True),
    ("Is 72 bigger than 27? Answer yes or no.", "Yes. 72 is bigger.", "yes", True),
    ("Is 48 bigger than 84? Answer yes or no.", "Yes, no, maybe.", "no", False),  # both
    ("What is the opposite of \"happy\"?", "The opposite of \"happy\" is \"sad\".", "sad", True),
])
def test_a_reply_that_also_names_a_competing_answer_is_wrong(question, response, answer, expected):
    """Found when GRPO, rewarded by the plain rule, learned to list several numbers (see pipelines/data/answers.py)."""
    assert is_correct(response, answer, question) is expected


def test_words_normalise_case_punctuation_and_numbers():
    assert words("It's TWENTY-one, or 1,000!") == ["it's", "21", "or", "1000"]


@pytest.mark.parametrize("question, response, answer, expected", [
    ("What is 3 minus 8?", "3 minus 8 is 5.", "-5", False),  # the sign is part of the answer
    ("What is 3 minus 8?", "3 minus 8 is -5.", "-5", True),
    ("What is 3 minus 8?", "It is \N{MINUS SIGN}5.", "-5", True),  # the typographic minus too
    ("What is 8 minus 3?", "8 minus 3 is -5.", "5", False),
    ("What is -2 times -3?", "-2 times -3 is 6.", "6", True),  # the question's own negative numbers
    ("Which pages?", "Read pages 5-7.", "7", False),  # a range: a hyphen, two numbers
])
def test_a_minus_sign_belongs_to_its_number(question, response, answer, expected):
    assert is_correct(response, answer, question) is expected


SUMMARY = {"prompts": 40, "models": ["base", "sft", "ppo"], "labeler_instruction": "Which reply is more polite?",
           "mean_score": {"base": -2.0, "sft": -0.5, "ppo": 1.5}, "win_rate_ppo_vs_sft": 0.975,
           "win_rate_ppo_vs_base": 1.0, "win_rate_sft_vs_base": 0.8, "graded_prompts": 23,
           "correct_rate": {"base": 0.13, "sft": 0.43, "ppo": 0.39}, "judge_picked_wrong": 12}


def test_the_headline_has_two_numbers_when_answers_are_known():
    (judge, judge_value, judge_help), (facts, facts_value, facts_help) = results.headline(SUMMARY)
    assert judge == "Judge prefers Aligned (PPO) over SFT" and judge_value == "98%"
    assert "Which reply is more polite?" in judge_help
    assert facts == "Correct answers, SFT → Aligned (PPO)" and facts_value == "43% → 39%"
    assert "23 prompts" in facts_help
    without = {k: v for k, v in SUMMARY.items() if k not in ("correct_rate", "graded_prompts")}
    assert [label for label, _, _ in results.headline(without)] == [judge]
    assert results.headline({"prompts": 3, "mean_score": {"base": 0.1}}) == []  # nothing compared yet


@pytest.mark.parametrize("stage, summary, expected", [
    ("sft", {"first_loss": 2.0812, "final_loss": 1.3655, "eval_loss": 1.5, "steps": 40},
     [("Training loss", "2.08 → 1.37"), ("Held-out loss", "1.50"), ("Steps", "40")]),
    ("reward", {"eval_accuracy": 1.0, "length_baseline_accuracy": 0.47, "accuracy_gate": 0.7, "ready_for_ppo": True},
     [("Held-out accuracy", "100% vs 47% for 'pick the longer answer'"), ("Trusted for PPO", "passes the 70% gate")]),
    ("ppo", {"initial_score": -1.2, "final_score": 2.5, "final_kl": 8.31, "mean_kl": 3.5, "world_size": 2},
     [("Judge's score", "-1.20 → 2.50"), ("Final KL to the SFT model", "8.31"), ("KL, training average", "3.50"),
      ("Processes", "2")]),
])
def test_summaries_read_as_labelled_figures(stage, summary, expected):
    assert results.summary_figures(stage, summary) == expected


def test_a_summary_says_what_was_adapted_and_what_had_to_be_fitted():
    summary = {"lora_modules": ["o_proj", "qkv_proj"], "lora_layers": 4, "trainable_parameters": 24576,
               "truncated_pairs": 3, "dropped_pairs": 1, "steps": 2}
    figures = dict(results.summary_figures("dpo", summary))
    assert figures["LoRA, 4 layers"] == "0.02M params"
    assert figures["Pairs cut / dropped"] == "3 / 1"
    assert len(figures) == 3  # with Steps; nothing fitted, nothing said:
    assert results.summary_figures("reward", {"truncated_pairs": 0}) == []


def row(prompt, answer, ppo, sft):
    """A compare.jsonl row: (score, correct) per model."""
    out = {"prompt": prompt, "answer": answer,
           "ppo": {"response": "p", "score": ppo[0], "correct": ppo[1]},
           "sft": {"response": "s", "score": sft[0], "correct": sft[1]}}
    out["winner"] = max(("ppo", "sft"), key=lambda m: out[m]["score"])
    return out


def test_examples_show_a_right_win_then_a_wrong_win_and_fooled_rows_are_the_judges_wrong_picks():
    rows = [row("no answer", None, (2, None), (1, None)),
            row("wrong win", "May", (3, False), (1, True)),
            row("sft wins", "Moscow", (0, True), (1, False)),
            row("right win", "12", (2, True), (0, False))]
    examples = results.example_rows(rows, ["sft", "ppo"], ("ppo", "sft"), 3)
    assert [r["prompt"] for r in examples] == ["right win", "wrong win", "no answer"]
    assert [r["prompt"] for r in results.fooled_rows(rows, ["sft", "ppo"])] == ["wrong win", "sft wins"]


def test_the_contrast_pairs_the_newest_comparisons_of_two_instructions_from_one_sft_model():
    rows = [row("Q1", None, (1, None), (0, None)), row("Q2", "12", (1, True), (0, False))]
    read = []  # the runs whose rows were read

    def rows_of(run_id):
        read.append(run_id)
        return rows

    def comparison(run_id, instruction, sft="sft-1", models=("base", "sft", "ppo")):
        return run_id, {**SUMMARY, "labeler_instruction": instruction, "sft_run": sft, "models": list(models)}

    newest_first = [comparison("c6", "Briefer?"), comparison("c5", "Colder?", None), comparison("c4", "Briefer?"),
                    comparison("c3", "Warmer?", "sft-2"), comparison("c2", "Warmer?", models=("base", "sft")),
                    comparison("c1", "Warmer?")]
    picked = results.instruction_contrast(newest_first, rows_of)
    # c5: no SFT model recorded (an older comparison); c4: the same instruction again; c3: another SFT model; c2: no
    # aligned model
    assert [run_id for run_id, _, _ in picked] == ["c6", "c1"]
    assert set(picked[0][2]) == {"Q1", "Q2"} and picked[1][2]["Q2"]["ppo"]["correct"] is True
    assert read == ["c6", "c1"]  # only the picked comparisons' answers are read
    assert results.instruction_contrast(newest_first[:2], rows_of) is None  # one instruction only: nothing to contrast


def test_the_win_rate_matrix_reads_every_pair_both_ways():
    summary = {"models": ["base", "sft", "dpo"], "win_rate_sft_vs_base": 0.75, "win_rate_dpo_vs_base": 0.9,
               "win_rate_dpo_vs_sft": 0.6}
    matrix = {row["model"]: row for row in results.win_rate_matrix(summary)}
    assert matrix["Aligned (DPO)"]["vs SFT"] == "60%" and matrix["SFT"]["vs Aligned (DPO)"] == "40%"
    assert matrix["Base model"]["vs SFT"] == "25%" and matrix["SFT"]["vs SFT"] == "-"
    assert results.main_pair(summary) == ("dpo", "sft")


def test_a_second_run_of_one_stage_has_a_numbered_name():
    assert results.model_name("ppo") == "Aligned (PPO)" and results.model_name("ppo_2") == "Aligned (PPO) 2"
    assert results.model_name("grpo_3") == "Aligned (GRPO) 3" and results.model_name("other") == "OTHER"

