"""Ten people watching a live PPO run: how long the PPO page takes to answer each of them, and how much the training
slows against no one watching. Prints a table and writes benchmarks/results/viewers-<machine>-<date>.json.

    .venv/bin/python benchmarks/viewers.py [--viewers 10] [--steps 8] [--rounds 2]

The quick recipes on the embedded model: a short SFT run and a short reward run first (only to have the models PPO
needs), then PPO `--rounds` times without viewers and `--rounds` times with them, alternated, in one sitting. Each
viewer is a Chromium page on the PPO page, whose live panel redraws every 2 seconds.

A real audience's browsers run on their own machines; here they share this one, so they run at the lowest priority
(nice 19) and take only what the training and the app's server leave. The slowdown measured is then mostly the
server's work for ten sessions. The CPU seconds of the server and of the browsers are reported apart. The answer
times are pessimistic for the same reason: a browser low in priority draws slowly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_in_browser import wait_for_app  # noqa: E402
from run import cpu_info, median, progress, read_jsonl, rnd, save_rounds, step_figures, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return total


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


async def watch(url: str, viewers: int, training: subprocess.Popen) -> dict:
    """Open `viewers` pages on the PPO page at once; time each until its live panel shows a chart; keep them open
    until the training ends. Returns the answer times and the browsers' CPU seconds."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        browser_pid = next((c.pid for c in psutil.Process().children(recursive=True)
                            if "chrom" in c.name().lower()), None)

        def lowest_priority() -> list[psutil.Process]:  # Chromium raises its GPU process' priority itself: again
            processes = tree(browser_pid) if browser_pid else []
            for process in processes:
                try:
                    process.nice(19)
                except psutil.Error:
                    pass
            return processes

        lowest_priority()
        pages = [await (await browser.new_context(viewport={"width": 1300, "height": 900})).new_page()
                 for _ in range(viewers)]

        async def one(page) -> float:
            start = time.perf_counter()
            await page.goto(f"{url}/ppo")
            await page.get_by_role("heading", name="Live run").wait_for(timeout=300_000)
            await page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
            return time.perf_counter() - start

        opened = asyncio.gather(*(one(page) for page in pages))
        while not opened.done():
            lowest_priority()
            await asyncio.sleep(0.5)
        answers = opened.result()
        browsers = lowest_priority()
        before = cpu_seconds(browsers)
        while training.poll() is None:
            await asyncio.sleep(1)
            browsers = lowest_priority() or browsers
        spent = cpu_seconds(browsers) - before
        await browser.close()
    return {"answer_s": answers, "browser_cpu_s": spent}


def wait_for_running(run_dir: Path, training: subprocess.Popen) -> None:
    """Until the run's first training step is logged (loading is left out of what the viewers watch)."""
    while training.poll() is None and not any("objective/scores" in r for r in read_jsonl(run_dir / "metrics.jsonl")):
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--steps", type=int, default=8, help="PPO steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each condition, alternated")
    parser.add_argument("--port", type=int, default=8612)
    parser.add_argument("--runs-dir", default="/tmp/viewers-bench-runs")
    args = parser.parse_args()
    runs = Path(args.runs_dir)
    env = {**os.environ, "RLHF_WORKBENCH_RUNS": str(runs), "STREAMLIT_SERVER_PORT": str(args.port)}

    for old in runs.glob("ppo-r*-v*"):  # an earlier sitting's PPO runs (their ids are reused)
        shutil.rmtree(old)
    if not any(runs.glob("*-reward")):
        progress("SFT and reward runs (the models PPO needs)")
        for stage, sets in (("sft", ["max_steps=10"]), ("reward", ["max_steps=10", "accuracy_gate=0"])):
            done = subprocess.run([sys.executable, "-m", "pipelines", stage, "--config",
                                   f"sample_data/recipes/{stage}_quick.yaml", "--runs-dir", str(runs),
                                   *[a for s in sets for a in ("--set", s)]], cwd=REPO, capture_output=True,
                                  text=True)
            assert done.returncode == 0, done.stderr[-2000:]

    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://localhost:{args.port}"
    wait_for_app(url)
    results = []
    try:
        for round_ in range(args.rounds):
            for viewers in (0, args.viewers):
                run_id = f"ppo-r{round_}-v{viewers}"
                progress(f"PPO, {args.steps} steps, {viewers} viewers ({run_id})")
                training = cli("ppo", "--config", "sample_data/recipes/ppo_quick.yaml", "--runs-dir", str(runs),
                               "--run-id", run_id, "--set", f"max_steps={args.steps}", "--set",
                               "allow_untrusted_judge=true")
                wait_for_running(runs / run_id, training)
                server_before = cpu_seconds(tree(server.pid))
                watched = asyncio.run(watch(url, viewers, training)) if viewers else {"answer_s": [],
                                                                                      "browser_cpu_s": 0.0}
                training.wait()
                server_cpu = cpu_seconds(tree(server.pid)) - server_before
                figures = step_figures("ppo", read_jsonl(runs / run_id / "metrics.jsonl"))
                results.append({"viewers": viewers, "round": round_, "s_per_step": figures.get("s_per_step"),
                                "answer_s": [rnd(a) for a in watched["answer_s"]],
                                "server_cpu_s": rnd(server_cpu), "browser_cpu_s": rnd(watched["browser_cpu_s"])})
    finally:
        os.killpg(server.pid, 15)
    none = median([r["s_per_step"] for r in results if r["viewers"] == 0])
    some = median([r["s_per_step"] for r in results if r["viewers"]])
    answers = sorted(a for r in results for a in r["answer_s"])
    summary = {"viewers": args.viewers, "s_per_step_without": rnd(none), "s_per_step_with": rnd(some),
               "slowdown": rnd(some / none, 3) if none and some else None,
               "answer_s_median": rnd(median(answers)), "answer_s_max": rnd(max(answers)) if answers else None,
               "server_cpu_s_per_round_with": rnd(median([r["server_cpu_s"] for r in results if r["viewers"]])),
               "server_cpu_s_per_round_without": rnd(median([r["server_cpu_s"] for r in results if not r["viewers"]])),
               "browser_cpu_s_per_round": rnd(median([r["browser_cpu_s"] for r in results if r["viewers"]]))}
    info = cpu_info()
    print(table(["viewers", "round", "s/step", "page answered in (s)", "server CPU s", "browsers' CPU s"],
                [[r["viewers"], r["round"], r["s_per_step"], ", ".join(map(str, r["answer_s"])) or "-",
                  r["server_cpu_s"], r["browser_cpu_s"]] for r in results]))
    save_rounds("viewers", info, summary, results)


if __name__ == "__main__":
    main()
