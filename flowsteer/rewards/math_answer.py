"""Math answer scorer: is the prediction's final answer equivalent to the gold?

Two steps, each deliberately simple so a reward bug is easy to find:

1. **Extraction.** The gold comes from ``task.answer``: the text after a GSM8K ``#### ``, else the
   last MATH-style ``\\boxed{...}`` (nested braces are matched), else the whole string. The
   prediction's final answer is, in order of preference, its last ``\\boxed{...}``, its last
   final-answer line (``#### n``, ``The answer is ...``, ``Final answer: ...``,
   ``Answer: ...``), else its last number (never the digits of an exponent: ``25 m^2`` is
   25). Reprs a program's value comes back as are read first (`normalize_program_output`:
   ``Fraction(1, 2)`` -> ``1/2``, ``np.float64(2.5)`` -> ``2.5``).
2. **Comparison.** Both answers are normalised (``$``/``\\$`` currency, ``\\(..\\)``, bold,
   trailing full stop, thousands separators ``1,000``, an assignment ``x = 5`` -> ``5``, a
   trailing unit: ``18 dollars``, ``25 m^2``, ``25 \\mbox{ cm}^2`` -> the number; a one-letter
   unit only after a space and only SI-like ``m g s l L h K N J W V A``, so ``3 x`` stays;
   spaced thousands ``1 000``, ``12\\,500``). Two numbers (plain, scientific ``1.5e3``, ``a/b``,
   ``\\frac{a}{b}`` or a mixed number ``3 1/2``, ``3\\frac{1}{2}``) are compared exactly as
   fractions (``0.5`` = ``1/2``, ``18.00`` = ``18``), except that a decimal of 15 or more
   significant digits is a binary float printed whole and is read rounded to 12
   (``0.30000000000000004`` = ``0.3``, while ``3.31`` != ``3.3``); the digits before the point
   and integers are never rounded (``123456789012345`` != ``123456789012000``). A decimal
   prediction with at least ``min_rounded_decimals`` places also matches a gold that it equals
   after rounding to that many places (``0.33`` for ``1/3`` or ``\\frac{1}{3}``), because "round
   to two decimals" is a common instruction; a prediction of zero (``0.00``) never matches by
   rounding. A prediction with two numbers side by side (``4 1``) matches nothing: math-verify
   would read it as their sum. Everything else goes to math-verify (``\\frac{1}{2}``,
   ``\\sqrt{2}`` vs ``2^{1/2}``, sets, intervals, expressions).

Percent rule: a percent sign on *either* side means the task is about a percentage, so that
side is read both as the number and as the number / 100: ``10%`` matches ``10`` and ``0.1``;
``0.1`` matches a gold ``10%``. Without a percent sign, ``0.1`` never matches ``10``.

Bounding the work. math-verify's own timeouts use ``signal.alarm``, which raises off the main
thread (rewards run in worker threads and under asyncio), so they are switched off
(``parse(..., parsing_timeout=None)``, ``verify(..., timeout_seconds=None)``) and the work is
bounded instead by the input: answers longer than ``max_answer_chars`` are rejected (a final
answer is short), the prediction is searched only in its last ``max_prediction_chars``
characters, and a parsed expression with a power whose exponent exceeds ``max_exponent`` in
absolute value (``10^{10^{10}}`` makes sympy hang) or a factorial of more than
``max_exponent`` is not compared (scores 0). math-verify parses lazily (unevaluated powers), so
the check runs before any evaluation.
"""

from __future__ import annotations

import logging
import math
import re
from decimal import Decimal
from fractions import Fraction

from flowsteer.tasks.sources import last_boxed
from flowsteer.tasks.task import Task

_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
# not the digits of an exponent or subscript ("25 m^2" ends in 25, not 2)
_LAST_NUMBER_RE = re.compile(rf"(?<![\d.^_])(?<![\^_][{{-])(?:{_NUMBER})(?:\s*/\s*\d+)?%?")
_TEXT_UNIT = r"\\(?:text|mbox|textrm|mathrm|rm|textnormal|mathit)\s*\{[^{}]*\}"
_LATEX_WORD_RE = re.compile(rf"{_TEXT_UNIT}|\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# "3 1/2", "3\frac{1}{2}", "-2 \frac34": a whole number and a proper fraction
_MIXED_RE = re.compile(
    r"(-?)(\d+)\s*(?:(?<=\s)(\d+)\s*/\s*(\d+)|\\frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d)))"
)
# "1 000", "12 500": thousands separated by spaces (SI style)
_SPACED_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:(?:\s|\\,|\\ |~)\d{3})+(?:\.\d+)?")
# two numbers side by side ("4 1"): math-verify would add them, so "4 1" would equal 5
_JUXTAPOSED_RE = re.compile(r"(?<![\w.\\{^_])\d+(?:\.\d+)?\s+\.?\d")
_FRACTION_RE = re.compile(r"(-?\d+)\s*/\s*(-?\d+)")
_LATEX_FRACTION_RE = re.compile(
    r"(-?)\\frac\s*(?:\{\s*(-?\d+)\s*\}|(\d))\s*(?:\{\s*(-?\d+)\s*\}|(\d))"
)
_FLOAT_DIGITS = 15  # a decimal with this many significant digits is a binary float printed whole
_FLOAT_KEEP = 12  # ... and is read rounded to this many
_PROGRAM_FORMS = (  # reprs a program's value comes back as (the sandbox returns repr strings)
    (re.compile(r"\bFraction\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)"), r"\1/\2"),
    (re.compile(r"\bFraction\(\s*['\"]\s*(-?\d+)\s*/\s*(\d+)\s*['\"]\s*\)"), r"\1/\2"),
    (re.compile(r"\b(?:Fraction|Integer|Float)\(\s*['\"]?(-?[\d.]+)['\"]?\s*\)"), r"\1"),
    (re.compile(r"\bRational\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)"), r"\1/\2"),
    (re.compile(r"\b(?:np|numpy)\.(?:float|int|uint)\d*\(\s*(-?[\d.eE+-]+)\s*\)"), r"\1"),
    (re.compile(r"\bDecimal\(\s*['\"](-?[\d.eE+-]+)['\"]\s*\)"), r"\1"),
)
_NOISY_FLOAT_RE = re.compile(r"(?<![\d.])-?\d+\.\d+(?:[eE][+-]?\d+)?(?![\d.])")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ASSIGNMENT_RE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9_]*(?:_\{?\w+\}?)?\s*=\s*([^=]+)$")
_UNIT_TAIL_RE = re.compile(
    rf"^({_NUMBER}(?:\s*/\s*\d+)?)(?:\s|\\[,;:! ]|~)*"
    rf"(?:{_TEXT_UNIT}|[A-Za-z]{{2,}}[A-Za-z.\- ]*?|(?<=\s)[mgslLhKNJWVA]\b)"
    r"(?:\s*\^\s*(?:\{\s*\d\s*\}|\d))?\s*\.?$"
)
_INLINE_MATH_RE = re.compile(r"\$([^$]+)\$")
# "The answer is not 5, but 6": the denied part, up to the next clause
_DENIED_RE = re.compile(
    r"^\W*not\b[^,;]*?(?:(?:[,;]|\.(?=\s|$))\s*(?:but|it\s+is|it's|rather)?\s*|$)", re.I
)
_PERCENT_RE = re.compile(r"\s*(?:\\%|%|\s+percent)\s*$", re.IGNORECASE)
_FINAL_LINE_RES = (
    re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE),
    re.compile(r"(?:final answer|the answer)\s*(?:is|:)[ \t]*:?[ \t]*(.+?)[ \t]*$", re.I | re.M),
    re.compile(r"^[ \t]*[*_]*answer[*_]*[ \t]*[:：][*_]*[ \t]*(.+?)[ \t]*$", re.I | re.M),
)


def _round_float_text(match: re.Match[str]) -> str:
    return round_float_noise(match.group(0))


def round_float_noise(number: str) -> str:
    """A decimal with 15+ significant digits (a binary float printed whole, such as
    ``0.30000000000000004``) rounded to 12 significant digits (or to a whole number, if it
    has more digits before the point); integers and any other text unchanged.

    Example:
        >>> round_float_noise("3.3000000000000003"), round_float_noise("3.31")
        ('3.3', '3.31')
    """
    if not re.search(r"[.eE]", number):  # an integer is exact, however long
        return number
    digits = re.sub(r"[eE].*$", "", number).lstrip("-").replace(".", "").lstrip("0")
    if len(digits) < _FLOAT_DIGITS:
        return number
    try:
        value = float(number)
    except ValueError:
        return number
    if not math.isfinite(value):
        return number
    whole_digits = len(str(int(abs(value)))) if abs(value) >= 1 else 0
    keep = max(_FLOAT_KEEP, whole_digits)  # never round away digits before the point
    text = format(Decimal(f"{value:.{keep}g}"), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def normalize_program_output(text: str) -> str:
    """A program's value or printed line in plain math form: ``Fraction(1, 2)`` -> ``1/2``,
    ``np.float64(2.5)`` -> ``2.5``, float noise rounded (`round_float_noise`).

    Example:
        >>> normalize_program_output("Fraction(1, 2)")
        '1/2'
        >>> normalize_program_output("0.30000000000000004")
        '0.3'
    """
    for pattern, replacement in _PROGRAM_FORMS:
        text = pattern.sub(replacement, text)
    return _NOISY_FLOAT_RE.sub(_round_float_text, text)


def program_answer(value: object) -> str:
    """The answer text of a Programmer's returned value (see `normalize_program_output`).

    Example:
        >>> program_answer(0.1 + 0.2), program_answer(18.0), program_answer(True)
        ('0.3', '18', 'True')
    """
    if isinstance(value, float):  # also numpy's float64, whose repr is "np.float64(2.5)"
        value = float(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return round_float_noise(repr(value))
    return normalize_program_output(str(value))


def gold_answer(answer: str) -> str:
    """The final answer inside a gold field: after GSM8K ``####``, else the last boxed, else all.

    Args:
        answer: ``task.answer`` or a full GSM8K/MATH solution.

    Returns:
        The gold final answer, stripped.

    Example:
        >>> gold_answer("Half of 48 is 24.\\n#### 24")
        '24'
        >>> gold_answer(r"so the answer is $\\boxed{\\frac{1}{2}}$.")
        '\\\\frac{1}{2}'
    """
    if "####" in answer:
        return answer.rsplit("####", 1)[1].strip()
    boxed = last_boxed(answer)
    return boxed if boxed is not None else answer.strip()


def is_bare_answer(text: str, max_chars: int = 256) -> bool:
    """A short single line with no English words: the prediction *is* the answer (``x = 5``,
    ``\\frac{1}{2}``), as a Format operator writes it."""
    if "\n" in text or len(text) > max_chars:
        return False
    return not _WORD_RE.search(_LATEX_WORD_RE.sub(" ", text))


def _answer_in_sentence(text: str) -> str:
    """A final-answer line that goes on in words ("$\\frac12$, since ...", "5 apples left
    after ...") keeps its first inline math, else its first number; a bare one is kept whole.
    A denied answer is not the answer: "not 5, but 6" is 6, and "not 5." states none ("")."""
    denied = _DENIED_RE.match(text)
    if denied:
        return _answer_in_sentence(text[denied.end() :]) if text[denied.end() :].strip() else ""
    if not _WORD_RE.search(_LATEX_WORD_RE.sub(" ", text)):
        return text
    inline = _INLINE_MATH_RE.search(text)
    if inline:
        return inline.group(1).strip()
    number = _LAST_NUMBER_RE.search(text)
    return number.group(0) if number else text


def extract_final_answer(
    text: str, max_answer_chars: int = 256, last_number: bool = True
) -> str | None:
    """The prediction's final answer: last boxed, else last final-answer line, else the whole
    text when it is a bare answer (one short line without words), else the last number.

    Args:
        text: The model's output.
        max_answer_chars: Longest text taken whole as a bare answer.
        last_number: Fall back to the last number in the text (a guess: ``False`` for a
            reader that wants only an answer the text states).

    Returns:
        The raw answer text, or None when the text holds no answer at all.

    Example:
        >>> extract_final_answer("3 + 4 = 7, so the answer is 7 apples.")
        '7'
        >>> extract_final_answer("I computed 12 then 15")
        '15'
        >>> extract_final_answer(r"$x = \\frac{1}{2}$")
        '$x = \\\\frac{1}{2}$'
    """
    text = normalize_program_output(text)
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    best: tuple[int, str] | None = None
    for pattern in _FINAL_LINE_RES:
        for match in pattern.finditer(text):
            if best is None or match.start() > best[0]:
                best = (match.start(), match.group(1))
    if best is not None and best[1].strip():
        return _answer_in_sentence(best[1].strip())
    if text.strip() and is_bare_answer(text.strip(), max_answer_chars):
        return text.strip()
    if not last_number:
        return None
    numbers = _LAST_NUMBER_RE.findall(text)
    return numbers[-1] if numbers else None


def normalize_math_answer(answer: str) -> tuple[str, bool]:
    """Strip the presentation around a final answer; report whether it carried a percent sign.

    Args:
        answer: A raw extracted answer.

    Returns:
        ``(text, is_percent)``: the cleaned answer and whether a percent sign was removed.

    Example:
        >>> normalize_math_answer("$1,000.")
        ('1000', False)
        >>> normalize_math_answer(r"x = \\frac{1}{2}")
        ('\\\\frac{1}{2}', False)
        >>> normalize_math_answer("10\\\\%")
        ('10', True)
    """
    s = answer.strip()
    for _ in range(3):  # wrappers can nest: "**$18$**."
        before = s
        s = s.strip().rstrip(".").strip()
        s = re.sub(r"^\*\*(.*)\*\*$", r"\1", s, flags=re.S)
        s = re.sub(r"^\\\((.*)\\\)$|^\\\[(.*)\\\]$", lambda m: m.group(1) or m.group(2) or "", s)
        if len(s) >= 2 and s.startswith("$") and s.endswith("$") and not s.startswith("$$$"):
            s = s.strip("$")
        s = re.sub(r"^\\text\{(.*)\}$", r"\1", s)
        if s == before:
            break
    s = s.replace("\\$", "").replace("{,}", ",").replace("\\!", "").replace("\\,", "")
    s = re.sub(r"\$(?=\s*-?\d)", "", s)  # currency "$18", "-$5"
    s = re.sub(r"\\(?:dfrac|tfrac)", r"\\frac", s).strip()
    assignment = _ASSIGNMENT_RE.match(s)
    if assignment:
        s = assignment.group(1).strip()
    is_percent = bool(_PERCENT_RE.search(s))
    if is_percent:
        s = _PERCENT_RE.sub("", s).strip()
    unit = _UNIT_TAIL_RE.match(s)
    if unit:
        s = unit.group(1).strip()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    if _SPACED_THOUSANDS_RE.fullmatch(s):
        s = re.sub(r"\s|\\,|\\ |~", "", s)
    return s, is_percent


def numeric_value(s: str) -> Fraction | None:
    """The exact value of a plain number, ``a/b`` or ``\\frac{a}{b}`` (a float printed whole is
    read rounded, see `round_float_noise`); ``None`` for anything else.

    Example:
        >>> numeric_value(r"-\\frac{1}{3}"), numeric_value("0.30000000000000004")
        (Fraction(-1, 3), Fraction(3, 10))
    """
    s = s.strip()
    if _PLAIN_NUMBER_RE.fullmatch(s):
        return Fraction(round_float_noise(s))
    match = _FRACTION_RE.fullmatch(s)
    if match and int(match.group(2)) != 0:
        return Fraction(int(match.group(1)), int(match.group(2)))
    mixed = _MIXED_RE.fullmatch(s)
    if mixed:
        sign, whole = mixed.group(1), int(mixed.group(2))
        num, den = (int(g) for g in [x for x in mixed.groups()[2:] if x is not None])
        if 0 < num < den:
            value = whole + Fraction(num, den)
            return -value if sign else value
        return None
    latex = _LATEX_FRACTION_RE.fullmatch(s)
    if latex:
        sign, num, den = (
            latex.group(1),
            latex.group(2) or latex.group(3),
            latex.group(4) or latex.group(5),
        )
        if int(den) != 0:
            value = Fraction(int(num), int(den))
            return -value if sign else value
    return None


def _decimals(s: str) -> int:
    if "e" in s.lower():  # scientific notation states no rounding
        return 0
    return len(s.split(".", 1)[1]) if "." in s else 0


class MathAnswerScorer:
    """Score a math prediction 1.0 if its final answer is equivalent to the gold, else 0.0.

    Safe to call from any thread (math-verify's signal-based timeouts are off; see the module
    docstring for how the work is bounded instead).

    Args:
        min_rounded_decimals: A decimal prediction with at least this many places matches a
            gold equal to it after rounding (``0.33`` for ``1/3``); larger values are stricter.
        max_answer_chars: Extracted answers longer than this score 0 without being parsed.
        max_prediction_chars: Only the last this many characters of a prediction are searched.
        max_exponent: Powers with a larger exponent and factorials of larger numbers are not
            compared (score 0): sympy could run for hours on them.

    Example:
        >>> from flowsteer.tasks import Task
        >>> task = Task("t/0", "gsm8k", "math", "Half of 1?", "0.5")
        >>> score = MathAnswerScorer()
        >>> score(task, r"So the answer is $\\boxed{\\frac{1}{2}}$.")
        1.0
        >>> score(task, "The answer is 1/3.")
        0.0
    """

    def __init__(
        self,
        min_rounded_decimals: int = 2,
        max_answer_chars: int = 256,
        max_prediction_chars: int = 20_000,
        max_exponent: int = 10_000,
    ) -> None:
        if min_rounded_decimals < 1:
            raise ValueError(f"min_rounded_decimals must be >= 1, got {min_rounded_decimals}")
        if max_answer_chars < 1 or max_prediction_chars < 1 or max_exponent < 1:
            raise ValueError("max_answer_chars, max_prediction_chars and max_exponent must be >= 1")
        self.min_rounded_decimals = min_rounded_decimals
        self.max_answer_chars = max_answer_chars
        self.max_prediction_chars = max_prediction_chars
        self.max_exponent = max_exponent

    def __call__(self, task: Task, prediction: str | None) -> float:
        """1.0 if ``prediction``'s final answer is equivalent to ``task``'s gold, else 0.0."""
        if prediction is None:
            return 0.0
        if not isinstance(prediction, str):
            raise TypeError(f"prediction must be a str or None, got {type(prediction).__name__}")
        extracted = extract_final_answer(
            prediction[-self.max_prediction_chars :], self.max_answer_chars
        )
        if extracted is None:
            return 0.0
        return 1.0 if self.equivalent(gold_answer(task.answer), extracted) else 0.0

    def equivalent(self, gold: str, predicted: str) -> bool:
        """Whether two final answers (already extracted) are equivalent.

        Args:
            gold: The gold final answer.
            predicted: The predicted final answer.

        Returns:
            True if they denote the same value under the rules of the module docstring.

        Example:
            >>> MathAnswerScorer().equivalent("1000", "$1,000")
            True
        """
        if len(gold) > self.max_answer_chars or len(predicted) > self.max_answer_chars:
            return False
        gold_text, gold_pct = normalize_math_answer(gold)
        pred_text, pred_pct = normalize_math_answer(predicted)
        if not gold_text or not pred_text:
            return False
        gold_num, pred_num = numeric_value(gold_text), numeric_value(pred_text)
        if gold_num is not None and pred_num is not None:
            golds = [gold_num, gold_num / 100] if gold_pct else [gold_num]
            preds = [pred_num, pred_num / 100] if pred_pct else [pred_num]
            places = _decimals(round_float_noise(pred_text))
            for g in golds:
                for p in preds:
                    if g == p:
                        return True
                    if places >= self.min_rounded_decimals and not pred_pct and p != 0:
                        unit = Fraction(1, 10**places)
                        if abs(g - p) * 2 < unit:  # p is g rounded to `places` decimals
                            return True
            return False
        if _JUXTAPOSED_RE.search(pred_text):
            return False
        gold_forms = [gold_text, f"\\frac{{{gold_text}}}{{100}}"] if gold_pct else [gold_text]
        pred_forms = [pred_text, f"\\frac{{{pred_text}}}{{100}}"] if pred_pct else [pred_text]
        return any(self._verify(g, p) for g in gold_forms for p in pred_forms)

    def _parse(self, latex: str) -> list:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

        config = [LatexExtractionConfig(), ExprExtractionConfig()]
        return parse(f"${latex}$", extraction_config=config, parsing_timeout=None)

    def _verify(self, gold: str, predicted: str) -> bool:
        from math_verify import verify

        parsed_gold, parsed_pred = self._parse(gold), self._parse(predicted)
        if not parsed_gold or not parsed_pred:
            return False
        if self._too_costly(parsed_gold) or self._too_costly(parsed_pred):
            return False
        try:
            return bool(verify(parsed_gold, parsed_pred, timeout_seconds=None))
        except Exception:  # math-verify raises on exotic inputs; no match, not a crash
            return False

    def _too_costly(self, parsed: list) -> bool:
        import sympy

        bound = self.max_exponent
        for item in parsed:
            if not isinstance(item, sympy.Basic):
                continue
            try:
                for node in sympy.preorder_traversal(item):
                    if isinstance(node, sympy.Pow):
                        size = node.exp
                    elif isinstance(node, sympy.factorial):
                        size = node.args[0]
                    else:
                        continue
                    if size.is_number and not abs(float(sympy.N(size, 5))) <= bound:
                        return True
            except (OverflowError, TypeError, ValueError):
                return True
        return False


class _TimeoutDisabledFilter(logging.Filter):
    """Drop math-verify's "timeout is disabled" warning: disabling it is our design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_TimeoutDisabledFilter())
