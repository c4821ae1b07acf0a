"""A real browser labels in the preference studio with the keyboard only: A, B, T (tie), U (undo), S (skip).
The labels must land in the set's labels.jsonl as they are made. Screenshot: tests/screenshots/3-studio.png."""

import time

from pipelines.runtime.runs import read_jsonl
from pipelines.studio.sets import import_pairs
from tests.conftest import SAMPLE
from tests.test_browser import SHOTS, app_url, home_page, pytestmark  # noqa: F401 (fixtures, marks)


def test_label_with_the_keyboard(home_page, tmp_path):  # noqa: F811 (home_page is the imported fixture)
    from playwright.sync_api import expect

    # The app runs on tmp_path/runs; a set created there is on the studio page when it is opened.
    labeling_set = import_pairs(SAMPLE / "prefs_eval.jsonl", "keyboard", "Which response is more polite?",
                                tmp_path / "runs")
    page = home_page
    page.get_by_role("link", name="Preference studio").click()  # the navigation entry in app.py
    expect(page.get_by_role("heading", name="Preference studio")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("What to judge: Which response is more polite?")).to_be_visible(timeout=30_000)
    name = page.get_by_role("textbox", name="Your name")
    name.fill("kim")
    name.press("Enter")
    expect(page.get_by_text("0 / 100 labeled by kim")).to_be_visible(timeout=30_000)
    # Typing the name did not label anything: shortcuts are off while a text field has the focus.
    assert read_jsonl(labeling_set.labels_file) == []
    page.get_by_role("heading", name="Preference studio").click()  # focus leaves the text field

    def press(key: str, progress: int) -> None:
        page.keyboard.press(key)
        expect(page.get_by_text(f"{progress} / 100 labeled by kim")).to_be_visible(timeout=30_000)
        time.sleep(0.3)  # the rerun settles before the next key

    press("a", 1)
    press("b", 2)
    press("t", 3)
    press("u", 2)  # undo the tie
    press("s", 3)
    page.screenshot(path=str(SHOTS / "3-studio.png"), full_page=True)

    events = read_jsonl(labeling_set.labels_file)
    assert [e["event"] for e in events] == ["label", "label", "label", "undo", "label"]
    assert [e.get("choice") for e in events if e["event"] == "label"] == ["left", "right", "tie", "skip"]
    assert {e["labeler"] for e in events} == {"kim"}
    current = labeling_set.labels("kim")["kim"]
    assert [current[i]["choice"] for i in sorted(current)] == ["left", "right", "skip"]
    assert labeling_set.progress("kim") == (3, 100)
