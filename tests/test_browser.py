"""A real browser: Debian's Chromium driven by Playwright against the app started with the README's command.
Home -> SFT stage -> start a tiny run -> the live chart shows points. Screenshots go to tests/screenshots/."""

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = REPO / "tests" / "screenshots"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed (.ci/run installs "
                                                                       "it: apt-get install chromium)")]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(tmp_path):
    port = free_port()
    # RLHF_WORKBENCH_ANY_PATH: the owner's choice at start, so the pages may read the tests' temporary model folder.
    env = {**os.environ, "RLHF_WORKBENCH_RUNS": str(tmp_path / "runs"), "STREAMLIT_SERVER_PORT": str(port),
           "RLHF_WORKBENCH_ANY_PATH": "1"}
    # The README's run command, unchanged; only the port differs so a developer's own app is left alone.
    proc = subprocess.Popen(["make", "app"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://localhost:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, 9)
        pytest.fail(f"the app did not start: {proc.stdout.read().decode()[-2000:]}")
    yield url
    stop_app(proc)


def stop_app(proc: subprocess.Popen) -> None:
    """End the app's process group: politely, then for good."""
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=15)


@pytest.fixture
def home_page(app_url):
    """Chromium showing the app's Home page."""
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        expect(page.get_by_role("heading", name="RLHF Workbench")).to_be_visible(timeout=60_000)
        yield page
        browser.close()


def test_click_from_home_to_a_live_run(home_page, tiny_model_dir):
    from playwright.sync_api import expect

    page = home_page
    page.screenshot(path=str(SHOTS / "1-home.png"), full_page=True)

    page.get_by_role("link", name="1 · SFT").click()
    expect(page.get_by_role("heading", name="Stage 1 · Supervised fine-tuning")).to_be_visible(timeout=30_000)
    idle = page.get_by_test_id("stStatusWidget")  # shown while a rerun is under way
    for label, value in (("model", str(tiny_model_dir)), ("max steps", "4")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        time.sleep(1.5)  # each edit's rerun settles before the next key press or click lands
        expect(idle).to_be_hidden(timeout=30_000)
    start = page.get_by_role("button", name="Start SFT run")
    expect(start).to_be_enabled()
    start.click()
    # the run's panel replaces "No SFT run yet" (a 4-step tiny run may already be over: "Latest run")
    expect(page.get_by_role("heading", name=re.compile("^(Live|Latest) run$"))).to_be_visible(timeout=60_000)

    # The live chart appears and fills with points as the subprocess logs steps.
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible(timeout=120_000)
    expect(page.get_by_text("completed").first).to_be_visible(timeout=120_000)
    points = page.locator(".js-plotly-plot .scatterlayer .trace .points path")
    assert points.count() >= 3
    # The live run sits above the settings form (its panel redraws every 2 s: scroll to the static title).
    page.get_by_role("heading", name="Stage 1 · Supervised fine-tuning").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "2-sft-live.png"), full_page=True)


def test_a_killed_run_resumes_from_the_browser(home_page, tiny_model_dir, tmp_path):
    """A run killed after its first checkpoint shows as failed with a Resume button; one click brings it back live
    in the same run directory, and it finishes."""
    import re

    from playwright.sync_api import expect

    from tests.conftest import SAMPLE, kill_after_first_checkpoint

    runs = tmp_path / "runs"  # the app's runs folder (app_url)
    kill_after_first_checkpoint(["sft", "--set", f"model={tiny_model_dir}", "--set",
                                 f"train_file={SAMPLE / 'sft_train.jsonl'}", "--set", "max_steps=16", "--set",
                                 "save_steps=3", "--set", "max_length=96", "--runs-dir", str(runs)], runs / "killed")
    page = home_page
    page.get_by_role("link", name="1 · SFT").click()
    expect(page.get_by_text("failed").first).to_be_visible(timeout=30_000)
    resume = page.get_by_role("button", name=re.compile(r"Resume from step \d+"))
    expect(resume).to_be_visible(timeout=30_000)
    page.wait_for_timeout(2_000)  # let the page finish drawing before the picture
    resume.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "5-failed-run.png"))
    resume.click()
    expect(page.get_by_text("completed").first).to_be_visible(timeout=180_000)
    expect(page.get_by_text(re.compile(r"Resumed 1×"))).to_be_visible(timeout=30_000)
    page.screenshot(path=str(SHOTS / "6-resumed-run.png"), full_page=True)
    from pipelines.runtime.runs import Run

    assert [r["step"] for r in Run(runs / "killed").metrics() if "loss" in r] == list(range(1, 17))


def test_a_deep_link_to_a_fresh_server_gets_the_app_frame(app_url):
    """A bookmarked /compare opened before anyone opened `/` (after a restart, say): the app's own navigation, not
    Streamlit's legacy list of the script files (what a folder named `pages/` next to app.py used to cause)."""
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for attempt in range(2):  # it used to happen on every request until `/` was opened
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{app_url}/compare")
            expect(page.get_by_role("heading", name="Compare: base vs SFT vs aligned")).to_be_visible(timeout=60_000)
            nav = page.get_by_test_id("stSidebarNav")
            expect(nav.get_by_text("Stages")).to_be_visible(timeout=30_000)  # the app's own sections
            expect(nav.get_by_text("1 · SFT")).to_be_visible()
            assert "app" not in nav.inner_text().lower().split()  # no file names listed (app.py, compare.py...)
            page.screenshot(path=str(SHOTS / f"7-deep-link-{attempt + 1}.png"))
            page.close()
        browser.close()


@pytest.fixture
def finished_demo(tmp_path, full_runs):
    """The app's runs folder holding a finished demo's runs (the tiny model's SFT, judge, PPO and comparison);
    requested before `app_url`, so the app starts on it."""
    shutil.copytree(full_runs, tmp_path / "runs")
    return tmp_path / "runs"


def test_home_to_compare_on_a_finished_demo(finished_demo, home_page):
    """What a visitor reads: Home's results card, then Compare with what the judge measures, how often each model
    is right, and which KL is which."""
    from playwright.sync_api import expect

    page = home_page
    expect(page.get_by_role("heading", name="Latest results")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Judge prefers Aligned (PPO) over SFT", exact=True)).to_be_visible()
    expect(page.get_by_text("Correct answers, SFT → Aligned (PPO)", exact=True)).to_be_visible()
    page.screenshot(path=str(SHOTS / "8-home-results.png"), full_page=True)
    page.get_by_role("link", name="All answers side by side on Compare").click()
    expect(page.get_by_role("heading", name="Compare: base vs SFT vs aligned")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("The judge was trained on comparisons where people judged")).to_be_visible(
        timeout=30_000)
    expect(page.get_by_text("It scores that, and nothing else")).to_be_visible()
    rates = page.get_by_text("Correct answers (of the prompts with a reference answer)")
    expect(rates).to_be_visible()
    for model in ("Base model", "SFT", "Aligned (PPO)"):
        assert model in rates.inner_text()
    expect(page.get_by_text("final KL to the SFT model")).to_be_visible()
    expect(page.get_by_text("training average", exact=False).first).to_be_visible()
    page.screenshot(path=str(SHOTS / "9-compare.png"), full_page=True)


def test_the_probe_slider_shows_each_step_beside_the_start(finished_demo, home_page):
    """The PPO page's reward-hacking watch in a real browser: the probe answers at the newest probed step beside the
    starting model's, and at the first one once the slider moves (the tiny PPO run probes at steps 0, 1 and 2)."""
    from playwright.sync_api import expect

    page = home_page
    page.get_by_role("link", name="3 · PPO").click()
    expect(page.get_by_text("the same questions, answered by the model")).to_be_visible(timeout=30_000)
    slider = page.get_by_role("slider").first
    slider.scroll_into_view_if_needed()
    expect(page.get_by_text("→ step 2:", exact=False)).to_be_visible()
    expect(page.get_by_text("Starting model · score", exact=False).first).to_be_visible()
    page.screenshot(path=str(SHOTS / "13-ppo-probes-newest.png"), full_page=True)
    for _ in range(3):  # a key that lands while the live panel redraws (every 2 s) is lost: press again
        page.get_by_role("slider").first.focus()
        page.keyboard.press("Home")
        try:
            expect(page.get_by_text("→ step 1:", exact=False)).to_be_visible(timeout=5_000)
            break
        except AssertionError:
            continue
    expect(page.get_by_text("→ step 1:", exact=False)).to_be_visible(timeout=5_000)
    expect(page.get_by_text("Step 1 · score", exact=False).first).to_be_visible()
    page.wait_for_timeout(2_500)  # a refresh of the live panel later the chosen step stays
    expect(page.get_by_text("→ step 1:", exact=False)).to_be_visible()
    page.screenshot(path=str(SHOTS / "14-ppo-probes-first.png"), full_page=True)


@pytest.fixture
def finished_methods_demo(tmp_path, methods_runs):
    """The app's runs folder after the methods demo (tiny model): SFT, judge, PPO, DPO, GRPO, and a comparison of
    all five on checkable questions."""
    shutil.copytree(methods_runs, tmp_path / "runs")
    return tmp_path / "runs"


def test_compare_of_five_models_and_which_approach(finished_methods_demo, home_page):
    """Compare shows every pair of the five models as a matrix and each one's correct answers; "Which approach?"
    recommends GRPO for checkable answers and reads each path's cost from the runs."""
    from playwright.sync_api import expect

    page = home_page
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Compare").click()
    expect(page.get_by_role("heading", name="Compare: base vs SFT vs aligned")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("How often the judge preferred the row's answer over the column's")).to_be_visible(
        timeout=30_000)
    rates = page.get_by_text("Correct answers (of the prompts with a reference answer)")
    expect(rates).to_be_visible()
    for model in ("Base model", "SFT", "Aligned (PPO)", "Aligned (DPO)", "Aligned (GRPO)"):
        assert model in rates.inner_text()
    page.screenshot(path=str(SHOTS / "11-compare-methods.png"), full_page=True)

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Which approach?").click()
    expect(page.get_by_role("heading", name="Which approach?")).to_be_visible(timeout=30_000)
    page.get_by_text("yes", exact=True).first.click()  # a rule can check the answers
    expect(page.get_by_text("Recommended: GRPO with a verifiable reward")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("sft + grpo", exact=True)).to_be_visible()  # its cost, measured from the runs
    page.screenshot(path=str(SHOTS / "12-which-approach.png"), full_page=True)


def test_the_data_page_checks_an_uploaded_broken_file_at_once(home_page, tmp_path):
    from playwright.sync_api import expect

    page = home_page
    page.get_by_test_id("stSidebarNav").get_by_text("Data").click()
    expect(page.get_by_role("heading", name="Data")).to_be_visible(timeout=30_000)
    broken = tmp_path / "broken_prompts.jsonl"
    broken.write_text('{"prompt": "What is 2 + 2?"}\n{"prompt": "Name a colour."\n{"prompt": "Hi"}\n',
                      encoding="utf-8")
    page.get_by_text("Prompts (prompt, or messages)").click()
    for _ in range(3):  # a file handed over while the page reruns (after the click) can be lost: hand it over again
        page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(broken))
        try:
            expect(page.get_by_text("Saved as")).to_be_visible(timeout=10_000)
            break
        except AssertionError:
            continue
    expect(page.get_by_text("Saved as")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("line 2", exact=False).first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(SHOTS / "10-data-upload.png"), full_page=True)


def test_a_shared_app_asks_for_a_token_and_a_viewer_only_watches(finished_demo, tmp_path):
    """`make share` as the owner starts it: bound to every interface, an owner link and a viewer link printed. A
    visitor without the token sees only the login; the viewer link shows the results with no control to act, and
    stays signed in over a page change and a reload; the owner link has the controls."""
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLHF_WORKBENCH_") or k.endswith("_RUNS")}
    env.update(RLHF_WORKBENCH_RUNS=str(finished_demo), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(["make", "share", f"ARGS=--port {port}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        links = {}
        while len(links) < 2 and (line := proc.stdout.readline()):
            if match := re.match(r"(Owner|Viewers) .*(\?token=\S+)$", line.strip()):
                links[match[1]] = f"http://localhost:{port}/{match[2]}"
        assert len(links) == 2, "the links were not printed"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for _ in range(120):  # the server starts after the links are printed
                try:
                    page.goto(f"http://localhost:{port}/")
                    break
                except Exception:  # noqa: BLE001 - connection refused until it listens
                    time.sleep(0.5)
            expect(page.get_by_label("Access token")).to_be_visible(timeout=60_000)
            expect(page.get_by_role("link", name="1 · SFT")).to_have_count(0)  # no navigation, no page
            page.get_by_label("Access token").fill("a guess")
            page.get_by_role("button", name="Open").click()
            expect(page.get_by_text("That token is not right")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(SHOTS / "10-login.png"))

            page.goto(links["Viewers"])
            expect(page.get_by_role("heading", name="Latest results")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Viewer: you watch runs and results")).to_be_visible()
            expect(page.get_by_role("button", name=re.compile("Run the whole demo"))).to_have_count(0)
            expect(page.get_by_role("link", name="Data")).to_have_count(0)
            page.get_by_role("link", name="1 · SFT").click()
            expect(page.get_by_text("You are watching")).to_be_visible(timeout=30_000)
            page.reload()  # the token stayed in the address
            expect(page.get_by_text("You are watching")).to_be_visible(timeout=60_000)
            expect(page.get_by_role("button", name="Start SFT run")).to_have_count(0)
            page.screenshot(path=str(SHOTS / "11-viewer-sft.png"), full_page=True)

            page.goto(links["Owner"])
            expect(page.get_by_role("button", name=re.compile("Run the whole demo"))).to_be_visible(timeout=60_000)
            expect(page.get_by_role("link", name="Data")).to_be_visible()
            browser.close()
    finally:
        stop_app(proc)
