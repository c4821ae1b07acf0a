"""Data beyond local files: Hub-layout folders and Hub ids through `datasets.load_dataset`, column mappings, the
batched encoder that makes 100,000 pairs a matter of seconds, and `report_to` trackers."""

import json
from pathlib import Path

import pytest

from pipelines.data.formats import (BatchEncoder, encode_prompt, encode_response, load_preferences, load_prompts,
                                    load_sft, parse_column_map, token_lengths)
from pipelines.errors import ConfigError, DataError
from pipelines.runtime.runs import Run
from tests.conftest import SAMPLE, SHARED_DATA, cli, only_run, read_json, write_jsonl

STACK_EXCHANGE_NAMES = ["question=prompt", "response_j=chosen", "response_k=rejected"]


@pytest.fixture
def hub_folder(tmp_path):
    """A dataset repository as the Hub lays it out: data files under data/, one per split, with its own field names
    (those of lvwerra/stack-exchange-paired)."""
    pairs = [json.loads(line) for line in (SAMPLE / "prefs_train.jsonl").read_text().splitlines()][:60]
    rows = [{"question": p["prompt"], "response_j": p["chosen"], "response_k": p["rejected"], "score": i}
            for i, p in enumerate(pairs)]
    folder = tmp_path / "stack-exchange-paired"
    (folder / "data").mkdir(parents=True)
    write_jsonl(folder / "data" / "train.jsonl", rows[:50])
    write_jsonl(folder / "data" / "test.jsonl", rows[50:])
    return folder


def test_a_hub_layout_folder_loads_by_path_with_a_column_mapping(hub_folder):
    columns = parse_column_map(STACK_EXCHANGE_NAMES)
    rows, report = load_preferences(hub_folder, columns)
    assert report.format == "explicit prompt/chosen/rejected" and report.kept == report.total == 50
    assert rows[0]["prompt"][0]["role"] == "user" and rows[0]["chosen"] and rows[0]["_line"] == 1
    held_out, report = load_preferences(f"{hub_folder}:test", columns)  # `:split`
    assert report.kept == 10
    prompts, report = load_prompts(f"{hub_folder}:test", {"question": "prompt"})
    assert report.format == "prompt" and len(prompts) == 10
    with pytest.raises(DataError, match="unknown format"):  # without the mapping: the fields are named
        load_preferences(hub_folder)
    with pytest.raises(DataError, match=r"no field `answer`.*Fix: correct `column_map`"):
        load_preferences(hub_folder, {"answer": "chosen"})
    with pytest.raises(DataError, match=r"split `validation`.*Should be one of"):
        load_preferences(f"{hub_folder}:validation", columns)


def test_sft_trains_on_a_hub_layout_folder(tiny_model_dir, tmp_path):
    rows = [json.loads(line) for line in (SAMPLE / "sft_train.jsonl").read_text().splitlines()][:40]
    folder = tmp_path / "alpaca-like"
    (folder / "data").mkdir(parents=True)
    write_jsonl(folder / "data" / "train.jsonl",
                [{"query": r["messages"][0]["content"], "answer": r["messages"][-1]["content"]} for r in rows])
    runs = tmp_path / "runs"
    assert cli("sft", "--set", f"model={tiny_model_dir}", "--set", f"train_file={folder}", "--set",
               "column_map=query=prompt,answer=completion", "--set", "max_steps=3", "--set", "max_length=96",
               "--set", "learning_rate=0.01", "--runs-dir", runs) == 0
    run = only_run(runs)
    assert read_json(run / "summary.json")["train_examples"] == 40
    losses = [r["loss"] for r in Run(run).metrics() if "loss" in r]
    assert len(losses) == 3 and losses[-1] != losses[0]
    assert "prompt-completion format, 40 of 40 records used" in (run / "run.log").read_text()


def test_an_unreachable_hub_id_is_bad_input_before_any_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    code = cli("sft", "--set", "train_file=nobody/no-such-dataset:train", "--runs-dir", runs)
    err = capsys.readouterr().err
    flat = " ".join(err.split())
    assert code == 2 and "Traceback" not in err
    assert "`train_file`: The Hub dataset `nobody/no-such-dataset`, split `train` could not be loaded" in flat
    assert "offline (HF_HUB_OFFLINE is set)" in flat and "Fix:" in flat
    assert not runs.exists()  # nothing half-written


def test_a_mistyped_file_path_is_not_taken_for_a_hub_id():
    with pytest.raises(DataError, match="does not exist"):
        load_sft("sample_data/no_such_file.jsonl")


def test_column_map_must_be_pairs(tmp_path, capsys):
    with pytest.raises(ConfigError, match="from=to"):
        parse_column_map(["question"])
    assert cli("sft", "--set", f"train_file={SAMPLE / 'sft_train.jsonl'}", "--set", "column_map=a=b,c",
               "--runs-dir", tmp_path / "runs") == 2
    assert "`column_map` item `c` is not of the form from=to" in " ".join(capsys.readouterr().err.split())


def batch_matches_record_by_record(tokenizer, pairs) -> int:
    """How many ids differ between BatchEncoder and encode_response / encode_prompt (0 when they agree)."""
    encoder = BatchEncoder(tokenizer)
    prompts = [p["prompt"] for p in pairs]
    prompt_ids, (chosen, rejected) = encoder.responses(prompts, [p["chosen"] for p in pairs],
                                                       [p["rejected"] for p in pairs])
    wrong = sum(q != encode_prompt(tokenizer, p) for q, p in zip(encoder.prompts(prompts), prompts))
    for pair, q, c, r in zip(pairs, prompt_ids, chosen, rejected):
        want_q, want_c = encode_response(tokenizer, pair["prompt"], pair["chosen"])
        wrong += (q != want_q) + (c != want_c) + (r != encode_response(tokenizer, pair["prompt"], pair["rejected"])[1])
    return wrong


def test_the_batched_encoder_gives_the_ids_of_encode_response(default_tokenizer_dir):
    from pipelines.model.loading import load_tokenizer

    tokenizer = load_tokenizer(str(default_tokenizer_dir))
    pairs, _ = load_preferences(SAMPLE / "prefs_train.jsonl")
    # Answers that start with whitespace or run into the prompt's last characters: the seam cases.
    pairs += [{"prompt": [{"role": "user", "content": "Say it."}], "chosen": "\n\nYes.", "rejected": " no"},
              {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
               "chosen": "Hello!", "rejected": "Hey"}]
    assert batch_matches_record_by_record(tokenizer, pairs) == 0
    sft, _ = load_sft(SAMPLE / "sft_train.jsonl")
    assert token_lengths(tokenizer, sft) == [sum(map(len, encode_response(tokenizer, r["prompt"],
                                                                          r["completion"][-1]["content"])))
                                             for r in sft]
    # A template that changes contents (it trims them) is rendered record by record, and still agrees.
    tokenizer.chat_template = tokenizer.chat_template.replace("message['content']", "message['content'] | trim")
    assert batch_matches_record_by_record(tokenizer, pairs) == 0
    tokenizer.chat_template = None  # a base model: plain text
    assert batch_matches_record_by_record(tokenizer, pairs[:50]) == 0


@pytest.mark.skipif(not (SHARED_DATA / "hh_helpful_pairs_2k.jsonl").exists(), reason="needs ../shared/data")
def test_the_batched_encoder_agrees_on_real_multi_turn_pairs(default_tokenizer_dir):
    from pipelines.model.loading import load_tokenizer

    pairs, _ = load_preferences(SHARED_DATA / "hh_helpful_pairs_2k.jsonl")
    assert batch_matches_record_by_record(load_tokenizer(str(default_tokenizer_dir)), pairs) == 0


def tensorboard_tags(run: Path) -> set[str]:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    files = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert files, "no event files in the run's tensorboard/ folder"
    tags = set()
    for path in files:
        accumulator = event_accumulator.EventAccumulator(str(path))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_report_to_tensorboard_leaves_the_stage_metric_names(tiny_model_dir, tiny_sft_run, tiny_reward_run, tmp_path):
    pytest.importorskip("tensorboard")
    runs = tmp_path / "runs"
    assert cli("sft", "--set", f"model={tiny_model_dir}", "--set", f"train_file={SAMPLE / 'sft_train.jsonl'}", "--set",
               "max_steps=2", "--set", "max_length=96", "--set", "report_to=tensorboard", "--runs-dir", runs) == 0
    assert {"train/loss", "train/mean_token_accuracy"} <= tensorboard_tags(only_run(runs))
    ppo_runs = tmp_path / "ppo"
    assert cli("ppo", "--set", f"sft_run={tiny_sft_run}", "--set", f"reward_run={tiny_reward_run}", "--set",
               f"prompts_file={SAMPLE / 'prompts_train.jsonl'}", "--set", "max_new_tokens=6", "--set", "batch_size=4",
               "--set", "max_steps=2", "--set", "allow_untrusted_judge=true", "--set", "report_to=tensorboard",
               "--runs-dir", ppo_runs) == 0
    assert {"objective/scores", "objective/kl", "loss/policy", "time/generate"} <= tensorboard_tags(only_run(ppo_runs))


def test_report_to_a_tracker_that_is_not_installed_says_how_to_add_it(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    assert cli("sft", "--set", f"train_file={SAMPLE / 'sft_train.jsonl'}", "--set", "report_to=wandb",
               "--runs-dir", tmp_path / "runs") == 2
    assert "`pip install wandb`" in " ".join(capsys.readouterr().err.split())


def test_paths_that_look_like_files_are_never_taken_for_hub_ids(tmp_path):
    from pipelines.data.formats import hub_source

    assert hub_source("owner/name") == ("owner/name", None, "train")
    assert hub_source("owner/name:test") == ("owner/name", None, "test")
    assert hub_source("Anthropic/hh-rlhf:helpful-base:train") == ("Anthropic/hh-rlhf", "helpful-base", "train")
    for value in ("data/train.jsonl", "notes/a.txt", "runs/x:2.jsonl", "a/b:c:d:e", "just-a-name"):
        assert hub_source(value) is None, value


def test_a_saved_dataset_folder_takes_a_split(tmp_path):
    import datasets

    rows = [{"prompt": f"q{i}"} for i in range(6)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:4]),
                          "test": datasets.Dataset.from_list(rows[4:])}).save_to_disk(str(tmp_path / "saved"))
    assert len(load_prompts(tmp_path / "saved")[0]) == 4
    assert len(load_prompts(f"{tmp_path / 'saved'}:test")[0]) == 2
    with pytest.raises(DataError, match="without a `dev` split"):
        load_prompts(f"{tmp_path / 'saved'}:dev")
