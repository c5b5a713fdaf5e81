"""The export job: a logged or registered model as a Hugging Face directory, logged to its run, pushed if asked."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from huggingface_hub import HfApi

from bertcls.errors import HubPushError
from bertcls.export import huggingface as hf_export
from bertcls.export.model_card import CardFacts, base_licence, render
from bertcls.tracking import artifacts, runs
from bertcls.tracking.registry import resolve_model_uri


@dataclasses.dataclass
class ExportOutcome:
    directory: Path
    source_run_id: str | None
    hub_url: str | None


def _card_for(ref, meta: dict) -> str:
    """The Hugging Face model card, from the source run's own records (params, best/test metrics) and the model's
    saved settings (labels, calibration)."""

    run = runs.get_run(ref.source_run_id) if ref.source_run_id else None
    params = dict(run.data.params) if run else {}
    metrics = {k: v for k, v in (run.data.metrics if run else {}).items() if k.startswith(("best_val_", "test_"))}
    best_epoch = int(run.data.metrics["best_epoch"]) if run and "best_epoch" in run.data.metrics else None
    facts = CardFacts(
        params.get("model", "unknown"),
        base_licence(params.get("model_dir")),
        run.data.tags.get("dataset", "text") if run else "text",
        tuple(meta.get("label_names") or ()),
        params,
        metrics,
        ref.source_run_id,
        best_epoch,
        kind=params.get("task_kind", "classification"),
        calibration=meta.get("calibration"),
    )
    return render(facts, hugging_face=True)


def export(model_uri: str, directory: str, push_to_hub: str | None = None) -> ExportOutcome:
    """Write a logged or registered model as a Hugging Face directory; log it to its run; push it if asked."""

    ref = resolve_model_uri(model_uri)
    meta = json.loads((ref.local_dir / "bertcls_config.json").read_text(encoding="utf-8"))
    out = hf_export.export(ref.local_dir, Path(directory), _card_for(ref, meta))
    if ref.source_run_id:
        artifacts.log_artifacts_to(ref.source_run_id, out, "hf_export")
    url = _push(out, push_to_hub) if push_to_hub else None
    return ExportOutcome(out, ref.source_run_id, url)


def _push(directory: Path, repo: str) -> str:
    """Upload the export to the Hugging Face hub (a clear error offline or without a token)."""
    try:
        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        commit = api.upload_folder(folder_path=str(directory), repo_id=repo, commit_message="bertcls export")
    except Exception as err:  # offline, no token, no permission: the hub client's own message
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise HubPushError(
            f"Could not push {directory} to the Hugging Face hub repo {repo!r}: {first}. Pushing needs network access "
            "and a token (`huggingface-cli login` or HF_TOKEN); the export itself is complete in that directory."
        ) from None
    return str(getattr(commit, "commit_url", f"https://huggingface.co/{repo}"))
