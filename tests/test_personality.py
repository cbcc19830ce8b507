"""The Questions tab's default personality model: the shipped bundle (five calibrated trait heads from any answers),
the adaptive questioner, the tab's handlers without a browser (adaptive choice, bad and tampered input), the recipe
on tiny generated answers, and the benchmark's smoke run on a generated data folder of the same layout."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from demos import tab_personality
from demos.context import AppContext, AppSettings
from models.bundle import BundleError, load_bundle
from models.personality import PersonalityModel
from models.shipped import shipped_bundle

TRAITS = ("Extraversion", "Neuroticism", "Agreeableness", "Conscientiousness", "Openness")
REVERSED = {"E2", "E4", "E6", "E8", "E10", "N2", "N4", "A1", "A3", "A5", "A7", "C2", "C4", "C6", "C8", "O2", "O4", "O6"}


def generated_questionnaire(folder: Path, n: int = 400, seed: int = 0) -> Path:
    """answers.csv + items.tsv in the traindata layout: answers from five latent traits (keyed items agree with
    their trait), countries X1..X12 (none the shipped model has seen)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"{t[0]}{k}" for t in TRAITS for k in range(1, 11)]
    with (folder / "items.tsv").open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["item", "trait", "key", "ipip_factor", "ipip_key", "text"])
        for i in ids:
            trait = TRAITS["ENACO".index(i[0])]
            w.writerow([i, trait, "-" if i in REVERSED else "+", trait, "-" if i in REVERSED else "+",
                        f"Generated statement {i}."])
    latent = rng.normal(size=(n, 5))
    with (folder / "answers.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["respondent_id", "country", *ids])
        for r in range(n):
            row = []
            for i in ids:
                sign = -1 if i in REVERSED else 1
                row.append(int(np.clip(np.rint(3 + 1.2 * sign * latent[r, "ENACO".index(i[0])] + rng.normal(0, 0.8)),
                                       1, 5)))
            w.writerow([r + 1, f"X{r % 12 + 1}", *row])
    return folder


@pytest.fixture(scope="module")
def pm() -> PersonalityModel:
    path = shipped_bundle("personality")
    assert path is not None, "the personality model ships in models/weights/personality_traits"
    return PersonalityModel.load(path)


@pytest.fixture
def ctx(tmp_path) -> AppContext:
    return AppContext(AppSettings(data_dir=tmp_path / "app", preload=()))


def keyed(trait_letter: str, high: bool) -> dict[str, int]:
    """Answers to a trait's ten items that put the person at its high (or low) end."""
    return {f"{trait_letter}{k}": (5 if (f"{trait_letter}{k}" in REVERSED) != high else 1) for k in range(1, 11)}


def test_shipped_model_gives_five_calibrated_traits_with_sets_from_any_answers(pm):
    assert pm.traits == TRAITS and len(pm.questionnaire.items) == 50 and len(pm.questionnaire.short_form) == 10
    prior = pm.predict({})
    assert set(prior) == set(TRAITS)
    for p in prior.values():
        assert p.classes == ("low", "high") and 0.25 < p.probs[1] < 0.75  # no answers: about the population split
        assert p.calibrated and "countries" in p.calibration and p.prediction_set is not None and p.coverage == 0.9
    high, low = pm.predict(keyed("E", True))["Extraversion"], pm.predict(keyed("E", False))["Extraversion"]
    assert high.probs[1] > 0.95 and low.probs[1] < 0.05
    assert high.decision.value == "accept" and high.prediction_set == ("high",)
    one_up, one_down = pm.predict({"E5": 5})["Extraversion"], pm.predict({"E5": 1})["Extraversion"]
    assert one_up.probs[1] > prior["Extraversion"].probs[1] + 0.15 > one_down.probs[1] + 0.3  # one answer moves it
    assert pm.predict({"E5": 3, "N1": 5})["Neuroticism"].probs[1] > prior["Neuroticism"].probs[1]
    with pytest.raises(BundleError, match="head_predictions"):
        pm.bundle.predict_probs([{"E1": 3}])
    for bad in ({"Z9": 3}, {"E1": 6}, {"E1": 0}, {"E1": 2.5}, {"E1": "banana"}, {"E1": float("nan")}):
        with pytest.raises(BundleError):
            pm.bundle.head_predictions([bad])


def test_a_bundle_with_malformed_heads_is_refused(pm, tmp_path):
    for change in ({"heads": None}, {"heads": [{"name": t, "temperature": -1.0} for t in TRAITS]},
                   {"heads": [{"name": "x", "temperature": 1.0}]}, {"classes": ["a", "b", "c"]}):
        copy = tmp_path / f"bundle{len(list(tmp_path.iterdir()))}"
        shutil.copytree(pm.bundle.root, copy)
        spec = json.loads((copy / "bundle.json").read_text())
        (copy / "bundle.json").write_text(json.dumps({**spec, **change}))
        with pytest.raises(BundleError):
            load_bundle(copy)


def test_next_question_depends_on_the_answers(pm):
    first = pm.next_question({})
    after = {a: pm.next_question({first.id: a}) for a in range(1, 6)}
    assert first.id not in {it.id for it in after.values()}
    assert len({it.id for it in after.values()}) >= 2  # what it asks next depends on what was answered
    everything = {it.id: 3 for it in pm.questionnaire.items}
    assert pm.next_question(everything) is None


def test_tab_asks_adapts_and_refuses_bad_or_tampered_input(ctx, pm):
    state, question, item, traits = tab_personality.start(ctx)
    assert "Question 1" in question and item == pm.next_question({}).id and "after 0 answers" in traits
    nexts = {}
    for value in (1, 2, 3, 4, 5, "5"):
        s, q, nxt, t = tab_personality.answer(ctx, state, item, value)
        assert "Question 2" in q and "after 1 answer" in t and s["answers"] == {item: int(value)}
        assert t.count("| ") >= 5 * 4 and "{" in t  # five rows with p(high), set, decision
        nexts[int(value)] = nxt
    assert len(set(nexts.values())) >= 2  # the answer given changes the next question
    for value in (0, 6, "banana", 2.5, None, "", float("inf")):
        with pytest.raises(gr.Error):
            tab_personality.answer(ctx, state, item, value)
    with pytest.raises(gr.Error, match="open question"):
        tab_personality.answer(ctx, state, "Z9", 3)
    for tampered in (None, "x", {"mode": "nope", "answers": {}, "asking": None},
                     {"mode": "adaptive", "answers": {"Z9": 3}, "asking": item},
                     {"mode": "adaptive", "answers": {"E1": 9}, "asking": item},
                     {"mode": "adaptive", "answers": {item: 3}, "asking": item},
                     {"mode": "adaptive", "answers": [], "asking": item}):
        with pytest.raises(gr.Error, match="Start again"):
            tab_personality.answer(ctx, tampered, item, 3)
    state, question, item, _ = tab_personality.start(ctx, "short form")
    assert item == pm.questionnaire.short_form[0]
    for _ in range(10):
        state, question, item, traits = tab_personality.answer(ctx, state, item, 4)
    assert "Done" in question and item == "" and "after 10 answers" in traits
    state, question, item, _ = tab_personality.start(ctx)
    state, *_ = tab_personality.answer(ctx, state, item, 2)
    stopped, question, item, traits = tab_personality.stop(ctx, state)
    assert "Stopped after 1 question" in question and stopped["asking"] is None and "after 1 answer" in traits
    with pytest.raises(gr.Error, match="No question is open"):
        tab_personality.answer(ctx, stopped, "E1", 3)
    figure = tab_personality.curve_figure(ctx)
    assert len(figure.axes[0].lines) == 4  # accuracy and confidence, adaptive and short form


@pytest.mark.slow
def test_recipe_trains_a_questionnaire_bundle_on_generated_answers(tmp_path):
    from train.personality_recipe import CURVE_FILE, PersonalityRecipe, retrain_personality

    data = generated_questionnaire(tmp_path / "data", n=360)
    out = retrain_personality(PersonalityRecipe(data=data, out=tmp_path / "bundle", epochs=5, hidden=(32,),
                                                batch_size=32, curve_limit=30), log=lambda message: None)
    model = PersonalityModel.load(out)
    card = json.loads((out / "card.json").read_text())
    assert card["reproduce"].startswith("livelearner train-default personality")
    assert set(card["split_detail"]["test"]["countries"]).isdisjoint(card["split_detail"]["train"]["countries"])
    curve = json.loads((out / CURVE_FILE).read_text())
    assert len(curve["adaptive"]["accuracy"]) == 20 and len(curve["short_form"]["accuracy"]) == 10
    assert model.bundle.calibrated and all(h.conformal_qhat is not None for h in model.bundle.heads)
    assert model.predict(keyed("E", True))["Extraversion"].probs[1] > model.predict(keyed("E", False))[
        "Extraversion"].probs[1]


def test_bench_quick_runs_on_a_generated_data_folder(tmp_path, capsys):
    from bench.personality import main

    main(["--data", str(generated_questionnaire(tmp_path / "personality_questionnaire")), "--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in ("acc_fixed10_mean", "ece_fixed10_max", "acc_adaptive_at_10_mean",
                "questions_adaptive_for_fixed10_accuracy", "acc_adaptive_at_1", "acc_adaptive_at_20"):
        assert key in figures
    assert 0.6 < figures["acc_fixed10_mean"] <= 1.0 and figures["acc_adaptive_at_20"] > figures["acc_adaptive_at_1"]
    assert figures["n_countries"] >= 1 and "test countries" in lines[0]


def test_cli_train_default_personality_refuses_a_folder_without_answers(tmp_path, capsys):
    from demos.cli import main as cli_main

    code = cli_main(["train-default", "personality", "--data", str(tmp_path), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 1 and "not a questionnaire data folder" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
