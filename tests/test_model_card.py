"""The model card says what each kind of model is, answers, and how its probabilities were calibrated."""

from __future__ import annotations

from bertcls.evaluation.calibration import Calibration
from bertcls.export.model_card import CardFacts, render

PARAMS = {"dataset": "sms_spam", "lr": "0.0001", "class_weights": "balanced", "focal_gamma": "2.0", "seed": "42"}


def _card(kind: str, labels: tuple[str, ...], calibration: Calibration | None, hugging_face: bool = False) -> str:
    metrics = {"test_ece": 0.0083, "test_ece_uncalibrated": 0.0101, "test_accuracy": 0.9934}
    saved = None if calibration is None else calibration.to_dict()
    facts = CardFacts("minilm", "apache-2.0", "sms_spam", labels, PARAMS, metrics, "abc", 2, kind, saved)
    return render(facts, hugging_face)


def test_a_classifier_card_gives_its_temperature_and_how_to_apply_it_to_the_exported_logits():
    card = _card("classification", ("ham", "spam"), Calibration(temperature=0.924, fitted_on=557))
    assert "softmax(logits / T) with T = 0.924, fitted on 557 validation texts" in card
    assert "0.0101 before, 0.0083 after" in card and "divide them by 0.924" in card
    assert "| class_weights | balanced |" in card and "| focal_gamma | 2.0 |" in card
    assert "label and one probability per class" in card
    held = _card("classification", ("ham", "spam"), Calibration(0.9, 340, fitted_split="calibration"))
    assert "fitted on 340 held-out calibration texts" in held


def test_an_uncalibrated_classifier_card_says_why():
    card = _card("classification", ("ham", "spam"), Calibration(note="calibrate=false: the model's own"))
    assert "Not calibrated: calibrate=false: the model's own." in card and "T = " not in card


def test_a_multilabel_card_lists_each_labels_temperature_and_threshold():
    calibration = Calibration(fitted_on=300, temperatures=(0.9, 1.25), thresholds=(0.31, 0.62))
    card = _card("multilabel", ("joy", "anger"), calibration, hugging_face=True)
    assert "# sms_spam multi-label classifier fine-tuned from minilm" in card
    assert "each of 2 labels (id: name) is present or absent" in card and "Single-label" not in card
    assert "| joy | 0.9 | 0.31 |" in card and "| anger | 1.25 | 0.62 |" in card
    assert "pipeline_tag: text-classification" in card


def test_regression_and_tagger_cards_name_their_task_and_answer():
    regression = _card("regression", (), Calibration())
    assert "regressor" in regression and "one score per text" in regression and "0 labels" not in regression
    assert "Probabilities" not in regression
    tagger = _card("ner", ("O", "B-PER", "I-PER"), None, hugging_face=True)
    assert "pipeline_tag: token-classification" in tagger and "AutoModelForTokenClassification" in tagger
    assert "a tag per word" in tagger


def test_a_tagger_card_says_how_its_tags_were_decoded():
    facts = lambda params: CardFacts(  # noqa: E731
        "minilm", None, "btc", ("O", "B-PER", "I-PER"), params, {"test_f1": 0.72}, "abc", 3, "ner", None
    )
    viterbi = render(facts({**PARAMS, "tag_decoding": "viterbi", "tag_scheme": "IOB2"}), hugging_face=True)
    assert "most probable tag sequence the IOB2 scheme allows" in viterbi and "pipeline answers each word" in viterbi
    argmax = render(facts({**PARAMS, "tag_decoding": "argmax", "tag_scheme": "IOB2"}), hugging_face=True)
    assert "each word's most probable tag (argmax; tag scheme: IOB2)" in argmax and "Viterbi" not in argmax
    assert "decoded" not in render(facts(PARAMS), hugging_face=True)  # a run from before tag_decoding
