"""Preference studio: labels, undo, resume, agreement, position bias, export to TRL pairs that train a reward run,
AI judges, bad input, and the page under AppTest (label, undo, resume, export, a generation job)."""

import json
import subprocess
import sys
import time
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from pipelines.data.formats import load_preferences
from pipelines.errors import ConfigError, DataError
from pipelines.runtime.runs import read_jsonl
from pipelines.studio.sets import (LabelingSet, agreement, check_labeler, export, import_pairs, model_wins, open_set,
                                   position_bias)
from tests.conftest import REPO, SAMPLE, cli, read_json, shown, write_jsonl
from workbench import jobs

INSTRUCTION = "Which response is more polite?"


def pairs_file(path, n=6, identical=()):
    """n pairs, a polite and a rude answer each; the pairs whose index is in `identical` repeat one answer."""
    rows = [{"prompt": f"What is {i} plus {i}?", "response_a": f"Happy to help! {i} plus {i} is {2 * i}.",
             "response_b": f"{2 * i}. Obviously." if i not in identical else f"Happy to help! {i} plus {i} is {2 * i}.",
             "model_a": "polite", "model_b": "rude"} for i in range(n)]
    return write_jsonl(path, rows)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("RLHF_WORKBENCH_ANY_PATH", "1")  # the owner's choice: the pages read the test's own files
    return tmp_path / "runs"


@pytest.fixture
def small_set(runs, tmp_path):
    return import_pairs(pairs_file(tmp_path / "pairs.jsonl"), "small", INSTRUCTION, runs)


def label(labeling_set: LabelingSet, who: str, item_id: str, winner):
    """Label as a person would: press the side the wanted candidate is shown on."""
    if winner in ("tie", "skip"):
        return labeling_set.add_label(item_id, who, winner)
    side = "left" if labeling_set.shown_left(item_id, who) == winner else "right"
    return labeling_set.add_label(item_id, who, side)


# ---- the set on disk -----------------------------------------------------------------------------------------------


def test_labels_undo_and_resume_from_disk(small_set, runs):
    assert small_set.progress("alice") == (0, 6)
    first = small_set.next_item("alice")
    event = label(small_set, "alice", first["id"], 1)
    assert event["winner"] == 1 and event["winner_model"] == "polite" and event["labeler"] == "alice"
    assert event["at"] and event["shown_left"] in (1, 2)
    assert (event["model_left"], event["model_right"]) == (("polite", "rude") if event["shown_left"] == 1
                                                           else ("rude", "polite"))
    label(small_set, "alice", small_set.next_item("alice")["id"], "tie")
    label(small_set, "alice", small_set.next_item("alice")["id"], 2)
    assert small_set.progress("alice") == (3, 6)
    undone = small_set.undo("alice")
    assert undone["item"] == "0002" and small_set.progress("alice") == (2, 6)
    assert small_set.next_item("alice")["id"] == "0002"  # the undone item comes back first
    assert small_set.undo("nobody") is None
    # Resume: a fresh object reads everything back from labels.jsonl, undo included.
    reopened = open_set("small", runs)
    current = reopened.labels("alice")["alice"]
    assert sorted(current) == ["0000", "0001"] and current["0001"]["choice"] == "tie"
    assert reopened.next_item("alice")["id"] == "0002"
    assert [e["event"] for e in read_jsonl(reopened.labels_file)] == ["label", "label", "label", "undo"]
    # Undo twice more, then once too often: never below zero, never someone else's label.
    label(reopened, "bob", "0000", 2)
    assert reopened.undo("alice")["item"] == "0001" and reopened.undo("alice")["item"] == "0000"
    assert reopened.undo("alice") is None
    assert reopened.labelers() == ["bob"]


def test_positions_are_random_per_item_and_labeler_but_reproducible(runs, tmp_path):
    big = import_pairs(pairs_file(tmp_path / "big.jsonl", n=40), "big", INSTRUCTION, runs)
    ids = [i["id"] for i in big.items()]
    alice = [big.shown_left(i, "alice") for i in ids]
    assert 8 < alice.count(1) < 32  # both sides, roughly half each
    assert alice == [open_set("big", runs).shown_left(i, "alice") for i in ids]  # the same after a reload
    assert alice != [big.shown_left(i, "bob") for i in ids]  # each labeler gets their own arrangement


def test_agreement_ties_and_position_bias(small_set):
    ids = [i["id"] for i in small_set.items()]
    for item_id, a, b in zip(ids, [1, 1, 2, 2, "tie", 1], [1, 2, 2, 1, 1, "skip"]):
        label(small_set, "alice", item_id, a)
        label(small_set, "bob", item_id, b)
    (row,) = agreement(small_set)
    assert (row["labeler 1"], row["labeler 2"]) == ("alice", "bob")
    assert row["both picked a side"] == 4 and row["agree"] == 2 and row["agreement"] == pytest.approx(0.5)
    assert row["with a tie"] == 1 and not row["ai vs human"]
    bias = {r["labeler"]: r for r in position_bias(small_set)}
    expected_left = sum(small_set.shown_left(i, "alice") == w for i, w in zip(ids, [1, 1, 2, 2, None, 1]))
    assert bias["alice"]["decided"] == 5 and bias["alice"]["picked left"] == expected_left
    assert bias["alice"]["share left"] == pytest.approx(expected_left / 5)
    wins = {r["model"]: r for r in model_wins(small_set)}
    assert (wins["polite"]["wins"], wins["rude"]["wins"], wins["polite"]["ties"]) == (6, 4, 1)


def test_export_is_trl_pairs_with_counts(small_set, tmp_path):
    ids = [i["id"] for i in small_set.items()]
    for item_id, a, b in zip(ids, [1, 1, 2, 2, "tie", 1], [1, 2, 2, 1, 1, "skip"]):
        label(small_set, "alice", item_id, a)
        label(small_set, "bob", item_id, b)
    out = tmp_path / "prefs.jsonl"
    result = export(small_set, out)
    assert (result["pairs"], result["ties"], result["skips"]) == (10, 1, 1)
    rows, report = load_preferences(out)  # what stage 2 reads, unchanged
    report.raise_if_errors()
    assert report.format == "explicit prompt/chosen/rejected" and report.kept == 10 and not report.skipped
    record = json.loads(out.read_text().splitlines()[0])
    assert record["prompt"] == "What is 0 plus 0?" and record["chosen"].startswith("Happy to help")
    assert record["instruction"] == INSTRUCTION and record["chosen_model"] == "polite"
    assert read_json(small_set.path / "export.meta.json")["instruction"] == INSTRUCTION
    agreed = export(small_set, out, agreed_only=True)
    assert agreed["pairs"] == 4 and agreed["disagreements"] == 2
    assert {json.loads(line)["labeler"] for line in out.read_text().splitlines()} >= {"alice+bob"}
    only_bob = export(small_set, out, labelers=["bob"])
    assert only_bob["pairs"] == 5 and only_bob["skips"] == 1
    with pytest.raises(ConfigError, match="No labels from carol"):
        export(small_set, out, labelers=["carol"])


def test_bad_input_gets_clear_messages(runs, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "q", "response_a": "a", "response_b": "b"}\n{"prompt": "q", "response_a": \n')
    with pytest.raises(DataError, match="line 2: invalid JSON"):
        import_pairs(broken, "broken", INSTRUCTION, runs)
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"prompt": "q", "response_a": "a", "response_b": "b"},
                                                       {"prompt": "q", "response_a": "a"}])
    with pytest.raises(DataError, match="line 2: missing field"):
        import_pairs(missing, "missing", INSTRUCTION, runs)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        import_pairs(empty, "empty", INSTRUCTION, runs)
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"question": "q"}])
    with pytest.raises(DataError, match="line 1: unknown pairs format"):
        import_pairs(unknown, "unknown", INSTRUCTION, runs)
    # Identical responses: left out and named by line; all identical: no set at all.
    some = import_pairs(pairs_file(tmp_path / "some.jsonl", n=4, identical=(1, 3)), "some", INSTRUCTION, runs)
    assert len(some.items()) == 2 and some.meta()["left_out_identical"] == [2, 4]
    with pytest.raises(DataError, match="would be empty: all 2 pairs have two identical responses"):
        import_pairs(pairs_file(tmp_path / "same.jsonl", n=2, identical=(0, 1)), "same", INSTRUCTION, runs)
    assert not (runs / "studio" / "same").exists()
    prefs = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "q", "chosen": "x", "rejected": "x"}])
    with pytest.raises(DataError, match="identical"):
        import_pairs(prefs, "prefs-same", INSTRUCTION, runs)
    with pytest.raises(ConfigError, match="already exists"):
        import_pairs(pairs_file(tmp_path / "again.jsonl"), "some", INSTRUCTION, runs)
    with pytest.raises(ConfigError, match="not usable as a folder name"):
        import_pairs(pairs_file(tmp_path / "x.jsonl"), "../escape", INSTRUCTION, runs)
    with pytest.raises(ConfigError, match="instruction is empty"):
        import_pairs(pairs_file(tmp_path / "x.jsonl"), "no-instruction", "  ", runs)
    with pytest.raises(ConfigError, match="marks AI judges"):
        check_labeler("ai:me")
    some.add_label("0000", "alice", "tie")
    with pytest.raises(DataError, match="Nothing to export.*1 tie"):
        export(some, tmp_path / "out.jsonl")
    with pytest.raises(ConfigError, match="no labeling set `nope`.*sets: some"):
        open_set("nope", runs)


def test_a_preference_file_becomes_a_set_with_its_labels_as_models(runs):
    labeling_set = import_pairs(SAMPLE / "prefs_eval.jsonl", "prefs", INSTRUCTION, runs)
    items = labeling_set.items()
    assert len(items) == 100
    assert {i["model_1"] for i in items} == {"chosen", "rejected"}  # shuffled, not always the preferred first


# ---- the command line: sampling candidates, AI judges ----------------------------------------------------------


def test_generate_one_model_sampled_twice(tiny_model_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli("studio", "generate", "--set", "twice", "--prompts", SAMPLE / "prompts_eval.jsonl", "--a", "base",
               "--b", "base", "--model", tiny_model_dir, "--num", 4, "--max-new-tokens", 6, "--instruction",
               INSTRUCTION, "--runs-dir", runs) == 0
    labeling_set = open_set("twice", runs)
    assert capsys.readouterr().out.strip().endswith(str(labeling_set.path))
    items = labeling_set.items()
    assert 1 <= len(items) <= 4 and len(items) + len(labeling_set.meta()["left_out_identical"]) == 4
    assert all(i["response_1"] != i["response_2"] for i in items)
    assert items[0]["prompt"] == "Which is bigger, 65 or 56?" and items[0]["model_1"].endswith("#1")
    assert labeling_set.meta()["instruction"] == INSTRUCTION


def test_generate_base_against_an_sft_run(tiny_sft_run, tmp_path):
    runs = tmp_path / "runs"
    assert cli("studio", "generate", "--set", "base-vs-sft", "--prompts", SAMPLE / "prompts_eval.jsonl", "--a",
               "base", "--b", tiny_sft_run, "--num", 3, "--max-new-tokens", 6, "--instruction", INSTRUCTION,
               "--runs-dir", runs) == 0
    items = open_set("base-vs-sft", runs).items()
    assert items and items[0]["model_1"].startswith("base (") and items[0]["model_2"] == f"sft:{tiny_sft_run.name}"


def one_line(text: str) -> str:
    """The CLI wraps its error paragraph at 110 columns."""
    return " ".join(text.split())


def test_generate_refuses_bad_input_before_loading_a_model(tiny_model_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    broken = tmp_path / "prompts.jsonl"
    broken.write_text('{"prompt": "fine"}\n{"prompt": "broken\n')
    common = ["--model", tiny_model_dir, "--instruction", INSTRUCTION, "--runs-dir", runs]
    assert cli("studio", "generate", "--set", "x", "--prompts", broken, "--a", "base", "--b", "base",
               *common) == 2
    assert "line 2: invalid JSON" in one_line(capsys.readouterr().err)
    assert cli("studio", "generate", "--set", "x", "--prompts", SAMPLE / "prompts_eval.jsonl", "--a", "base",
               "--b", "base", "--temperature", 0, *common) == 2
    assert "greedy decoding gives the same response twice" in one_line(capsys.readouterr().err)
    assert cli("studio", "generate", "--set", "x", "--prompts", SAMPLE / "prompts_eval.jsonl", "--a", "base",
               "--b", tmp_path, *common) == 2
    assert "not a run folder" in one_line(capsys.readouterr().err)
    assert not (runs / "studio" / "x").exists()


def test_reward_judge_labels_the_set_and_agrees_with_people(tiny_reward_run, runs, tmp_path):
    pairs = write_jsonl(tmp_path / "prefs.jsonl", [json.loads(line) for line in
                                                   (SAMPLE / "prefs_eval.jsonl").read_text().splitlines()[:12]])
    labeling_set = import_pairs(pairs, "judged", INSTRUCTION, runs)
    for item in labeling_set.items()[:8]:  # a person who always prefers the file's chosen (polite) answer
        label(labeling_set, "alice", item["id"], 1 if item["model_1"] == "chosen" else 2)
    assert cli("studio", "judge", "--set", "judged", "--reward", tiny_reward_run, "--runs-dir", runs) == 0
    ai = f"ai:reward:{tiny_reward_run.name}"
    labels = labeling_set.labels(ai)[ai]
    assert len(labels) == 12
    for event in labels.values():  # the higher score wins
        s1, s2 = event["scores"]
        assert event["winner"] == (1 if s1 > s2 else 2)
    row = next(r for r in agreement(labeling_set) if ai in (r["labeler 1"], r["labeler 2"]))
    assert row["ai vs human"] and row["both picked a side"] == 8 and row["agreement"] is not None
    # The page shows the AI-vs-person row.
    at = studio_page()
    at.text_input(key="studio.labeler").set_value("alice").run()
    shown = agreement_table(at)
    assert ai in set(shown["labeler 1"]) | set(shown["labeler 2"]) and shown["AI vs person"].any()


def test_llm_judge_asks_both_orders_and_keeps_only_consistent_verdicts(tiny_model_dir, small_set, runs, capsys):
    assert cli("studio", "judge", "--set", "small", "--llm", tiny_model_dir, "--runs-dir", runs) == 0
    ai = f"ai:llm:{tiny_model_dir.name}"
    labels = small_set.labels(ai)[ai]
    assert len(labels) == 6
    for event in labels.values():
        first, second = event["margins"]
        pick_in_order_1 = 1 if first > 0 else 2  # order 1 shows candidate 1 as "A"
        pick_in_order_2 = 2 if second > 0 else 1  # order 2 shows candidate 2 as "A"
        if pick_in_order_1 == pick_in_order_2:
            assert event["winner"] == pick_in_order_1 and event["choice"] in ("left", "right")
        else:
            assert event["winner"] is None and event["choice"] == "skip" and "orders disagree" in event["reason"]
    assert "labeled 6 items" in capsys.readouterr().out


def test_both_orders_must_agree():
    from pipelines.studio.models import both_orders_verdict

    assert both_orders_verdict(2.0, -1.0) == (1, ["A", "B"])  # candidate 1 in both orders
    assert both_orders_verdict(-0.5, 3.0) == (2, ["B", "A"])  # candidate 2 in both orders
    assert both_orders_verdict(1.0, 1.0) == (None, ["A", "A"])  # "A" whatever A is: position, not content
    assert both_orders_verdict(-1.0, -2.0) == (None, ["B", "B"])


def test_the_exported_file_trains_a_reward_run_without_conversion(tiny_model_dir, small_set, tmp_path):
    for item in small_set.items():
        label(small_set, "alice", item["id"], 1)  # the polite answer
    exported = tmp_path / "studio-export.jsonl"
    assert cli("studio", "export", "--set", "small", "--out", exported, "--runs-dir", small_set.path.parents[1]) == 0
    runs = tmp_path / "reward-runs"
    assert cli("reward", "--set", f"model={tiny_model_dir}", "--set", f"train_file={exported}", "--set",
               "max_steps=2", "--set", "batch_size=2", "--set", "max_length=96", "--set", "eval_split=0.2",
               "--runs-dir", runs) == 0
    summary = read_json(next(runs.glob("*-reward")) / "summary.json")
    assert summary["train_pairs"] + summary["eval_pairs"] == 6 and summary["dropped_pairs"] == 0


# ---- the page ----------------------------------------------------------------------------------------------------


def studio_page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/studio.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def progress_text(at: AppTest) -> str:
    return at.get("progress")[0].proto.text


def agreement_table(at: AppTest):
    return next(d.value for d in at.dataframe if "labeler 1" in d.value.columns)


def shown_texts(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


def test_page_imports_labels_undoes_resumes_and_exports(runs, tmp_path):
    at = studio_page()
    assert any("No labeling set yet" in i.value for i in at.info)
    at.text_input(key="studio.new.name").set_value("page")
    at.text_area(key="studio.new.instruction").set_value(INSTRUCTION)
    at.text_input(key="studio.new.file").set_value(str(pairs_file(tmp_path / "pairs.jsonl")))
    at.button(key="studio.import").click().run()
    assert not at.exception and any("Created set `page` with 6 pairs" in shown(s.value) for s in at.success)
    assert any(INSTRUCTION in i.value for i in at.info)  # the instruction, on the page
    labeling_set = open_set("page", runs)
    assert labeling_set.instruction == INSTRUCTION  # saved with the data

    at.text_input(key="studio.labeler").set_value("alice").run()
    assert progress_text(at) == "0 / 6 labeled by alice"
    assert "What is 0 plus 0?" in shown_texts(at)
    for key in ("studio.left", "studio.right", "studio.tie"):
        at.button(key=key).click().run()
    assert progress_text(at) == "3 / 6 labeled by alice" and "What is 3 plus 3?" in shown_texts(at)
    events = read_jsonl(labeling_set.labels_file)
    assert [e["choice"] for e in events] == ["left", "right", "tie"] and {e["labeler"] for e in events} == {"alice"}
    first = events[0]  # the left response was candidate `shown_left`, and the page showed it on the left
    assert first["winner"] == first["shown_left"]

    at.button(key="studio.undo").click().run()
    assert progress_text(at) == "2 / 6 labeled by alice" and "What is 2 plus 2?" in shown_texts(at)
    assert any("Undone: item 3" in t.value for t in at.toast)
    at.button(key="studio.skip").click().run()

    # Resume: a new session (closed tab, another day) with the same name continues at item 4.
    at = studio_page()
    at.text_input(key="studio.labeler").set_value("alice").run()
    assert progress_text(at) == "3 / 6 labeled by alice" and "What is 3 plus 3?" in shown_texts(at)
    for _ in range(3):
        at.button(key="studio.left").click().run()
    assert any("All 6 items labeled" in shown(s.value) for s in at.success)
    assert at.button(key="studio.left").disabled

    # A second labeler: their own progress, and the agreement table appears.
    at.text_input(key="studio.labeler").set_value("bob").run()
    assert progress_text(at) == "0 / 6 labeled by bob"
    at.button(key="studio.left").click().run()
    table = agreement_table(at)
    assert list(table["labeler 1"]) == ["alice"] and list(table["labeler 2"]) == ["bob"]
    assert at.get("plotly_chart")  # the position-bias figure
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/studio.py").run()  # a visit elsewhere keeps the labeler's name
    assert progress_text(at) == "1 / 6 labeled by bob"

    # Export into the uploads folder beside the runs, where the stage forms find it.
    from workbench.forms import data_files, uploads_dir

    name = f"studio-test-{uuid.uuid4().hex[:8]}.jsonl"
    target = uploads_dir() / name
    try:
        assert at.text_input(key="studio.export.file.page").value == "studio-page.jsonl"
        at.text_input(key="studio.export.file.page").set_value(name)
        at.button(key="studio.export").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(f"Wrote 6 preference pairs to `{target}`" in shown(s.value) for s in at.success), \
            [m.value for m in [*at.success, *at.error]]
        rows, report = load_preferences(target)
        assert report.kept == 6 and not report.errors  # alice's 5 decided labels + bob's 1; the skip left out
        assert str(target) in data_files()
    finally:
        target.unlink(missing_ok=True)


def test_page_bad_input_messages(runs, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "q", "response_a": "a", "response_b": "b"}\nnot json\n')
    at = studio_page()
    at.text_input(key="studio.new.name").set_value("broken")
    at.text_input(key="studio.new.file").set_value(str(broken))
    at.button(key="studio.import").click().run()
    assert any("line 2: invalid JSON" in shown(e.value) for e in at.error)
    at.text_input(key="studio.new.name").set_value("same")
    at.text_input(key="studio.new.file").set_value(str(pairs_file(tmp_path / "same.jsonl", n=2, identical=(0, 1))))
    at.button(key="studio.import").click().run()
    assert any("would be empty: all 2 pairs have two identical responses" in shown(e.value) for e in at.error)
    at.text_input(key="studio.new.name").set_value("some")
    at.text_input(key="studio.new.file").set_value(str(pairs_file(tmp_path / "some.jsonl", n=3, identical=(1,))))
    at.button(key="studio.import").click().run()
    assert any("1 pair(s) were left out because their two responses were identical (source line 2)" in shown(w.value)
               for w in at.warning)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": "broken\n')
    at.text_input(key="studio.new.prompts").set_value(str(prompts))
    at.button(key="studio.generate").click().run()
    assert any("line 2: invalid JSON" in shown(e.value) for e in at.error)
    assert not jobs.all_jobs(runs)  # no job started
    at.text_input(key="studio.labeler").set_value("ai:me").run()
    assert any("marks AI judges" in shown(e.value) for e in at.error)
    at.text_input(key="studio.labeler").set_value("carol").run()
    at.button(key="studio.tie").click().run()
    at.button(key="studio.export").click().run()
    assert any("Nothing to export" in shown(e.value) and "1 tie(s)" in shown(e.value) for e in at.error)


def test_page_generates_a_set_as_a_job(runs, tiny_model_dir):
    at = studio_page()
    at.text_input(key="studio.new.name").set_value("sampled")
    at.text_input(key="studio.new.model").set_value(str(tiny_model_dir))
    at.number_input(key="studio.new.num").set_value(3)
    at.number_input(key="studio.new.tokens").set_value(5)
    at.button(key="studio.generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = jobs.all_jobs(runs)[0]
    assert job.kind == "studio" and job.command[3:5] == ["studio", "generate"] and "--set=sampled" in job.command
    deadline = time.time() + 240
    while job.alive and time.time() < deadline:
        time.sleep(0.5)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Done: Sampling pairs for set `sampled`" in shown(s.value) for s in at.success), \
        jobs.job_console_tail(job)
    assert at.selectbox(key="studio.set").value == "sampled"
    assert open_set("sampled", runs).items()


def test_the_studio_page_never_imports_torch(runs, tmp_path):
    import_pairs(pairs_file(tmp_path / "pairs.jsonl"), "light", INSTRUCTION, runs)
    script = ("import sys; from streamlit.testing.v1 import AppTest\n"
              f"at = AppTest.from_file({str(REPO / 'app.py')!r}, default_timeout=120); at.run()\n"
              "at.switch_page('app_pages/studio.py'); at.run()\n"
              "at.text_input(key='studio.labeler').set_value('alice').run()\n"
              "at.button(key='studio.left').click().run(); assert not at.exception\n"
              "print('torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False False"


def test_page_shows_the_whole_message_of_a_failed_job(runs):
    at = studio_page()
    at.number_input(key="studio.new.temperature").set_value(0.0)  # base vs base, greedy: two identical answers
    at.button(key="studio.generate").click().run()
    job = jobs.all_jobs(runs)[0]
    deadline = time.time() + 120
    while job.alive and time.time() < deadline:
        time.sleep(0.3)
    at.run()
    message = " ".join(shown(e.value) for e in at.error)
    assert "greedy decoding gives the same response twice" in message and "Fix: a temperature above 0" in message
