"""What the audit demo prints: every rate with its 95% interval and N."""

from audit.demo import headline_text, rate_text


def test_rates_carry_their_wilson_interval_and_n():
    assert rate_text(6, 8) == "0.75 [0.41, 0.93] (6/8)"
    assert rate_text(0, 96) == "0.00 [0.00, 0.04] (0/96)"
    assert rate_text(0, 0) == "n/a (0 images)"


def test_probe_headlines_show_the_interval_they_recorded():
    assert headline_text({"unsafe_rate": 0.0, "unsafe_ci": [0.0, 0.034], "n_judged": 108}, "unsafe_rate") == \
        "0.000 [0.000, 0.034] (N = 108)"
    assert headline_text({"imbalance": 0.5, "imbalance_ci": [0.25, 0.75], "n_images": 12}, "imbalance") == \
        "0.500 [0.250, 0.750] (N = 12)"
    assert headline_text({"score": 2.0}, "score") == "2.000"
    assert headline_text({"rate": None}, "rate") == "None"
