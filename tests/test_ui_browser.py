"""The MLflow UI in a real browser: what a user sees after two trainings and a `register`.

A real `mlflow server` on 127.0.0.1 over a temp sqlite store, two `bertcls train` runs and a `bertcls register`
through it, then Debian's chromium (headless) driven by Playwright: the runs table finds our runs by our params
and metrics, a run shows its params, metrics, figures and logged model, its metric charts get one point per
epoch, the compare view opens, and the Models page shows the model with @champion. Screenshots go to the test's
tmp dir; with BERTCLS_UI_SCREENSHOTS=<dir> they are also written there (how README's images were made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests import e2e

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as a test needs it here: no sandbox as root, no GPU, and no background calls to Google's services,
# which this machine's closed network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
EXPERIMENT, MODEL, EPOCHS = "ui", "bertcls-ui", 2
RUNS = {"lr-1e-4": "1e-4", "lr-3e-4": "3e-4"}  # run name -> lr

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - make setup installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.xdist_group("ui_browser"),  # one xdist worker: fixtures train once
    pytest.mark.slow,
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (make setup installs it)"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make system-deps)"),
]


@pytest.fixture(scope="module")
def ui(tmp_path_factory, small_model_dir):
    """(server URL, experiment id, {run name: run id}) after two trainings and a register through the server."""
    home = tmp_path_factory.mktemp("ui")
    args = ["--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--artifacts-destination", str(home / "art")]
    with e2e.mlflow_server(args, home) as url:
        # the real `bertcls train` and `register`, in this process, through the server's REST API
        run_ids = {
            name: e2e.train_here(
                url,
                EXPERIMENT,
                small_model_dir,
                lr=lr,
                run_name=name,
                epochs=EPOCHS,
                max_train_samples=96,
                max_eval_samples=48,
                max_buckets=2,
            )
            for name, lr in RUNS.items()
        }
        e2e.bertcls_here(url, "register", "--experiment", EXPERIMENT, "--name", MODEL)
        experiment_id = MlflowClient(url).get_experiment_by_name(EXPERIMENT).experiment_id
        yield url, experiment_id, run_ids


def _shoot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"))
    if os.environ.get("BERTCLS_UI_SCREENSHOTS"):
        target = Path(os.environ["BERTCLS_UI_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / f"{name}.png", target / f"{name}.png")


def test_browser_shows_runs_charts_compare_and_champion(ui, tmp_path):
    url, experiment_id, run_ids = ui
    first, second = run_ids["lr-1e-4"], run_ids["lr-3e-4"]
    history: dict[tuple[str, str], set[int]] = {}  # (run id, metric) -> steps the UI fetched for its charts

    def record(response):
        if "metrics/get-history" in response.url and response.ok:
            for point in json.loads(response.body()).get("metrics", []):
                key = (point.get("run_id") or first, point["key"])
                history.setdefault(key, set()).add(int(point.get("step", 0)))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # a loaded CI machine renders slowly
        page.on("response", record)

        # The experiment opens on MLflow's GenAI overview: dismiss its guidance, switch to "Model training" (as
        # docs/ui.md tells users), and the runs table lists both runs; search them by our params and metrics.
        page.goto(f"{url}/#/experiments/{experiment_id}")
        page.get_by_role("button", name="Got it").click()
        page.get_by_text("Model training", exact=True).click()
        page.get_by_role("button", name="Close", exact=True).click()  # the assistant panel: room for the table
        expect(page).to_have_url(re.compile(r"/runs\?.*workflowType=machine_learning"))
        for name in RUNS:
            expect(page.get_by_role("link", name=name)).to_be_visible()
        search = page.get_by_placeholder(re.compile(r"metrics\.|params\."))
        search.fill('params.lr = "0.0003" and metrics.best_val_accuracy >= 0 and params.finetune = "full"')
        search.press("Enter")
        expect(page.get_by_text(re.compile(r"^1 matching run"))).to_be_visible()
        expect(page.get_by_role("link", name="lr-3e-4")).to_be_visible()
        expect(page.get_by_role("link", name="lr-1e-4")).to_have_count(0)
        search.fill("metrics.best_val_accuracy >= 0")
        search.press("Enter")
        expect(page.get_by_text(re.compile(r"^2 matching runs"))).to_be_visible()
        _shoot(page, tmp_path, "runs")

        # A run: its params and metrics, and its logged model linked to the metrics.
        page.goto(f"{url}/#/experiments/{experiment_id}/runs/{first}")
        for text in ("best_val_accuracy", "test_mcc", "finetune", "effective_batch_size"):
            expect(page.get_by_text(text, exact=True).first).to_be_visible()
        expect(page.get_by_role("link", name="model", exact=True).first).to_be_visible()  # its logged model
        _shoot(page, tmp_path, "run")

        # Its metric charts: the UI fetches one point per epoch for each per-epoch metric.
        page.goto(f"{url}/#/experiments/{experiment_id}/runs/{first}/model-metrics")
        page.get_by_placeholder("Search metric charts").fill("val_accuracy")  # per epoch (and best_, baseline_)
        expect(page.get_by_text("val_accuracy", exact=True).first).to_be_visible()
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0")
        page.wait_for_timeout(3000)  # the charts' history requests
        fetched = {metric: steps for (run, metric), steps in history.items() if run == first}
        assert fetched.get("val_accuracy") == set(range(1, EPOCHS + 1)), history
        _shoot(page, tmp_path, "metrics")

        # Its figures.
        page.goto(f"{url}/#/experiments/{experiment_id}/runs/{first}/artifacts")
        page.get_by_text("figures", exact=True).click()
        page.get_by_text("learning_curves.png", exact=True).click()
        expect(page.locator("img[src*='learning_curves.png'], img[src^='blob:']").first).to_be_visible()
        _shoot(page, tmp_path, "figures")

        # The compare view of the two runs.
        page.goto(f'{url}/#/compare-runs?runs=["{first}","{second}"]&experiments=["{experiment_id}"]')
        expect(page.get_by_text(re.compile(r"Comparing 2 Runs"))).to_be_visible()
        for name in RUNS:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        metrics = page.get_by_role("combobox").nth(1)  # the parallel-coordinates plot's metrics: ours, not CPU
        metrics.press("Backspace")
        metrics.fill("best_val_accuracy")
        metrics.press("Enter")
        metrics.fill("test_accuracy")
        metrics.press("Enter")
        page.keyboard.press("Escape")
        expect(page.locator(".js-plotly-plot").get_by_text("best_val_accuracy").first).to_be_visible()
        _shoot(page, tmp_path, "compare")

        # The registry: the model, and the version that holds @champion.
        page.goto(f"{url}/#/models")
        expect(page.get_by_role("link", name=MODEL)).to_be_visible()
        page.goto(f"{url}/#/models/{MODEL}")
        page.get_by_role("button", name="Tags").click()  # fold the alias history: room for the versions table
        version = page.get_by_role("row").filter(has=page.get_by_role("link", name="Version 1"))
        expect(version).to_contain_text("champion")
        _shoot(page, tmp_path, "registry")
        browser.close()
