import json

import pytest

from pipelines.data.formats import (encode_response, fit_to_length, load_preferences, load_prompts, load_sft,
                                    split_hh_transcript)
from pipelines.errors import DataError
from tests.conftest import SAMPLE, SHARED_DATA, write_jsonl

USER, ANSWER = "What is the capital of France?", "Paris."
EXPECTED = {"prompt": [{"role": "user", "content": USER}], "completion": [{"role": "assistant", "content": ANSWER}]}


@pytest.mark.parametrize("record, fmt", [
    ({"messages": [{"role": "user", "content": USER}, {"role": "assistant", "content": ANSWER}]}, "messages"),
    ({"prompt": USER, "completion": ANSWER}, "prompt-completion"),
    ({"prompt": [{"role": "user", "content": USER}], "completion": [{"role": "assistant", "content": ANSWER}]},
     "prompt-completion"),
    ({"instruction": USER, "input": "", "output": ANSWER}, "alpaca"),
])
def test_sft_formats_normalise_to_prompt_completion(tmp_path, record, fmt):
    rows, report = load_sft(write_jsonl(tmp_path / "d.jsonl", [record, record]))
    assert report.format == fmt and report.kept == 2 and not report.errors
    assert {k: v for k, v in rows[0].items() if k != "_line"} == EXPECTED


def test_alpaca_input_is_appended_and_empty_output_reported(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Sum", "input": "1 2", "output": "3"},
                                             {"instruction": "Sum", "input": "", "output": ""}])
    rows, report = load_sft(path)
    assert rows[0]["prompt"][0]["content"] == "Sum\n\n1 2"
    assert report.skipped == [(2, "empty response")]
    assert any("skipped 1: empty response (line 2)" in line for line in report.lines())


def test_text_format(tmp_path):
    rows, report = load_sft(write_jsonl(tmp_path / "t.jsonl", [{"text": "hello world"}]))
    assert report.format == "text" and rows[0]["text"] == "hello world"


def test_file_types(tmp_path):
    import datasets

    records = [{"prompt": USER, "completion": ANSWER}] * 3
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "w.json").write_text(json.dumps({"data": records}))
    (tmp_path / "d.csv").write_text("prompt,completion\n" + f"{USER},{ANSWER}\n" * 3)
    datasets.Dataset.from_list(records).to_parquet(str(tmp_path / "d.parquet"))
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "folder"))
    for name in ("d.json", "w.json", "d.csv", "d.parquet", "folder"):
        rows, report = load_sft(tmp_path / name)
        assert report.kept == 3, name
        assert {k: v for k, v in rows[0].items() if k != "_line"} == EXPECTED, name


@pytest.mark.parametrize("content, words", [
    (b"", ["is empty"]),
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": \n', ["line 2", "invalid JSON"]),
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n', ["line 2", "not UTF-8"]),
    (b'{"question": "a", "answer": "b"}\n', ["line 1", "unknown format", "question", "prompt/completion"]),
    (b'[1, 2]\n', ["line 1", "JSON object"]),
])
def test_bad_files_name_the_line_and_the_fix(tmp_path, content, words):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        rows, report = load_sft(path)
        report.raise_if_errors()
    for word in words:
        assert word in str(err.value)


def test_missing_and_mistyped_fields_are_listed_with_lines(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "a"},
                                             {"prompt": 3, "completion": "b"}])
    rows, report = load_sft(path)
    assert [line for line, _ in report.errors] == [2, 3]
    with pytest.raises(DataError, match=r"line 2: missing field.*line 3: `prompt` must be a string"):
        report.raise_if_errors()


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_sft(tmp_path / "nope.jsonl")
    (tmp_path / "d.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown extension `.txt`"):
        load_sft(tmp_path / "d.txt")


def test_preference_formats(tmp_path):
    hh = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital of France?\n\nAssistant: Paris.",
          "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital of France?\n\nAssistant: No idea."}
    explicit = {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "No idea."}
    conversational = {"prompt": [{"role": "user", "content": "Capital of France?"}],
                      "chosen": [{"role": "assistant", "content": "Paris."}],
                      "rejected": [{"role": "assistant", "content": "No idea."}]}
    implicit_msgs = {"chosen": conversational["prompt"] + conversational["chosen"],
                     "rejected": conversational["prompt"] + conversational["rejected"]}
    for record, fmt in ((hh, "implicit"), (explicit, "explicit"), (conversational, "explicit"),
                        (implicit_msgs, "implicit")):
        rows, report = load_preferences(write_jsonl(tmp_path / "p.jsonl", [record]))
        assert report.format.startswith(fmt) and report.kept == 1
        assert rows[0]["chosen"] == "Paris." and rows[0]["rejected"] == "No idea."
        assert rows[0]["prompt"][-1] == {"role": "user", "content": "Capital of France?"}
    rows, _ = load_preferences(write_jsonl(tmp_path / "p.jsonl", [hh]))
    assert [m["role"] for m in rows[0]["prompt"]] == ["user", "assistant", "user"]


def test_identical_pairs_are_reported_and_skipped(tmp_path):
    rows, report = load_preferences(write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "same", "rejected": "same"}]))
    assert report.kept == 1 and report.skipped == [(2, "chosen == rejected")]


def test_hh_transcript_split():
    assert split_hh_transcript("\n\nHuman: a b\n\nAssistant: c") == [
        {"role": "user", "content": "a b"}, {"role": "assistant", "content": "c"}]
    with pytest.raises(ValueError):
        split_hh_transcript("just text")


def test_prompts(tmp_path):
    rows, report = load_prompts(write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q1"}, {"prompt": ""},
                                                                   {"prompt": [{"role": "user", "content": "q2"}]}]))
    assert [r["prompt"][0]["content"] for r in rows] == ["q1", "q2"] and report.skipped == [(2, "empty prompt")]


def test_prompts_keep_a_text_or_number_reference_answer(tmp_path):
    """Other shapes (aliases as a list, a worked solution as a dict, a blank) are not graded, and not an error:
    the prompts still serve PPO."""
    rows, report = load_prompts(write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "q1", "answer": " Moscow "}, {"prompt": "q2", "answer": 12}, {"prompt": "q3"},
        {"prompt": "q4", "answer": ["a", "b"]}, {"prompt": "q5", "answer": "  "}, {"prompt": "q6", "answer": True}]))
    assert [r.get("answer") for r in rows] == ["Moscow", "12", None, None, None, None]
    assert not report.errors and not report.skipped
    # the sample data's held-out prompts carry answers where one is short and checkable
    rows, report = load_prompts(SAMPLE / "prompts_eval.jsonl")
    assert not report.errors and 10 <= sum("answer" in r for r in rows) < len(rows)


def test_fit_to_length():
    assert fit_to_length(list(range(10)), [5, 3], 20, 4) == 10  # fits
    assert fit_to_length(list(range(10)), [5, 3], 12, 4) == 7  # prompt cut from the left
    assert fit_to_length(list(range(10)), [10, 3], 12, 4) is None  # responses alone leave too little room


def test_encode_response_uses_the_chat_template(default_tokenizer_dir):
    from pipelines.model.loading import load_tokenizer

    tok = load_tokenizer(str(default_tokenizer_dir))
    prompt_ids, response_ids = encode_response(tok, [{"role": "user", "content": USER}], ANSWER)
    assert tok.decode(prompt_ids).endswith("<|im_start|>assistant\n")
    assert tok.decode(response_ids).startswith("Paris.<|im_end|>")
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id not in prompt_ids + response_ids


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_real_data_loads():
    rows, report = load_sft(SHARED_DATA / "code_alpaca_1k.jsonl")
    assert report.format == "alpaca" and report.kept == 999 and len(report.skipped) == 1
    pairs, report = load_preferences(SHARED_DATA / "hh_helpful_pairs_2k.jsonl")
    assert report.format.startswith("implicit") and report.total == 2000
    assert sum(1 for _, why in report.skipped if why == "chosen == rejected") == 23


def test_json_lines_end_at_newlines_only_so_a_text_may_hold_a_line_separator(tmp_path):
    """What the workbench writes (json.dumps with ensure_ascii=False keeps U+2028 as it is) it reads back whole: the
    studio's export of a sampled answer holding one used to be "invalid JSON" for the reward stage."""
    from pipelines.runtime.runs import read_jsonl

    odd = "First line\u2028second line\u2029and a paragraph\x85and NEL."
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": USER, "chosen": odd, "rejected": "No."}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    rows, report = load_preferences(path)
    assert report.kept == 1 and rows[0]["chosen"] == odd
    assert read_jsonl(path)[0]["chosen"] == odd


@pytest.mark.parametrize("text, words", [
    ("prompt,completion\nWhat is 2+2?,4,extra\n", ["line 2", "3 fields but the header names 2", "quote"]),
    ("prompt,completion\nQ," + "x" * 200_000 + "\n", ["line 2", "not readable as CSV", "JSON Lines"]),
])
def test_a_csv_row_the_header_cannot_name_is_refused_with_its_line(tmp_path, text, words):
    path = tmp_path / "examples.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_sft(path)
    assert all(word in str(err.value) for word in words), str(err.value)
