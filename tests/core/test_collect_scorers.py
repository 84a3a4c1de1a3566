"""Issue 16: the built-in scorers of `haps collect`, the LLM judge and scorer lookup."""

import pytest

from haps_core.collect.scorers import (
    BUILTIN_SCORERS,
    check_score,
    extract_choice,
    get_scorer,
    llm_judge,
    parse_judge_score,
)


def test_issue16_exact_match_and_contains_normalise():
    em, co = get_scorer("exact_match"), get_scorer("contains")
    assert em("q", "The Eiffel Tower", "eiffel tower.") == 1.0
    assert em("q", "Paris", "Paris, France") == 0.0
    assert co("q", "Paris", "It is Paris, France.") == 1.0
    assert co("q", "Paris", "Parisian") == 0.0  # whole words only


@pytest.mark.parametrize(
    ("output", "letter"),
    [
        ("Answer: B", "B"),
        ("The answer is (C).", "C"),
        ("D. 40", "D"),
        ("I think A is wrong; the final answer: e", "E"),
        ("(b) because ...", "B"),
        ("Let me think step by step. A is too small, B too... so C", "C"),
        ("no letter here", None),
    ],
)
def test_issue16_multiple_choice_reads_the_given_letter(output, letter):
    assert extract_choice(output) == letter
    mc = get_scorer("multiple_choice")
    assert mc("q", f"({letter or 'A'})", output) == float(letter is not None)


def test_issue16_multiple_choice_rejects_a_reference_that_is_no_letter():
    with pytest.raises(ValueError, match="letter A-J"):
        get_scorer("multiple_choice")("q", "42", "A")


def test_issue16_numeric_takes_the_last_number():
    num = get_scorer("numeric")
    assert num("q", "1,000", "so 10 * 100 = 1000") == 1.0
    assert num("q", "3.5", "about 3.49") == 0.0
    assert num("q", "-2", "x = -2") == 1.0
    assert num("q", "7", "none") == 0.0


def test_issue16_regex_and_token_f1():
    assert get_scorer("regex")("q", r"\bpar(is)?\b", "It's PARIS") == 1.0
    f1 = get_scorer("token_f1")("q", "the cat sat", "a cat sat down")
    assert f1 == pytest.approx(2 * (2 / 3) * 1.0 / (2 / 3 + 1.0))


def test_issue16_llm_judge_parses_the_score_of_any_generator():
    prompts = []

    def generate(prompt: str) -> str:  # a stand-in generator: the judge's parsing is what is tested
        prompts.append(prompt)
        return "The response is partly right.\nScore: 3/4"

    judge = llm_judge(generate, rubric="Be strict.")
    assert judge("What is 2+2?", "4", "four-ish") == 0.75
    assert "Be strict." in prompts[0] and "four-ish" in prompts[0]
    assert parse_judge_score("Score: 0.2") == 0.2
    with pytest.raises(ValueError, match="outside"):
        parse_judge_score("Score: 7")
    with pytest.raises(ValueError, match="no score"):
        parse_judge_score("I cannot rate this")


def test_issue16_unknown_scorer_lists_the_allowed_names():
    with pytest.raises(ValueError) as err:
        get_scorer("bleu")
    for name in BUILTIN_SCORERS:
        assert name in str(err.value)
    custom = get_scorer(lambda q, r, o: 0.5)
    assert custom("q", "r", "o") == 0.5
    with pytest.raises(TypeError):
        get_scorer(3)  # type: ignore[arg-type]


def test_issue16_check_score_refuses_out_of_range():
    assert check_score(True) == 1.0
    for bad in (1.5, -0.1, float("nan"), "1"):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            check_score(bad)
