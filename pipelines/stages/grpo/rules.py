"""Verifiable rewards: rules that score a response without a judge (GRPO's `rewards`). Each gives 1.0 when the
response passes and 0.0 when it does not, so a group's rewards say plainly which samples did it right.

A rule cannot be talked round by tone the way a learned judge can, but it can be gamed in its own way, and each
docstring says how: optimisation finds the cheapest way to pass whatever is checked.
"""

from __future__ import annotations

import re

from pipelines.data.answers import is_correct


def answer_reward(response: str, answer: str | None, question: str = "") -> float | None:
    """The reference answer appears in the response as whole words, case and numbers normalised ("Twelve." passes
    for 12; "120" does not), and no competing number or yes/no beside it (pipelines/data/answers.py). None where the
    prompt carries no answer (not counted). Gamed by: naming the right word among other words (an opposite beside
    its synonyms), which a number or yes/no question cannot."""
    if not answer:
        return None
    return 1.0 if is_correct(response, answer, question) else 0.0


def regex_reward(response: str, pattern: str) -> float:
    """The pattern matches somewhere in the response (Python `re.search`). Gamed by: whatever else matches it."""
    return 1.0 if re.search(pattern, response) else 0.0


def length_reward(response: str, max_words: int) -> float:
    """At most `max_words` words, and at least one. Gamed by: saying less than the question needs."""
    return 1.0 if 0 < len(response.split()) <= max_words else 0.0


def check_regex(pattern: str) -> str | None:
    """What is wrong with a pattern, or None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    return None
