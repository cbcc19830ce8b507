"""The Questions tab in headless Chromium on a fresh app (no team training): it asks one question, shows the
five traits after the first answer, and the next question depends on the answer given."""
from __future__ import annotations

import pytest

from tests.test_e2e_browser import free_port, launch_chromium, open_tab, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def fresh_app(tmp_path):
    from demos.app import build_demo
    from demos.context import AppSettings

    settings = AppSettings(data_dir=tmp_path / "app", preload=())
    demo = build_demo(settings)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, ssr_mode=False, max_file_size=settings.max_file_size, run_history=False)
    yield url, demo.livelearner_context
    demo.close()


def _answer(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    radio = driver.find_element(By.ID, "pq-answer")
    [choice] = [c for c in radio.find_elements(By.TAG_NAME, "label") if c.text.strip() == label]
    choice.click()


def _question(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "pq-question").text


def test_questions_tab_answers_at_once_and_adapts(fresh_app, tmp_path, artifacts_dir):
    from selenium.webdriver.common.by import By

    from demos import tab_personality
    from demos.tab_questions import ANSWER_CHOICES

    url, ctx = fresh_app
    # which two answers to the first question lead to different second questions (the handlers, in-process)
    state, _, first, _ = tab_personality.start(ctx)
    second = {a: tab_personality.answer(ctx, state, first, a)[2] for a in (1, 2, 3, 4, 5)}
    low, high = min(second), next(a for a in sorted(second, reverse=True) if second[a] != second[min(second)])
    labels = {value: label for label, value in ANSWER_CHOICES}

    d = launch_chromium(tmp_path, tmp_path / "no-camera.y4m", tmp_path / "no-microphone.wav")
    try:
        d.get(url)
        wait_for(lambda: d.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Questions')]"), "the page")
        open_tab(d, "Questions")
        wait_for(lambda: "Question 1" in _question(d), "the first question")
        assert first in _question(d)
        seen = {}
        for answer in (high, low):
            _answer(d, labels[answer])
            wait_for(lambda: "Question 2" in _question(d), "the second question")
            traits = wait_for(lambda: d.find_element(By.ID, "pq-traits").text, "the traits")
            assert "after 1 answer" in traits and "Extraversion" in traits and "Openness" in traits
            seen[answer] = _question(d)
            d.save_screenshot(str(artifacts_dir / f"e2e_questions_answer{answer}.png"))
            d.find_element(By.ID, "pq-restart").click()
            wait_for(lambda: "Question 1" in _question(d), "a fresh first question")
        assert second[high] in seen[high] and second[low] in seen[low] and seen[high] != seen[low]
        assert d.find_element(By.ID, "pq-curve").find_elements(By.CSS_SELECTOR, "img, svg, canvas")  # the plot
    finally:
        d.quit()

