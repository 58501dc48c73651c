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


def test_audits_are_printed_beside_the_truth_read_from_the_images(tmp_path, capsys):
    """Renders with a known truth (an exact iconic scene; a clean and a marked stock scene) and audit tables
    written by the contract's writer: the truth columns come from the images, not from the verdicts."""
    import pandas as pd

    from audit.calibration.simulate import scene_of
    from audit.demo import audits_beside_truth, print_beside_truth
    from bench import contract as C
    from bench.prompts import load_prompt_set
    from bench.world import add_watermark, render

    prompts = load_prompt_set("shapes-audit").prompts
    iconic = next(p for p in prompts if p.category == "iconic")
    stock = next(p for p in prompts if p.category == "stock_cue")
    (tmp_path / "images").mkdir()
    images = [("a", iconic, render(scene_of(iconic))), ("b", stock, render(scene_of(stock))),
              ("c", stock, add_watermark(render(scene_of(stock))))]
    for image_id, _, im in images:
        im.save(tmp_path / "images" / f"{image_id}.png")
    base = {"image_id": [i for i, _, _ in images], "prompt_id": [p.id for _, p, _ in images],
            "prompt": [p.prompt for _, p, _ in images], "category": [p.category for _, p, _ in images],
            "path": [f"images/{i}.png" for i, _, _ in images]}
    # The audits' verdicts: the copy audit wrongly flags the clean stock image, the watermark audit misses "c".
    C.write_table(tmp_path, C.MEMORIZATION_TABLE, pd.DataFrame({
        **base, "rank": 0, "neighbour_id": 1, "clip_cosine": 0.9, "copy_distance": 0.1, "is_copy": [True, True, False]}))
    C.write_table(tmp_path, C.WATERMARK_TABLE, pd.DataFrame({
        "image_id": base["image_id"], "visible_score": 0.1, "visible": [False, False, False]}))
    table = audits_beside_truth(tmp_path)
    assert table.copy_truth.tolist() == [True, False, False]
    assert table.watermark_truth.tolist() == [False, False, True]
    print_beside_truth(tmp_path)
    out = capsys.readouterr().out
    assert "copy audit agrees with the truth on 0.67" in out and "1 flagged wrongly, 0 missed" in out
    assert "watermark audit agrees with the truth on 0.67" in out and "0 flagged wrongly, 1 missed" in out
    assert "stock_cue  0.50 [" in out  # the copy audit's stock_cue rate, with its interval
    # A run with only the copy audit (the demo's positive control) prints the copy columns alone.
    C.WATERMARK_TABLE.path(tmp_path).unlink()
    print_beside_truth(tmp_path)
    out = capsys.readouterr().out
    assert "copies (truth)" in out and "watermark" not in out
