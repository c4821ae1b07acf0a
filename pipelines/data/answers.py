"""Is a free-form answer correct? The reference answer appears in it, as whole words, after normalising case,
punctuation and numbers ("Twelve." and "12" match; "3,600" and "3600" match; "12" does not match "120").

A deliberately plain rule, so a person can check it by eye: it is the second axis on Compare (the judge scores what
its labelers were asked about; this says whether the fact is right) and GRPO's `answer` reward, and it can only be
as good as the reference answers are short and unambiguous. A reply that names the right number among other
numbers, or says both yes and no, is wrong; one that names the right word beside other words is not caught.
"""

from __future__ import annotations

import re

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
}
TENS = {"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"}


def words(text: str) -> list[str]:
    """Lower-case words and numbers, punctuation dropped, thousands separators removed, number words and
    "twenty-three" as digits. A minus sign stays with its number ("-5" is not "5"); a hyphen between words or
    numbers ("twenty-three", "5-3") separates them."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())
    text = re.sub(r"(?<![\w.])-(?=\d)", "\N{MINUS SIGN}", text)  # a sign, not a hyphen: kept through the split below
    tokens = re.findall(r"\N{MINUS SIGN}?\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)?", text.replace("-", " "))
    tokens = [t.replace("\N{MINUS SIGN}", "-") for t in tokens]
    out: list[str] = []
    for token in tokens:
        value = NUMBER_WORDS.get(token)
        if value is None:
            out.append(token)
        elif out and out[-1].isdigit() and value < 10 and previous_was_tens(out[-1]):
            out[-1] = str(int(out[-1]) + value)  # "twenty three" -> 23
        else:
            out.append(str(value))
    return out


def previous_was_tens(token: str) -> bool:
    return int(token) in {NUMBER_WORDS[w] for w in TENS}


def is_correct(response: str, answer: str, question: str = "") -> bool:
    """The answer's words appear in the response's words, in order and next to each other, and the response does
    not also name a competing answer: for a number, every other number it states is one the question states (or 1,
    which is also the word "one"); for yes or no, not the other one. Without that second check a reply listing
    several numbers passes, and GRPO, rewarded by this rule, learned exactly that within 30 steps."""
    want, have = words(answer), words(response)
    if not want or not any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1)):
        return False
    if len(want) == 1 and is_number(want[0]):
        allowed = {want[0], "1", *(w for w in words(question) if is_number(w))}
        return all(w in allowed for w in have if is_number(w))
    if want in (["yes"], ["no"]):
        return ("no" if want == ["yes"] else "yes") not in have
    return True


def is_number(token: str) -> bool:
    return token.removeprefix("-").replace(".", "", 1).isdigit()
