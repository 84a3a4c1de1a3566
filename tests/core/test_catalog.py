import json

import pytest

from haps_core.catalog import Action, Backend, RoutingSpace


def _space() -> RoutingSpace:
    backends = (
        Backend("b", 1.0, 2.0, (("temperature", (0.0, 0.7)), ("prompt_style", ("cot", "answer_only")))),
        Backend("a", 0.5, 0.5, (("prompt_style", ("default",)),)),
    )
    actions = (
        Action.make("b", temperature=0.7, prompt_style="cot"),
        Action.make("a", prompt_style="default"),
        Action.make("b", temperature=0.0, prompt_style="cot"),
    )
    return RoutingSpace(backends, actions)


def test_indices_are_stable_whatever_the_order():
    s1 = _space()
    s2 = RoutingSpace(tuple(reversed(s1.backends)), tuple(reversed(s1.actions)))
    assert [a.key for a in s1.actions] == [a.key for a in s2.actions]
    assert s1.actions[0].backend == "a"
    assert s1.index(Action.make("b", prompt_style="cot", temperature=0.0)) == 1


def test_json_round_trip():
    s = _space()
    back = RoutingSpace.from_json(s.to_json())
    assert back == s
    assert back.backend("b").input_price == 1.0
    assert json.loads(s.to_json())["prompt_styles"]["cot"] is None  # no text given: recorded as "no text"
    texts = s.with_prompt_styles({"cot": "Reason step by step."})
    assert json.loads(texts.to_json())["prompt_styles"]["cot"] == "Reason step by step."
    assert RoutingSpace.from_json(texts.to_json()) == texts


def test_action_outside_grid_is_refused():
    with pytest.raises(ValueError, match=r"temperature.*=1.5.*grid"):
        RoutingSpace(_space().backends, (Action.make("b", temperature=1.5, prompt_style="cot"),))


def test_unknown_backend_and_undeclared_param():
    with pytest.raises(ValueError, match="'zzz'.*not in `backends`"):
        RoutingSpace(_space().backends, (Action.make("zzz"),))
    with pytest.raises(ValueError, match="`top_p`.*does not declare"):
        RoutingSpace(_space().backends, (Action.make("a", prompt_style="default", top_p=0.9),))


def test_bad_backend_values():
    with pytest.raises(ValueError, match="input_price"):
        Backend("x", -1.0)
    with pytest.raises(ValueError, match="temperature.*>= 0"):
        Action.make("x", temperature=-0.1)
    with pytest.raises(TypeError, match="allowed: str, int, float or bool"):
        Action.make("x", temperature=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more than once"):
        RoutingSpace((Backend("a"), Backend("a")), (Action.make("a"),))


def test_from_actions_infers_grids_and_is_immutable():
    s = RoutingSpace.from_actions(
        [Action.make("m", temperature=t) for t in (0.0, 1.0)], prices={"m": (1.0, 3.0)}
    )
    assert s.backend("m").parameters == {"temperature": (0.0, 1.0)}
    assert s.backend("m").cost(1e6, 1e6) == pytest.approx(4.0)
    with pytest.raises(AttributeError):
        s.actions = ()  # type: ignore[misc]
    assert s.actions_of("m") == [0, 1]
    with pytest.raises(KeyError, match="unknown backend 'nope'"):
        s.backend("nope")
