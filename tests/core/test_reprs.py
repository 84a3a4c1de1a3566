"""Finding 10 of the CLI/correctness issue: decisions print as one short readable line."""

from haps_core.decision import Alternative, RoutingDecision


def test_finding_10_decision_repr_is_short_and_rounded():
    alt = Alternative(
        "gemini-1.0-pro", {"temperature": 0.2, "prompt_style": "cot"}, 0.9998452663, 0.00013322851, 26
    )
    d = RoutingDecision(
        "gpt-4", {"temperature": 0.0, "prompt_style": "cot"}, 0.950343, 0.017722558, 20.0, 5, (alt,)
    )
    text = repr(d)
    assert text == (
        "RoutingDecision(gpt-4, prompt_style='cot', temperature=0.0, quality=0.950, cost=$0.0177, "
        "cost_weight=20, alternatives=1)"
    )
    assert "gemini" not in text  # runner-ups are counted, not nested
    assert (
        repr(alt)
        == "Alternative(gemini-1.0-pro, prompt_style='cot', temperature=0.2, quality=1.000, cost=$0.000133)"
    )
    # the data itself keeps full precision
    assert d.to_dict()["predicted_cost"] == 0.017722558
