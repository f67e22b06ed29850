"""A checker's verdict from free text: explicit verdict tokens first, negation-aware.

Checkers are asked for ``<verdict>PASS</verdict>`` but write many other things ("No issues
found. The answer is correct.", "Correct.\\nNo errors.", "FAIL: step 2", "The answer is not
wrong"). The verdict is read from the most explicit place that has one, in this order:

1. the last ``<verdict>…</verdict>`` tag;
2. the last labelled line (``Verdict: …``, ``Final verdict - …``, ``Conclusion: …``,
   ``Assessment: …``; ``Result:``, ``Status:`` and ``Evaluation:`` also head per-step notes,
   so they count only when their value starts with a verdict word: ``Result: FAIL``);
3. the last line that *starts* with the requested token (``PASS``, ``FAIL: …``);
4. the whole reply (so "Correct." after step 1 does not outrank "the final answer is wrong").

In places 1-3 a leading PASS/FAIL token decides by itself ("PASS - minor formatting issues").
Quoted spans of three words or more are dropped first: they are the question or the candidate
speaking ("the question says 'Tom got 3 answers wrong'"), not the checker; only when nothing
else states a verdict are they read (a checker quoting its own verdict).

Each place is read by `classify`: it splits the text into sentences (questions are skipped: "Is
the answer correct?" states nothing), finds the verdict signals in each, and the last signal
wins (conclusions come last: "Step 2 looked wrong, but the answer is correct" passes; "The
answer is correct, but there is an error in step 2" fails), except that praise of a part of the
work ("the method is fine", "correct approach") counts only when nothing else states a verdict
("The answer is wrong, but the method is fine" fails). Emphasis is ignored ("**not** correct").
Signals are negation-aware and a denied problem is a pass: "no errors", "I found no issues",
"did not find any mistakes", "nothing wrong", "not wrong", "none of the steps are wrong", "no
changes needed", "verified", ✓ pass; "not correct", "I don't think it is correct", "neither
correct nor", "isn't right", "does not match", "there is an error", "wrong", "FAIL" fail. A
restricted, counterfactual or attributed pass ("correct except step 3", "it would be correct
if", "the candidate claims it is correct") is no pass. Mentions of *another* answer ("the
correct answer is 18") are not a verdict on the candidate. No signal anywhere: ``None`` (the
checker then counts it as a fail).
"""

from __future__ import annotations

import re

_PROBLEM = (
    r"(?:errors?|mistakes?|issues?|problems?|flaws?|bugs?|discrepanc(?:y|ies)|"
    r"inconsistenc(?:y|ies)|concerns?|faults?|objections?)"
)
_GOOD = (
    r"(?:correct(?:ly)?|right|valid|accurate(?:ly)?|sound|fine|ok(?:ay)?|true|pass(?:es|ed)?|"
    r"succeed(?:s|ed)?|"
    r"approved?|accept(?:s|ed|able)?|match(?:es|ed)?|agree(?:s|d)?|consistent|lgtm|"
    r"checks?\s+out|looks?\s+good|all\s+good|spot\s+on|holds?|verified|confirm(?:s|ed)?)"
)
_BAD = (
    r"(?:incorrect(?:ly)?|wrong(?:ly)?|invalid|inaccurate|erroneous|mistaken|flawed|false|"
    r"fail(?:s|ed|ure|ing)?|reject(?:s|ed)?|disagrees?|inconsistent|mismatch(?:es|ed)?|"
    r"unverified|unconfirmed)"
)
_NEG = r"(?:\bnot|n't|\bcannot|\bnever|\bno\s+longer|\bhardly)"
_GAP = r"(?:[\w'’]+\s+){0,3}?"
# "I don't think it is correct", "I'm not sure that it is right": the belief, not the word, is negated.
_DOUBT = (
    rf"{_NEG}\s+(?:really\s+)?(?:think|believe|feel|sure|convinced|certain|confident)\b"
    r"(?:\s+(?:that|whether|if))?\s+(?:[\w'’]+\s+){0,5}?"
)

# Praise of a part of the work ("the method is fine", "right idea") is a weak pass: it counts
# only when the text states no other verdict, so "The answer is wrong. However, the method is
# correct." fails. Criticism of a part ("the method is wrong") is a fail like any other.
_PART = (
    r"(?:method|approach|reasoning|logic|idea|setup|set-up|strategy|formula|explanation|"
    r"process|derivation|working|steps?(?:\s+\d+)?|setups?)"
)
WEAK = "weak"

# (pattern, verdict) in priority order: a span claimed by an earlier pattern is not read again.
# ``None`` marks a neutral span (a mention, not a verdict) that only hides its words.
_SIGNALS: tuple[tuple[re.Pattern[str], bool | str | None], ...] = tuple(
    (re.compile(pattern, re.I), verdict)
    for pattern, verdict in (
        (rf"\b{_PROBLEM}(?:\s+found)?\s*[:=\-]\s*(?:none|no|0)\b", True),  # "Errors: none"
        (
            rf"\b(?:no|without(?:\s+any)?|zero|0|free\s+(?:of|from)(?:\s+any)?)\s+{_GAP}{_PROBLEM}",
            True,
        ),
        # "did not find any errors", "there isn't a single mistake"
        (rf"{_NEG}\s+{_GAP}(?:any|a|an|one|a\s+single)\s+{_GAP}{_PROBLEM}", True),
        (r"\bno\s+(?:\w+\s+)?match(?:es)?\b", False),  # "No match."
        # "None of the steps are wrong", "neither step has errors"; "none of them is correct"
        (rf"\b(?:none|neither)\b\s+(?:of\s+)?(?:[\w'’]+\s+){{0,5}}?(?:{_BAD}|{_PROBLEM})\b", True),
        (rf"\b(?:none|neither)\b\s+(?:of\s+)?(?:[\w'’]+\s+){{0,5}}?{_GOOD}\b", False),
        (
            # "No changes needed", "does not need any corrections"
            r"\b(?:no\s+(?:further\s+)?|(?:not|n't)\s+(?:need|require)\s+(?:any\s+)?)"
            r"(?:corrections?|changes?|revisions?|fix(?:es|ing)?|edits?)\b",
            True,
        ),
        (rf"{_DOUBT}{_BAD}\b", True),  # "I don't think it is wrong"
        (rf"{_DOUBT}{_GOOD}\b", False),  # "I don't think it is correct"
        (r"\b(?:error|mistake|bug|problem|issue)[- ]free\b", True),
        (
            r"\bnothing\s+(?:\w+\s+){0,2}?(?:wrong|incorrect|amiss|to\s+(?:fix|correct|change))\b",
            True,
        ),
        (rf"{_NEG}\s+{_GAP}{_BAD}\b", True),  # "not wrong", "isn't incorrect"
        (rf"{_NEG}\s+{_GAP}{_GOOD}\b", False),  # "not correct", "does not match"
        (rf"\b(?:partially|partly|mostly|almost|nearly|not\s+quite)\b(?:\s+{_GOOD})?", False),
        # a restricted or counterfactual pass is a fail: "correct except step 3", "correct only
        # for the first part", "it would be correct if the rate were 3"
        (
            rf"\b{_GOOD}\b[^.;!?]*?\b(?:except|apart\s+from|other\s+than|save\s+for|"
            r"only\s+(?:if|when|for|up\s+to|in|partly|partially)|only\b(?=\s*[.;!?]|\s*$))",
            False,
        ),
        (rf"\b(?:would|could|might)\s+(?:\w+\s+)?be\s+{_GOOD}\b", False),
        # someone else's claim is no verdict: "the candidate claims the answer is correct"
        (
            r"\b(?:candidate|solution|author|student|model|it|they|he|she)\s+(?:claims?|says?|"
            rf"states?|asserts?|believes?|thinks?)\s+(?:that\s+)?(?:[\w'’]+\s+){{0,4}}?"
            rf"(?:{_GOOD}|{_BAD})\b",
            None,
        ),
        # an elliptical denial: "..., but it isn't."
        (r"\b(?:is|are|was|were|does|do|did)(?:\s+not|n't)\s*(?=[.!,;]|$)", False),
        (r"\b(?:so|then|thus|hence|therefore)\s*,?\s+no\b(?!\s+\w)", False),  # "So no."
        (r"\b(?:so|then|thus|hence|therefore)\s*,?\s+yes\b(?!\s+\w)", True),
        # praise of "everything else" or "the rest" is partial: it needs no other verdict
        (
            rf"\b(?:(?:everything|all)\s+else|the\s+rest(?:\s+of\s+\w+)?)\s+(?:[\w'’]+\s+){{0,2}}?{_GOOD}\b",
            WEAK,
        ),
        (
            rf"\b{_PART}\s+(?:[\w'’]+\s+){{0,2}}?(?:is|are|was|were|seems?|looks?)\s+"
            rf"(?:[\w'’]+\s+){{0,2}}?{_GOOD}\b",
            WEAK,
        ),  # "the method is correct"
        (rf"\b{_GOOD}\s+{_PART}\b", WEAK),  # "right idea", "correct approach"
        (r"\bneeds?\s+(?:\w+\s+)?(?:correction|fixing|revision|to\s+be\s+\w+ed)\b", False),
        (
            # another answer named, not a verdict: "The correct answer is 18", "Correct answer: 18"
            r"\b(?:(?:the|a|an)\s+)?(?:correct|right|true|expected|accurate)\s+(?:final\s+)?"
            r"(?:answer|value|result|solution|number|total|output)\s*(?:is|was|would|should|[=:])",
            None,
        ),
        # "one less than the correct 18", "the expected value of 18"
        (
            r"\b(?:the|a|an)\s+(?:correct|right|true|expected|accurate)\s+(?:\w+\s+){0,2}?"
            r"\$?-?\d",
            None,
        ),
        (r"\bcorrect(?:ed|ing|ion|ions)\b|\bright\s+(?:now|after|before|away)\b", None),
        (
            r"\b(?:should\s+(?:be|have\s+been)|miscalculat\w*|forg[eo]t\w*|overlook\w*|"
            r"neglect\w*|omit\w*|missed|off\s+by)\b",
            False,
        ),
        (rf"\b{_BAD}\b", False),
        (rf"\b{_PROBLEM}\b", False),  # "there is an error in step 2"
        (rf"\b{_GOOD}\b", True),
        (r"[✓✔✅☑👍]", True),
        (r"[✗✘❌❎👎]", False),
        (r"^\W*(?:yes|yep|yup)\b", True),
        (r"^\W*(?:no\b(?!\s+\w)|nope\b)", False),  # "No." / "No, ..." but not "No errors"
    )
)
# emphasis is dropped before reading: "the answer is **not** correct"
_EMPHASIS_RE = re.compile(r"\*+|(?<!\w)_+|_+(?!\w)|`")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?;])\s+|\n+")
_TAG_RE = re.compile(r"<\s*verdict\s*>(.*?)(?:<\s*/\s*verdict\s*>|\Z)", re.I | re.S)
_LABEL_RE = re.compile(
    r"^[\s#>*_`\-]*(?:final\s+|overall\s+)?(verdict|result|judge?ment|decision|status|"
    r"conclusion|assessment|evaluation|grade)\b[\s*_`]*[:=\-–]+[\s*_`]*(.+)$",
    re.I | re.M,
)
# Labels that also head per-step notes ("Result: 3*4 = 12, correct."): they count only when
# their value starts with a verdict word ("Result: FAIL", "Status: correct").
_WEAK_LABELS = frozenset({"result", "status", "evaluation"})
_VERDICT_WORD = (
    r"(?:pass(?:ed)?|fail(?:ed)?|correct|incorrect|wrong|right|yes|no|valid|invalid|approved?|"
    r"rejected?|ok(?:ay)?|true|false|accepted)\b"
)
_STARTS_WITH_VERDICT_RE = re.compile(rf"^[\s#>*_`\"'(\[\-]*{_VERDICT_WORD}", re.I)
# A line that opens with the requested token is a declaration ("FAIL: step 2", "PASS - minor
# formatting issues"); a line opening with "Correct." or "Yes" may be a per-step note, so such
# lines are read with the rest of the text.
_TOKEN_RE = re.compile(r"^[\s#>*_`\"'(\[\-]*(pass(?:ed)?|fail(?:ed)?)\b(?!\s+\w)", re.I)
_TOKEN_LINE_RE = re.compile(
    r"^[\s#>*_`\"'(\[\-]*(?:pass(?:ed)?|fail(?:ed)?)\b(?!\s+\w).*$", re.I | re.M
)
# Quoted text is the question or the candidate speaking, not the checker: "the question says
# 'Tom got 3 answers wrong'". Only spans of three words or more (a quoted "PASS" or a JSON
# ``"verdict": "fail"`` stays), and single quotes only around words (not in "don't").
_QUOTED_RE = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”|(?<![\w'])'[^'\n]*'(?![\w'])")


def _unquoted(text: str) -> str:
    return _QUOTED_RE.sub(lambda m: " " if len(m.group(0).split()) >= 3 else m.group(0), text)


def _sentence_signals(sentence: str) -> list[tuple[int, bool | str]]:
    """The verdict signals of one sentence, as (position, verdict or `WEAK`)."""
    text = _EMPHASIS_RE.sub("", sentence).strip().strip("\"'").strip()
    if not text or text.endswith("?"):
        return []
    claimed = [False] * len(text)
    found: list[tuple[int, bool | str]] = []
    for pattern, verdict in _SIGNALS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(claimed[start:end]):
                continue
            claimed[start:end] = [True] * (end - start)
            if verdict is not None:
                found.append((start, verdict))
    return sorted(found, key=lambda item: item[0])


def classify(text: str) -> bool | None:
    """The verdict a piece of text states: True (pass), False (fail) or None (none).

    Example:
        >>> classify("No issues found. The answer is correct.")
        True
        >>> classify("The answer is not wrong")
        True
        >>> classify("There is an error in step 2")
        False
    """
    verdict: bool | None = None
    weak = False
    for sentence in _SENTENCE_SPLIT_RE.split(text):
        for _, found in _sentence_signals(sentence):
            if found == WEAK:
                weak = True
            else:
                verdict = bool(found)
    if verdict is None and weak:
        return True
    return verdict


def _explicit(text: str) -> bool | None:
    """The verdict of an explicit place: its leading PASS/FAIL token, else what it states."""
    token = _TOKEN_RE.match(text)
    if token:
        return token.group(1).lower().startswith("pass")
    return classify(text)


def _last_explicit(texts: list[str]) -> bool | None:
    for text in reversed(texts):
        found = _explicit(text)
        if found is not None:
            return found
    return None


def parse_verdict(text: str) -> bool | None:
    """A checker's verdict: True (pass), False (fail) or None (no verdict found).

    See the module docstring for the order of the places read.

    Example:
        >>> parse_verdict("Looks fine.\\n<verdict>PASS</verdict>")
        True
        >>> parse_verdict("**Verdict:** FAIL - the sum is wrong")
        False
        >>> parse_verdict("Correct.\\nNo errors.")
        True
        >>> parse_verdict("I am not sure.") is None
        True
    """
    tags = _TAG_RE.findall(text)
    found = _last_explicit(tags)
    if found is not None:
        return found
    unquoted = _unquoted(text)
    found = _read_places(unquoted)
    if found is None and unquoted != text:  # the checker quoted its own verdict
        found = _read_places(text)
    return found


def _read_places(text: str) -> bool | None:
    """Places 2-4 of the module docstring (labels, PASS/FAIL lines, the whole text)."""
    labels = [
        m.group(2)
        for m in _LABEL_RE.finditer(text)
        if m.group(1).lower() not in _WEAK_LABELS or _STARTS_WITH_VERDICT_RE.match(m.group(2))
    ]
    for texts in (labels, _TOKEN_LINE_RE.findall(text)):
        found = _last_explicit(texts)
        if found is not None:
            return found
    return classify(text)


__all__ = ["classify", "parse_verdict"]
